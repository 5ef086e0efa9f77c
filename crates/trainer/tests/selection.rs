//! Best-checkpoint selection and early stopping (`train.select_best`, `train.early_stopping`): the best step is the
//! first maximum of the validation metric as logged, `checkpoints/best/` holds that step's weights and survives
//! pruning, the final evaluation uses it and says so; early stopping ends training after `patience` validations
//! without an improvement larger than `min_delta`, and a resume of an early-stopped run trains no further.
mod common;

use common::{config, temp};
use serde_json::Value;
use std::path::Path;
use trainer::TrainOptions;

fn log(run: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn run_json(run: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(run.join("run.json")).unwrap()).unwrap()
}

/// `(step, value)` of every validation's `metric`, in order.
fn validations(run: &Path, metric: &str) -> Vec<(u64, f64)> {
    log(run)
        .into_iter()
        .filter(|v| v["kind"] == "eval" && v["split"] == "val")
        .map(|v| (v["step"].as_u64().unwrap(), v["metrics"][metric].as_f64().unwrap()))
        .collect()
}

fn state_step(dir: &Path) -> u64 {
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
    state["step"].as_u64().unwrap()
}

fn cfg(sets: &[&str]) -> trainer::ExperimentConfig {
    let mut all = vec!["train.eval_every=1", "train.keep_checkpoints=1", "eval.val_subset=6"];
    all.extend(sets);
    config("lora", "[lora]\nr = 4\n", &all)
}

fn train(sets: &[&str]) -> std::path::PathBuf {
    // one runs directory per distinct settings (tests run in parallel)
    let id = sets.join(" ").bytes().fold(0u64, |h, b| h.wrapping_mul(131).wrapping_add(b as u64));
    let runs = temp(&format!("selection-{id:x}"));
    let opts = TrainOptions { runs_dir: runs, quiet: true, ..Default::default() };
    trainer::train(&cfg(sets), &opts).unwrap().run_dir
}

#[test]
fn the_best_validation_is_kept_and_used_for_the_final_evaluation() {
    let run = train(&["train.steps=6", "train.select_best=\"Bleu_1\""]);
    let vals = validations(&run, "Bleu_1");
    assert_eq!(vals.len(), 6, "a validation after every step: {vals:?}");
    // the first maximum, as the log has it
    let (best_step, best) =
        vals.iter().fold((0, f64::NEG_INFINITY), |b, &(s, v)| if v > b.1 { (s, v) } else { b });
    let info = run_json(&run);
    assert_eq!(info["best_checkpoint"]["step"].as_u64(), Some(best_step), "{vals:?}");
    assert_eq!(info["best_checkpoint"]["value"].as_f64(), Some(best));
    assert_eq!(info["final_checkpoint"]["step"].as_u64(), Some(best_step));
    assert_eq!(info["final_checkpoint"]["selected_by"]["metric"], "Bleu_1");
    // best/ survives keep_checkpoints = 1 and holds that step; the newest checkpoint is the last step's
    let ckpts = run.join("checkpoints");
    assert_eq!(state_step(&ckpts.join("best")), best_step);
    assert!(ckpts.join("step-000006").exists());
    let steps = std::fs::read_dir(&ckpts)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("step-"));
    assert_eq!(steps.count(), 1, "pruning kept one step checkpoint besides best/");
    // the report and the comparison say which weights were evaluated
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(
        html.contains("Evaluated weights")
            && html.contains(&format!("step {best_step} (best validation Bleu_1"))
    );
    let table =
        report::compare::Comparison::load(std::slice::from_ref(&run), None).unwrap().table();
    // the best is not the last step (seeded run), so the final evaluation really loaded best/
    assert!(best_step < 6, "{vals:?}");
    assert!(
        table.rows[0][3].ends_with(&format!("(weights of step {best_step})")),
        "{:?}",
        table.rows[0]
    );
    // the adapter is the evaluated (best) weights
    let best_weights =
        tch::Tensor::read_safetensors(ckpts.join("best/trainable.safetensors")).unwrap();
    let adapter =
        tch::Tensor::read_safetensors(run.join("adapter/adapter_model.safetensors")).unwrap();
    let b_norm: f64 = best_weights
        .iter()
        .filter(|(n, _)| n.contains("lora_B"))
        .map(|(_, t)| t.norm().double_value(&[]))
        .sum();
    let a_norm: f64 = adapter
        .iter()
        .filter(|(n, _)| n.contains("lora_B"))
        .map(|(_, t)| t.norm().double_value(&[]))
        .sum();
    assert!(
        (a_norm - b_norm).abs() <= 1e-6 * b_norm.max(1e-12),
        "adapter {a_norm} vs best {b_norm}"
    );
}

#[test]
fn early_stopping_ends_training_after_patience_and_a_resume_trains_no_further() {
    // No validation can beat the first by 10: it is the best, and two later ones end the run.
    let early = "train.early_stopping={ patience = 2, min_delta = 10.0 }";
    let sets = ["train.steps=20", "train.select_best=\"CIDEr\"", early];
    let run = train(&sets);
    let info = run_json(&run);
    assert_eq!(info["early_stopping"]["stopped_at"].as_u64(), Some(3));
    assert_eq!(info["best_checkpoint"]["step"].as_u64(), Some(1));
    assert_eq!(info["final_checkpoint"]["step"].as_u64(), Some(1));
    assert_eq!(info["status"], "finished");
    let trained = |run: &Path| log(run).iter().filter(|v| v["kind"] == "train").count();
    assert_eq!(trained(&run), 3);
    assert!(run.join("checkpoints/step-000003").exists(), "checkpointed where it stopped");

    let opts = TrainOptions { resume: Some(run.clone()), quiet: true, ..Default::default() };
    trainer::train(&cfg(&sets), &opts).unwrap();
    assert_eq!(trained(&run), 3, "the resumed run went straight to the final evaluation");
}

#[test]
fn selection_settings_are_checked() {
    let err = |sets: &[&str]| {
        let text = format!(
            "name = \"x\"\nstrategy = \"lora\"\n[model]\npath = \"m\"\n[lora]\n[data]\npath = \"d.json\"\n[train]\n{}",
            sets.join("\n")
        );
        trainer::ExperimentConfig::from_toml(&text, &[]).unwrap_err().to_string()
    };
    assert!(err(&["select_best = \"BLEU\"", "eval_every = 5"]).contains("expected one of Bleu_1"));
    assert!(err(&["early_stopping = { patience = 3 }", "eval_every = 5"])
        .contains("needs train.select_best"));
    assert!(err(&["select_best = \"CIDEr\""]).contains("train.eval_every"));
    assert!(
        err(&["final_weights = \"best\"", "eval_every = 5"]).contains("needs train.select_best")
    );
}

/// `log.tensorboard = false` writes no event files; by default a run has them.
#[test]
fn tensorboard_logs_can_be_turned_off() {
    let on = train(&["train.steps=2", "train.eval_every=0"]);
    assert!(!tensorboard::scalars(&on.join("tb")).unwrap()["train/loss"].is_empty());
    let off = train(&[
        "train.steps=2",
        "train.eval_every=0",
        "log.tensorboard=false",
        "eval.test_subset=2",
    ]);
    assert!(!off.join("tb").exists());
}
