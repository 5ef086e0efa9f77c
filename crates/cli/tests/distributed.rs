//! Data-parallel training on CPU (Gloo, loopback, two ranks started here under torchrun's environment contract):
//! two ranks with batch 2 learn what one process with batch 4 learns (per-step losses and final trainables, for
//! LoRA, attention-only and a soft prompt, token- and example-mean losses); the sharded evaluation equals one
//! process's; a killed rank stops the other with an error; a stop signal to one rank stops both at the same step
//! with a checkpoint; a two-rank run killed with SIGKILL and resumed ends bit-identical to a straight two-rank run;
//! a resume with another number of ranks is refused (docs/distributed.md).
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{root, synth, temp_dir};

/// Skips (with a note) where this build has no Gloo; CI sets PALIGEMMA_REQUIRE_GLOO and then fails instead.
fn gloo() -> bool {
    if distributed::HAS_GLOO {
        return true;
    }
    assert!(std::env::var_os("PALIGEMMA_REQUIRE_GLOO").is_none(), "built without Gloo's headers");
    eprintln!("skipped: this build has no Gloo (apt install libgloo-dev)");
    false
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `pgrs train <args>` as every rank of a `world`-rank run (one plain process for world 1). One thread per
/// process, so one process and two ranks sum in the same order inside each kernel.
fn launch(world: usize, args: &[String]) -> Vec<Child> {
    let port = free_port();
    (0..world)
        .map(|rank| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgrs"));
            cmd.current_dir(root()).arg("train").args(args).env("OMP_NUM_THREADS", "1");
            distributed::RankEnv::local(rank, world, port).apply_to(&mut cmd);
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect()
}

/// Every rank's output, waiting at most three minutes (then the ranks are killed and the test fails).
fn finish(children: Vec<Child>) -> Vec<Output> {
    let start = Instant::now();
    let mut children = children;
    while children.iter_mut().any(|c| c.try_wait().unwrap().is_none()) {
        if start.elapsed() > Duration::from_secs(180) {
            children.iter_mut().for_each(|c| drop(c.kill()));
            panic!("the ranks did not finish within three minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    children.into_iter().map(|c| c.wait_with_output().unwrap()).collect()
}

fn assert_ok(outs: &[Output]) {
    for (rank, o) in outs.iter().enumerate() {
        assert!(o.status.success(), "rank {rank}: {}", String::from_utf8_lossy(&o.stderr));
    }
}

/// The arguments of a tiny run of `experiment` (experiments/tiny) into `runs`.
fn args(experiment: &str, runs: &Path, batch: usize, sets: &[&str]) -> Vec<String> {
    let mut a: Vec<String> =
        ["--config", &format!("experiments/tiny/{experiment}.toml"), "--quiet"]
            .map(String::from)
            .to_vec();
    a.extend(["--runs-dir".into(), runs.display().to_string()]);
    let common = [
        format!("data.path=\"{}\"", synth().display()),
        format!("train.batch_size={batch}"),
        "train.steps=4".into(),
        "train.checkpoint_every=4".into(),
        "train.eval_every=0".into(),
        "eval.before=true".into(),
        "eval.batch_size=2".into(),
        "eval.test_subset=5".into(),
        "eval.max_new_tokens=4".into(),
    ];
    for s in common.iter().map(String::as_str).chain(sets.iter().copied()) {
        a.extend(["--set".into(), s.to_string()]);
    }
    a
}

fn run_dir(runs: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(runs).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(dirs.len(), 1, "one run directory in {}: {dirs:?}", runs.display());
    dirs.pop().unwrap()
}

fn losses(run: &Path) -> Vec<f64> {
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    log.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["loss"].as_f64().unwrap())
        .collect()
}

fn trainables(run: &Path, step: usize) -> Vec<(String, tch::Tensor)> {
    let file = run.join(format!("checkpoints/step-{step:06}/trainable.safetensors"));
    let mut t = tch::Tensor::read_safetensors(&file).unwrap();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

/// The largest difference, relative to the tensor's largest value.
fn max_relative(a: &tch::Tensor, b: &tch::Tensor) -> f64 {
    let diff = f64::try_from((a - b).abs().max()).unwrap();
    diff / f64::try_from(a.abs().max()).unwrap().max(1e-12)
}

/// Trains `experiment` as one process with batch 4 and as two ranks with batch 2 each; both must agree.
fn two_ranks_equal_one_process(experiment: &str, sets: &[&str]) {
    let (one, two) = (
        temp_dir(&format!("pg-ddp-one-{experiment}")),
        temp_dir(&format!("pg-ddp-two-{experiment}")),
    );
    assert_ok(&finish(launch(1, &args(experiment, &one, 4, sets))));
    let outs = finish(launch(2, &args(experiment, &two, 2, sets)));
    assert_ok(&outs);
    let (one, two) = (run_dir(&one), run_dir(&two));
    let (a, b) = (losses(&one), losses(&two));
    assert_eq!(a.len(), 4, "{experiment}: one loss per step");
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-6 * x.abs(), "{experiment}: losses {a:?} vs {b:?}");
    }
    let (ta, tb) = (trainables(&one, 4), trainables(&two, 4));
    assert_eq!(ta.len(), tb.len());
    for ((name, x), (name_b, y)) in ta.iter().zip(&tb) {
        assert_eq!(name, name_b);
        // Round-off only: where an op records no gradient (frozen layers before the first trainable) and has at
        // most 32 rows, smallmm's decoding-step kernels take it, in their own summation order; a rank's half batch
        // can fit where one process's full batch goes to libtorch (with `PGRS_SMALLMM=0` the LoRA case agrees within
        // 1e-6; with it, 1.1e-6 on the Intel VM). smallmm agrees with libtorch within 1e-5.
        let rel = max_relative(x, y);
        assert!(rel <= 1e-5, "{experiment}: `{name}` differs by {rel:e} (relative)");
    }
    // The evaluation before training (same weights on both sides) is sharded over the ranks batch by batch and
    // gathered: exactly the captions one process writes, in the same order.
    let preds = |run: &Path| std::fs::read(run.join("predictions/step-000000-test.json")).unwrap();
    assert_eq!(preds(&one), preds(&two), "{experiment}: sharded evaluation");
    // Only rank 0 writes, reports and prints the summary.
    assert!(two.join("report.html").exists());
    assert!(String::from_utf8_lossy(&outs[0].stdout).contains("run:"));
    assert!(
        outs[1].stdout.is_empty(),
        "rank 1 printed: {}",
        String::from_utf8_lossy(&outs[1].stdout)
    );
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(two.join("run.json")).unwrap()).unwrap();
    assert_eq!((run["world_size"].as_u64(), run["global_batch"].as_u64()), (Some(2), Some(4)));
    let single: serde_json::Value =
        serde_json::from_slice(&std::fs::read(one.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["final_checkpoint"]["step"], single["final_checkpoint"]["step"]);
    assert_eq!(run["best_checkpoint"]["step"], single["best_checkpoint"]["step"]);
}

/// SGD with momentum: AdamW's first updates are about lr * sign(gradient), so a gradient element within round-off
/// of zero (LoRA A while B is still near zero) may step either way; the summed gradients themselves agree to
/// round-off, which is what these compare (docs/distributed.md, "What is exact").
const SGD: [&str; 2] = ["optim.name=\"sgd\"", "optim.momentum=0.9"];

#[test]
fn lora_on_two_ranks_equals_one_process() {
    if gloo() {
        // with a best checkpoint chosen on validations (rank 0 judges, both ranks follow)
        let select = ["train.eval_every=2", "train.select_best=\"Bleu_1\""];
        two_ranks_equal_one_process(
            "lora",
            &["lora.dropout=0.0", SGD[0], SGD[1], select[0], select[1]],
        );
    }
}

#[test]
fn attention_only_on_two_ranks_equals_one_process_with_example_mean_loss() {
    if gloo() {
        two_ranks_equal_one_process("hard_prompt_google", &["train.loss=\"example_mean\""]);
    }
}

#[test]
fn soft_prompt_on_two_ranks_equals_one_process() {
    if gloo() {
        two_ranks_equal_one_process("soft_prompt", &SGD);
    }
}

/// A long two-rank run, waited for until rank 0 logged a training step.
fn long_run(runs: &Path, extra: &[&str]) -> (Vec<Child>, PathBuf) {
    let mut a = args("lora", runs, 2, &["train.steps=100000", "eval.before=false"]);
    a.extend(extra.iter().map(|s| s.to_string()));
    let mut ranks = launch(2, &a);
    let start = Instant::now();
    loop {
        let run =
            std::fs::read_dir(runs).ok().and_then(|mut d| d.next()).map(|e| e.unwrap().path());
        let log = run
            .as_ref()
            .map(|r| std::fs::read_to_string(r.join("metrics.jsonl")).unwrap_or_default());
        if log.is_some_and(|l| l.contains("\"kind\":\"train\"")) {
            return (ranks, run.unwrap());
        }
        if start.elapsed() > Duration::from_secs(120)
            || ranks.iter_mut().any(|c| c.try_wait().unwrap().is_some())
        {
            ranks.iter_mut().for_each(|c| drop(c.kill()));
            panic!("no training step logged: {:?}", finish(ranks));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill(child: &Child, sig: i32) {
    // SAFETY: kill(2) has no memory effects.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

#[test]
fn a_killed_rank_stops_the_other_with_an_error() {
    if !gloo() {
        return;
    }
    let runs = temp_dir("pg-ddp-killed");
    let (ranks, _) = long_run(&runs, &["--dist-timeout", "60"]);
    kill(&ranks[1], libc::SIGKILL);
    let killed = Instant::now();
    let outs = finish(ranks);
    let waited = killed.elapsed();
    let err = String::from_utf8_lossy(&outs[0].stderr);
    assert!(!outs[0].status.success(), "rank 0 went on: {err}");
    assert!(err.contains("data-parallel training stopped") && err.contains("rank 0 of 2"), "{err}");
    assert!(waited < Duration::from_secs(60), "rank 0 took {waited:?} to stop");
}

#[test]
fn sigterm_to_one_rank_stops_both_at_one_step_with_a_checkpoint() {
    if !gloo() {
        return;
    }
    let runs = temp_dir("pg-ddp-sigterm");
    let (ranks, run) = long_run(&runs, &[]);
    kill(&ranks[1], libc::SIGTERM);
    let outs = finish(ranks);
    for (rank, o) in outs.iter().enumerate() {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(143), "rank {rank}: {err}");
        assert!(err.contains("a checkpoint was saved"), "rank {rank}: {err}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(json["status"], "interrupted");
    let step = json["interrupted"]["step"].as_u64().unwrap() as usize;
    assert!(run.join(format!("checkpoints/step-{step:06}/state.json")).exists());
}

#[test]
fn sigkill_then_resume_on_two_ranks_equals_a_straight_two_rank_run() {
    if !gloo() {
        return;
    }
    let sets = ["train.steps=60", "eval.before=false", "train.keep_checkpoints=20"];
    let straight = temp_dir("pg-ddp-straight");
    assert_ok(&finish(launch(2, &args("lora", &straight, 2, &sets))));
    let straight = run_dir(&straight);

    let runs = temp_dir("pg-ddp-resumed");
    let ranks = launch(2, &args("lora", &runs, 2, &sets));
    let start = Instant::now();
    let run = loop {
        let run =
            std::fs::read_dir(&runs).ok().and_then(|mut d| d.next()).map(|e| e.unwrap().path());
        if let Some(run) = run.filter(|r| r.join("checkpoints/step-000004").exists()) {
            break run;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(2));
    };
    ranks.iter().for_each(|c| kill(c, libc::SIGKILL));
    finish(ranks);
    assert!(!run.join("checkpoints/step-000060").exists(), "killed after the run ended: no test");

    let refused =
        finish(launch(1, &["--quiet".into(), "--resume".into(), run.display().to_string()]));
    let err = String::from_utf8_lossy(&refused[0].stderr);
    assert!(!refused[0].status.success() && err.contains("2 rank(s), and this one has 1"), "{err}");

    let resume = ["--quiet".into(), "--resume".into(), run.display().to_string()];
    assert_ok(&finish(launch(2, &resume)));
    for file in ["trainable.safetensors", "optimizer.safetensors"] {
        let read = |r: &Path| std::fs::read(r.join("checkpoints/step-000060").join(file)).unwrap();
        assert!(read(&straight) == read(&run), "{file} differs from the straight run's");
    }
}

/// The Python of the venv `cargo xtask setup` installed torch into (`.libtorch` points at its torch package), which
/// runs torchrun as `python -m torch.distributed.run`.
fn setup_python() -> Option<PathBuf> {
    let torch = std::fs::canonicalize(root().join(".libtorch")).ok()?;
    let venv = torch.ancestors().nth(4)?;
    Some(venv.join("bin/python")).filter(|p| p.exists())
}

/// torchrun itself (`--no-python`, the c10d rendezvous multi-node jobs use) starts ranks that train exactly what the
/// ranks started here train.
#[test]
fn torchrun_launches_the_same_run() {
    let Some(python) = setup_python().filter(|_| gloo()) else {
        eprintln!("skipped: no torch venv from cargo xtask setup");
        return;
    };
    let sets = ["lora.dropout=0.0", "eval.before=false"];
    let (ours, theirs) = (temp_dir("pg-ddp-ours"), temp_dir("pg-ddp-torchrun"));
    assert_ok(&finish(launch(2, &args("lora", &ours, 2, &sets))));
    let torchrun = Command::new(python)
        .current_dir(root())
        .args([
            "-m",
            "torch.distributed.run",
            "--no-python",
            "--nproc-per-node",
            "2",
            "--nnodes",
            "1",
        ])
        .args(["--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:0"])
        .arg(env!("CARGO_BIN_EXE_pgrs"))
        .arg("train")
        .args(args("lora", &theirs, 2, &sets))
        .env("OMP_NUM_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert_ok(&finish(vec![torchrun]));
    let (ours, theirs) = (run_dir(&ours), run_dir(&theirs));
    assert_eq!(losses(&ours), losses(&theirs));
    let read =
        |r: &Path| std::fs::read(r.join("checkpoints/step-000004/trainable.safetensors")).unwrap();
    assert!(read(&ours) == read(&theirs), "torchrun's ranks trained something else");
}

/// Images that become unreadable mid-run stop both ranks at the same step: rank 0 checkpoints the completed steps and
/// marks the run failed, and the error names the file.
#[test]
fn an_unreadable_image_mid_run_stops_both_ranks_after_a_checkpoint() {
    if !gloo() {
        return;
    }
    let dir = temp_dir("pg-ddp-badimg");
    rsicd_data::synth::generate(&dir.join("data"), 40, 1, 32).unwrap();
    let data = format!("data.path=\"{}\"", dir.join("data/dataset_synth.json").display());
    let runs = dir.join("runs");
    let (ranks, run) = long_run(&runs, &["--set", &data, "--set", "train.checkpoint_every=1000"]);
    for img in std::fs::read_dir(dir.join("data/images")).unwrap() {
        std::fs::write(img.unwrap().path(), b"not an image any more").unwrap();
    }
    let outs = finish(ranks);
    let errs: Vec<String> =
        outs.iter().map(|o| String::from_utf8_lossy(&o.stderr).into_owned()).collect();
    for (o, err) in outs.iter().zip(&errs) {
        assert_eq!(o.status.code(), Some(1), "{err}");
    }
    assert!(errs.iter().any(|e| e.contains("images/") && e.contains("--resume")), "{errs:?}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(json["status"], "failed");
    assert_eq!(
        std::fs::read_dir(run.join("checkpoints")).unwrap().count(),
        1,
        "completed steps checkpointed"
    );
}

/// Rank 0 checks the images before anything is written; when it refuses, the other rank stops with rank 0's reason
/// instead of waiting for it.
#[test]
fn a_refusal_on_rank_0_before_training_stops_the_other_rank_with_its_reason() {
    if !gloo() {
        return;
    }
    let dir = temp_dir("pg-ddp-missing");
    rsicd_data::synth::generate(&dir.join("data"), 12, 0, 32).unwrap();
    let gone = std::fs::read_dir(dir.join("data/images")).unwrap().next().unwrap().unwrap().path();
    std::fs::remove_file(&gone).unwrap();
    let mut a = args("lora", &dir.join("runs"), 2, &["eval.before=false"]);
    a.extend([
        "--set".into(),
        format!("data.path=\"{}\"", dir.join("data/dataset_synth.json").display()),
    ]);
    let outs = finish(launch(2, &a));
    let name = gone.file_name().unwrap().to_string_lossy().to_string();
    let err = |r: usize| String::from_utf8_lossy(&outs[r].stderr).into_owned();
    assert_eq!(
        (outs[0].status.code(), outs[1].status.code()),
        (Some(1), Some(1)),
        "{}\n{}",
        err(0),
        err(1)
    );
    assert!(err(0).contains(&name), "{}", err(0));
    assert!(
        err(1).contains("rank 0 stopped before training") && err(1).contains(&name),
        "{}",
        err(1)
    );
    assert!(!dir.join("runs").exists(), "nothing written");
}
