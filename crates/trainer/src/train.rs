//! The training loop.
use crate::checkpoint::{self, RunState};
use crate::config::{ExperimentConfig, OptimizerKind};
use crate::data::{self, Prompt, TrainData};
use crate::eval::{self, EvalOutput, Evaluation};
use crate::memory::{self, PlanInput};
use crate::optim::Optimizer;
use crate::run::{self, RunDir};
use crate::schedule::Schedule;
use crate::step::{forward_backward, StepOptions};
use crate::strategy::{self, Built};
use crate::TrainError;
use serde_json::json;
use sha2::Digest;
use std::path::PathBuf;
use std::time::Instant;
use tch::{Kind, Tensor};
use weights::DType;

#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Where new runs go (`runs/`).
    pub runs_dir: PathBuf,
    /// Continue this run directory from its newest good checkpoint.
    pub resume: Option<PathBuf>,
    /// Print the trainable table and the memory plan, then stop.
    pub dry_run: bool,
    /// No progress bar (tests, CI logs).
    pub quiet: bool,
    /// Skip the check of every dataset image before step 1 (for huge sets whose images are known good).
    pub skip_image_check: bool,
}

#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub run_dir: PathBuf,
    pub steps: usize,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
    /// Final test metrics (or last validation metrics when there is no test split).
    pub final_metrics: Vec<(String, f64)>,
    pub before_metrics: Option<Vec<(String, f64)>>,
    pub baseline_metrics: Option<Vec<(String, f64)>>,
    pub report: Option<PathBuf>,
}

/// f16 training: the loss is scaled so small gradients survive f16, unscaled before the update; the scale halves
/// on overflow and doubles after 2000 clean steps (PyTorch's GradScaler defaults).
struct LossScaler {
    enabled: bool,
    scale: f64,
    good: usize,
}

impl LossScaler {
    fn update(&mut self, finite: bool) {
        if !self.enabled {
            return;
        }
        if finite {
            self.good += 1;
            if self.good >= 2000 {
                self.scale *= 2.0;
                self.good = 0;
            }
        } else {
            self.scale = (self.scale / 2.0).max(1.0);
            self.good = 0;
        }
    }
}

/// The config as far as it decides what is learned, as canonical JSON: knobs that do not (logging, evaluation
/// cadence, device) are blanked, so a resumed run may change them; everything else must match the checkpoint's.
fn config_fingerprint(cfg: &ExperimentConfig) -> String {
    let mut c = cfg.clone();
    c.train.log_every = 0;
    c.train.eval_every = 0;
    c.train.checkpoint_every = 0;
    c.train.keep_checkpoints = 0;
    c.eval = Default::default();
    c.model.device = String::new();
    c.canonical_json()
}

fn config_hash(cfg: &ExperimentConfig) -> String {
    strategy::hex(&sha2::Sha256::digest(config_fingerprint(cfg)))
}

/// `key: old -> new` for every leaf that differs between two configs (dotted keys, as `--set` takes them).
fn config_changes(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    fn leaves(v: &serde_json::Value, prefix: String, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    leaves(x, key, out);
                }
            }
            other => out.push((prefix, other.to_string())),
        }
    }
    let (mut a, mut b) = (vec![], vec![]);
    leaves(old, String::new(), &mut a);
    leaves(new, String::new(), &mut b);
    let a: std::collections::BTreeMap<_, _> = a.into_iter().collect();
    let b: std::collections::BTreeMap<_, _> = b.into_iter().collect();
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let unset = "(unset)".to_string();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: {} -> {}", a.get(k).unwrap_or(&unset), b.get(k).unwrap_or(&unset)))
        .collect()
}

fn metric_json(m: &[(String, f64)]) -> serde_json::Value {
    serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

/// Trains (or resumes) a run and returns its summary.
pub fn train(cfg: &ExperimentConfig, opts: &TrainOptions) -> Result<TrainSummary, TrainError> {
    let started = Instant::now();
    // SIGINT, SIGTERM and SIGHUP are acted on at safe points: before training starts, and at step boundaries after
    // a checkpoint. A second signal ends the process at once.
    interrupt::install("stopping at the next step boundary, after saving a checkpoint");
    let ds = data::load_dataset(cfg)?;
    if !opts.skip_image_check && !opts.dry_run {
        check_images(&ds, cfg)?;
    }
    let train_split = rsicd_data::Split::parse(&cfg.data.train_split);
    let texts: Vec<String> = ds
        .split(&train_split)
        .flat_map(|i| i.captions.iter())
        .map(|c| if cfg.data.lowercase { c.to_lowercase() } else { c.clone() })
        .chain(std::iter::once(cfg.data.prefix.clone()))
        .collect();
    let text_refs: Vec<&str> = texts.iter().map(String::as_str).collect();

    let mut run = match (&opts.resume, opts.dry_run) {
        (Some(dir), _) => RunDir::open(dir)?,
        (None, true) => {
            let tmp = std::env::temp_dir().join(format!("pg-dry-run-{}", std::process::id()));
            std::fs::create_dir_all(&tmp).map_err(|e| TrainError::Io(e.to_string()))?;
            RunDir::open(&tmp)?
        }
        (None, false) => RunDir::create(&opts.runs_dir, &cfg.name)?,
    };
    let built = strategy::build(cfg, &text_refs, &run.path)?;
    let Built { ref model, ref tokenizer, ref layout, ref trainables, device, base_dtype, .. } =
        built;
    let soft = built.soft.as_ref().map(|s| s.vectors.shallow_clone());
    let pre = data::preprocessor(cfg, model.config.vision_config.image_size)?;
    let prompt = Prompt::new(tokenizer, &cfg.data.prefix)?;
    let mut td = TrainData::new(ds, cfg, pre, prompt)?;

    // The plan, from the shapes of a real first batch.
    let base_params: Vec<(String, Tensor)> = built.base_vs.variables().into_iter().collect();
    let total_params: i64 = base_params.iter().map(|(_, t)| t.numel() as i64).sum::<i64>()
        + built.adapter_vs.variables().values().map(|t| t.numel() as i64).sum::<i64>();
    let probe = {
        let saved = td.sampler.cursor();
        let b = td.next_batch(cfg.train.batch_size, tokenizer, layout, device)?;
        td.sampler.resume(saved);
        b
    };
    let (base_count, base_bytes, trainable_count, extra_count) =
        memory::sizes_from_tensors(&base_params, trainables);
    let plan = memory::plan(&PlanInput {
        config: &model.config,
        act_bytes: memory::kind_bytes(model.kind()),
        base_params: base_count,
        base_bytes,
        trainable_params: trainable_count,
        extra_params: extra_count,
        batch: cfg.train.batch_size,
        seq_len: probe.batch.ids.size()[1] as usize,
        supervised_tokens: probe.batch.supervised_tokens() as usize,
        checkpointing: cfg.model.gradient_checkpointing,
        vision_trainable: built.vision_trainable,
        optimizer_slots: optimizer_slots(cfg),
    });
    drop(probe);
    let table = memory::trainable_table(trainables, total_params);
    eprintln!("{table}\n{}", plan.table());
    if opts.dry_run {
        let _ = std::fs::remove_dir_all(&run.path);
        return Ok(TrainSummary {
            run_dir: run.path.clone(),
            steps: 0,
            first_loss: None,
            last_loss: None,
            final_metrics: vec![],
            before_metrics: None,
            baseline_metrics: None,
            report: None,
        });
    }

    let total = cfg.train.steps;
    let schedule = Schedule::new(&cfg.optim, total);
    let mut optimizer = Optimizer::new(
        &cfg.optim,
        trainables.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect(),
    );
    let hash = config_hash(cfg);
    let mut state = RunState {
        step: 0,
        cursor_epoch: 0,
        cursor_position: 0,
        nan_hits: 0,
        loss_scale: if base_dtype == DType::F16 { 65536.0 } else { 1.0 },
        good_steps: 0,
        config_hash: hash.clone(),
        base_hash: built.base_hash.clone(),
        config: serde_json::from_str(&config_fingerprint(cfg)).ok(),
    };
    if opts.resume.is_some() {
        for (to, why) in checkpoint::quarantine_damaged(&run.checkpoints())? {
            eprintln!("warning: {why}\n  moved to {} (never resumed from or kept)", to.display());
        }
        match checkpoint::latest_good(&run.checkpoints())? {
            Some((dir, saved)) => {
                if saved.config_hash != hash {
                    let changes = match (&saved.config, &state.config) {
                        (Some(old), Some(new)) => config_changes(old, new),
                        _ => vec![],
                    };
                    return Err(TrainError::Checkpoint(format!(
                        "{}: the config changed since this checkpoint (only logging, evaluation and device keys may \
                         change on resume){}{}",
                        dir.display(),
                        if changes.is_empty() { "" } else { ":\n  " },
                        changes.join("\n  ")
                    )));
                }
                if saved.base_hash != built.base_hash {
                    return Err(TrainError::Checkpoint(format!(
                        "{}: the base weights differ from those this run started from",
                        dir.display()
                    )));
                }
                let opt_state = checkpoint::load(&dir, trainables)?;
                optimizer
                    .load_state(&opt_state, saved.step as i64)
                    .map_err(TrainError::Checkpoint)?;
                td.sampler.resume(rsicd_data::Cursor {
                    epoch: saved.cursor_epoch,
                    position: saved.cursor_position,
                });
                run.truncate_metrics_after(saved.step)?;
                eprintln!("resuming {} from step {}", run.path.display(), saved.step);
                state = RunState { config: state.config.take(), ..saved };
            }
            None => {
                let old = run.restart_metrics()?;
                eprintln!(
                    "no good checkpoint in {}: starting from step 0{}",
                    run.checkpoints().display(),
                    old.map(|p| format!(" (the earlier log is kept as {})", p.display()))
                        .unwrap_or_default()
                );
            }
        }
    }
    let mut scaler = LossScaler {
        enabled: base_dtype == DType::F16,
        scale: state.loss_scale,
        good: state.good_steps,
    };

    let (_, started_at) = run::now();
    run.write_text("config.toml", &cfg.to_toml())?;
    if state.step == 0 {
        run.update_run(&[("started", json!(started_at))])?;
    }
    let image_root =
        td.ds.image_dir.as_ref().map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()));
    run.update_run(&[
        ("name", json!(cfg.name)),
        ("strategy", json!(cfg.strategy.name())),
        ("model", json!(model_label(cfg))),
        ("dataset", json!(cfg.data.path)),
        ("image_root", json!(image_root)),
        ("finished", serde_json::Value::Null),
        ("status", json!("running")),
        ("device", json!(cfg.model.device)),
        ("dtype", json!(base_dtype.name())),
        ("trainable_params", json!(trainables.iter().map(|(_, t)| t.numel()).sum::<usize>())),
        ("total_params", json!(total_params)),
        ("steps", json!(total)),
        ("memory_plan", plan.to_json()),
    ])?;

    let evaluator = metrics::Evaluator::new(eval::metrics_options(&cfg.eval)?);
    let (eval_prompt, eval_pre) = (td.prompt.clone(), td.pre);
    let evaluation = Evaluation {
        model,
        tokenizer,
        layout,
        prompt: &eval_prompt,
        soft: soft.as_ref(),
        pre: &eval_pre,
        device,
        cfg: &cfg.eval,
        evaluator: &evaluator,
    };
    let has_split =
        |s: &str| td.ds.split(&rsicd_data::Split::parse(s)).any(|i| !i.captions.is_empty());
    let has_val = has_split(&cfg.data.val_split);
    let has_test = has_split(&cfg.data.test_split);
    let final_split =
        if has_test { cfg.data.test_split.clone() } else { cfg.data.val_split.clone() };

    // Before training: the blind baseline and, when asked, the untrained model.
    let mut baseline_metrics = None;
    let mut before_metrics = None;
    if state.step == 0 && (has_test || has_val) {
        if let Some(caption) = eval::most_frequent_caption(&td.ds, &cfg.data.train_split) {
            let set = rsicd_data::EvalSet::new(
                &td.ds,
                &rsicd_data::Split::parse(&final_split),
                cfg.eval.test_subset,
            );
            let out =
                eval::score(&td.ds, &set, vec![caption.clone(); set.items.len()], &evaluator)?;
            run.update_run(&[(
                "baseline",
                json!({"name": format!("most frequent training caption: \"{caption}\""), "metrics": metric_json(&out.metrics)}),
            )])?;
            baseline_metrics = Some(out.metrics);
        }
        if cfg.eval.before {
            let out = evaluation.run(&td.ds, &final_split, cfg.eval.test_subset)?;
            log_eval(&mut run, 0, &final_split, &out)?;
            before_metrics = Some(out.metrics);
        }
    }

    let bar = if opts.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(total as u64).with_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} steps | {msg} | {elapsed} < {eta}",
            )
            .expect("template"),
        )
    };
    bar.set_position(state.step as u64);
    if let Some(signal) = interrupt::requested() {
        bar.abandon();
        return Err(record_interruption(&run, signal, state.step, None)?);
    }
    let step_opts = |seed: i64, scale: f64| StepOptions {
        checkpointing: cfg.model.gradient_checkpointing,
        vision_trainable: built.vision_trainable,
        reduction: cfg.train.loss,
        loss_scale: scale,
        seed,
    };
    let mut first_loss = None;
    let mut last_loss = None;
    let mut last_val_step = None;
    while state.step < total {
        let step = state.step;
        let t0 = Instant::now();
        // Randomness (LoRA dropout) derives from (seed, step): a resumed run draws exactly what a straight run draws.
        let seed = (cfg.seed as i64).wrapping_mul(1_000_003).wrapping_add(step as i64);
        tch::manual_seed(seed);
        let (mut loss_sum, mut tokens) = (0.0, 0i64);
        let mut valid_tokens = 0i64;
        for micro in 0..cfg.train.grad_accum {
            let b = match td.next_batch(cfg.train.batch_size, tokenizer, layout, device) {
                Ok(b) => b,
                Err(e) => {
                    // Nothing of this step was applied: checkpoint what the completed steps learned, then stop.
                    optimizer.zero_grad();
                    bar.abandon();
                    return Err(stop_on_data_error(&run, &state, trainables, &optimizer, cfg, e)?);
                }
            };
            valid_tokens += i64::try_from(b.batch.segments.ne(0).sum(Kind::Int64)).unwrap_or(0);
            let scale = scaler.scale / cfg.train.grad_accum as f64;
            let (loss, n) = forward_backward(
                model,
                &b.batch,
                &b.pixels,
                soft.as_ref(),
                &step_opts(seed.wrapping_mul(31).wrapping_add(micro as i64), scale),
            )?;
            loss_sum += loss;
            tokens += n;
        }
        let loss = loss_sum / cfg.train.grad_accum as f64;
        // Unscale, then check every gradient before anything is updated.
        if scaler.enabled {
            tch::no_grad(|| {
                for (_, t) in trainables {
                    let mut g = t.grad();
                    if g.defined() {
                        let _ = g.g_mul_scalar_(1.0 / scaler.scale);
                    }
                }
            });
        }
        let bad = if loss.is_finite() {
            first_non_finite(trainables)
        } else {
            Some("the loss".to_string())
        };
        if let Some(what) = bad {
            optimizer.zero_grad();
            scaler.update(false);
            state.nan_hits += 1;
            tracing::warn!(
                step,
                "non-finite values in {what}: step skipped ({}/{})",
                state.nan_hits,
                cfg.train.nan_patience
            );
            run.log(
                &json!({"kind": "skip", "step": step + 1, "reason": format!("non-finite {what}")}),
            )?;
            if state.nan_hits >= cfg.train.nan_patience {
                run.update_run(&[("status", json!("failed"))])?;
                return Err(TrainError::NonFinite(format!(
                    "stopping after {} steps with non-finite values (last: {what}); lower optim.lr, use model.dtype = \"f32\" \
                     or \"bf16\", or check the data",
                    state.nan_hits
                )));
            }
        } else {
            if step == 0 || (opts.resume.is_some() && first_loss.is_none()) {
                check_gradients(trainables)?;
            }
            let grad_norm = clip(trainables, cfg.train.max_grad_norm);
            let lr = schedule.lr(step);
            optimizer.step(lr);
            scaler.update(true);
            let elapsed = t0.elapsed().as_secs_f64();
            first_loss.get_or_insert(loss);
            last_loss = Some(loss);
            let cursor = td.sampler.cursor();
            if (step + 1) % cfg.train.log_every.max(1) == 0 || step + 1 == total || step == 0 {
                run.log(&json!({
                    "kind": "train", "step": step + 1,
                    "epoch": cursor.epoch as f64 + cursor.position as f64 / td.sampler.len().max(1) as f64,
                    "loss": loss, "lr": lr, "grad_norm": grad_norm, "tokens": tokens,
                    "tokens_per_s": valid_tokens as f64 / elapsed.max(1e-9), "time_s": started.elapsed().as_secs_f64(),
                }))?;
            }
            bar.set_message(format!(
                "loss {loss:.4} | lr {lr:.2e} | {:.0} tok/s",
                valid_tokens as f64 / elapsed.max(1e-9)
            ));
        }
        optimizer.zero_grad();
        state.step += 1;
        let cursor = td.sampler.cursor();
        state.cursor_epoch = cursor.epoch;
        state.cursor_position = cursor.position;
        state.loss_scale = scaler.scale;
        state.good_steps = scaler.good;
        bar.set_position(state.step as u64);

        if has_val
            && cfg.train.eval_every > 0
            && state.step % cfg.train.eval_every == 0
            && state.step < total
        {
            bar.suspend(|| -> Result<(), TrainError> {
                let out = evaluation.run(&td.ds, &cfg.data.val_split, cfg.eval.val_subset)?;
                log_eval(&mut run, state.step, &cfg.data.val_split, &out)
            })?;
            last_val_step = Some(state.step);
        }
        let stop = interrupt::requested();
        if (cfg.train.checkpoint_every > 0 && state.step % cfg.train.checkpoint_every == 0)
            || stop.is_some()
            || state.step == total
        {
            save_checkpoint(&run, &state, trainables, &optimizer, cfg)?;
        }
        if let Some(signal) = stop {
            bar.abandon();
            let dir = checkpoint::dir_for(&run.checkpoints(), state.step);
            return Err(record_interruption(&run, signal, state.step, Some(dir))?);
        }
    }
    bar.finish_and_clear();

    if let Some(signal) = interrupt::requested() {
        let dir = checkpoint::dir_for(&run.checkpoints(), state.step);
        return Err(record_interruption(&run, signal, state.step, Some(dir))?);
    }
    // Final evaluation: validation at the last step (if not just done) and the test split with every metric.
    if has_val && last_val_step != Some(total) && final_split != cfg.data.val_split {
        let out = evaluation.run(&td.ds, &cfg.data.val_split, cfg.eval.val_subset)?;
        log_eval(&mut run, total, &cfg.data.val_split, &out)?;
    }
    let mut final_metrics = vec![];
    if has_test || has_val {
        let out = evaluation.run(&td.ds, &final_split, cfg.eval.test_subset)?;
        log_eval(&mut run, total, &final_split, &out)?;
        final_metrics = out.metrics.clone();
    }
    let (_, finished) = run::now();
    run.update_run(&[
        ("status", json!("finished")),
        ("finished", json!(finished)),
        ("final_metrics", metric_json(&final_metrics)),
        ("wall_time_s", json!(started.elapsed().as_secs_f64())),
    ])?;
    if let Some(lc) = &built.lora {
        crate::peft::save_adapter(&run.path.join("adapter"), &built, lc, cfg)?;
    }
    let report = crate::report_hook(&run.path);
    Ok(TrainSummary {
        run_dir: run.path.clone(),
        steps: state.step,
        first_loss,
        last_loss,
        final_metrics,
        before_metrics,
        baseline_metrics,
        report,
    })
}

fn save_checkpoint(
    run: &RunDir,
    state: &RunState,
    trainables: &[(String, Tensor)],
    optimizer: &Optimizer,
    cfg: &ExperimentConfig,
) -> Result<PathBuf, TrainError> {
    let opt_state = optimizer.state();
    checkpoint::save(&run.checkpoints(), state, trainables, &opt_state, cfg.train.keep_checkpoints)
}

/// Marks the run interrupted in `run.json` and builds the error the CLI turns into exit code 128 + signal.
fn record_interruption(
    run: &RunDir,
    signal: interrupt::Signal,
    step: usize,
    checkpoint: Option<PathBuf>,
) -> Result<TrainError, TrainError> {
    let (_, at) = run::now();
    run.update_run(&[
        ("status", json!("interrupted")),
        ("interrupted", json!({"signal": signal.name(), "step": step, "at": at})),
    ])?;
    Ok(TrainError::Interrupted { signal, run: run.path.clone(), checkpoint })
}

/// A training image that cannot be read after training started: checkpoint the completed steps, mark the run
/// failed, and name the file.
fn stop_on_data_error(
    run: &RunDir,
    state: &RunState,
    trainables: &[(String, Tensor)],
    optimizer: &Optimizer,
    cfg: &ExperimentConfig,
    error: TrainError,
) -> Result<TrainError, TrainError> {
    let saved = if state.step > 0 {
        Some(save_checkpoint(run, state, trainables, optimizer, cfg)?)
    } else {
        None
    };
    run.update_run(&[("status", json!("failed")), ("error", json!(error.to_string()))])?;
    Ok(TrainError::Stopped(match saved {
        Some(dir) => format!(
            "{error}\n  training stopped; the {} completed steps are saved in {}: fix the data, then continue with \
             --resume {}",
            state.step,
            dir.display(),
            run.path.display()
        ),
        None => format!("{error}\n  training stopped before its first step"),
    }))
}

/// Every train, validation and test image exists and its header decodes, before any compute is spent; all
/// problems are listed at once (`--skip-image-check` skips this for huge sets).
fn check_images(ds: &rsicd_data::Dataset, cfg: &ExperimentConfig) -> Result<(), TrainError> {
    let splits: Vec<rsicd_data::Split> =
        [&cfg.data.train_split, &cfg.data.val_split, &cfg.data.test_split]
            .iter()
            .map(|s| rsicd_data::Split::parse(s))
            .collect();
    let problems = rsicd_data::probe_split_images(ds, &splits);
    if problems.is_empty() {
        return Ok(());
    }
    const SHOWN: usize = 10;
    let mut msg = format!("{} image(s) of the dataset cannot be read:", problems.len());
    for p in problems.iter().take(SHOWN) {
        msg.push_str(&format!("\n  {p}"));
    }
    if problems.len() > SHOWN {
        msg.push_str(&format!(
            "\n  … and {} more (`cargo xtask validate` lists them all)",
            problems.len() - SHOWN
        ));
    }
    msg.push_str("\n  fix or remove them, or pass --skip-image-check to train anyway");
    Err(TrainError::Stopped(msg))
}

pub fn optimizer_slots(cfg: &ExperimentConfig) -> usize {
    match cfg.optim.name {
        OptimizerKind::Adamw => 2,
        OptimizerKind::Sgd if cfg.optim.momentum != 0.0 => 1,
        OptimizerKind::Sgd => 0,
    }
}

fn model_label(cfg: &ExperimentConfig) -> String {
    match cfg.model.source {
        crate::config::ModelSource::Hf => {
            cfg.model.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
        }
        crate::config::ModelSource::Scratch => "PaliGemma architecture from scratch".into(),
        crate::config::ModelSource::Custom => {
            let c = cfg.model.custom.as_ref().expect("validated");
            format!("{} + projector + {}", c.siglip.display(), c.gemma.display())
        }
    }
}

fn log_eval(
    run: &mut RunDir,
    step: usize,
    split: &str,
    out: &EvalOutput,
) -> Result<(), TrainError> {
    let rel = format!("predictions/step-{step:06}-{split}.json");
    let preds: Vec<serde_json::Value> =
        out.predictions.iter().map(|(id, c)| json!({"image_id": id, "caption": c})).collect();
    std::fs::create_dir_all(run.path.join("predictions"))
        .map_err(|e| TrainError::Io(e.to_string()))?;
    run.write_json(&rel, &json!(preds))?;
    run.write_json(&format!("predictions/references-{split}.json"), &json!(out.references))?;
    run.log(&json!({
        "kind": "eval", "step": step, "split": split, "metrics": metric_json(&out.metrics),
        "diversity": out.diversity, "n_images": out.predictions.len(), "predictions": rel,
    }))
}

/// The first trainable tensor whose gradient has a NaN or Inf.
fn first_non_finite(trainables: &[(String, Tensor)]) -> Option<String> {
    trainables.iter().find_map(|(name, t)| {
        let g = t.grad();
        (g.defined() && !bool::try_from(g.isfinite().all()).unwrap_or(false))
            .then(|| format!("the gradient of `{name}`"))
    })
}

/// After the first step every trainable tensor must have received a finite, non-zero gradient; otherwise
/// something is disconnected (a soft prompt never injected, an adapter outside the graph).
fn check_gradients(trainables: &[(String, Tensor)]) -> Result<(), TrainError> {
    let dead: Vec<&str> = trainables
        .iter()
        .filter(|(_, t)| {
            let g = t.grad();
            !g.defined() || f64::try_from(g.abs().sum(Kind::Float)).unwrap_or(0.0) == 0.0
        })
        .map(|(n, _)| n.as_str())
        .collect();
    // LoRA A gets no gradient while B is still zero (by construction at step 0); only B must move first.
    let dead: Vec<&str> = dead.into_iter().filter(|n| !n.contains("lora_A")).collect();
    if dead.is_empty() {
        return Ok(());
    }
    Err(TrainError::Gradient(format!(
        "{} trainable tensor(s) got no gradient in the first step, e.g. `{}`: they are not connected to the loss",
        dead.len(),
        dead[0]
    )))
}

/// Clips the global gradient norm; returns the norm before clipping.
fn clip(trainables: &[(String, Tensor)], max_norm: Option<f64>) -> f64 {
    let grads: Vec<Tensor> =
        trainables.iter().map(|(_, t)| t.grad()).filter(Tensor::defined).collect();
    if grads.is_empty() {
        return 0.0;
    }
    let norm = tch::no_grad(|| {
        let sq: Vec<Tensor> =
            grads.iter().map(|g| g.to_kind(Kind::Float).square().sum(Kind::Float)).collect();
        Tensor::stack(&sq, 0).sum(Kind::Float).sqrt()
    });
    let norm = f64::try_from(&norm).unwrap_or(f64::NAN);
    if let Some(max) = max_norm {
        if norm > max {
            let scale = max / (norm + 1e-6);
            tch::no_grad(|| {
                for g in &grads {
                    let _ = g.shallow_clone().g_mul_scalar_(scale);
                }
            });
        }
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn guards_name_the_tensor() {
        let a = Tensor::ones([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let b = Tensor::ones([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let c = Tensor::ones([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        (&a * 2.0 + &b * f64::NAN).sum(Kind::Float).backward();
        let named = vec![("a".to_string(), a), ("b".to_string(), b), ("c".to_string(), c)];
        assert_eq!(first_non_finite(&named).as_deref(), Some("the gradient of `b`"));
        let e = check_gradients(&named).unwrap_err().to_string();
        assert!(e.contains("`c`") && e.contains("not connected to the loss"), "{e}");
        let norm = clip(&named[..1], Some(1.0));
        assert!((norm - 8f64.sqrt()).abs() < 1e-6);
        let g = named[0].1.grad();
        assert!(
            (f64::try_from(g.square().sum(Kind::Float)).unwrap().sqrt() - 1.0).abs() < 1e-5,
            "clipped to norm 1"
        );
    }
}
