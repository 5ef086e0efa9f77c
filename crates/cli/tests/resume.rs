//! Resuming is exact: a run killed with SIGKILL, or stopped by SIGTERM, mid-way and resumed ends with trainable
//! weights and optimizer state bit-identical to an uninterrupted run (CPU). SIGINT, SIGTERM and SIGHUP save a
//! checkpoint and exit with 128 + the signal; a second signal stops at once. Damaged checkpoints, a changed config
//! and unreadable images are refused or handled without losing what was trained (docs/reliability.md).
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

mod common;
use common::{root, synth, temp_dir};

/// The straight 40-step run every resume test compares against, trained once per test binary.
fn straight_run() -> PathBuf {
    static RUN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let runs = temp_dir("pg-resume-straight");
        let _ = std::fs::remove_dir_all(&runs);
        let out = train(&runs, &synth(), &[]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        run_dir(&runs)
    })
    .clone()
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap();
    assert!(ok.success());
}

/// Waits for the trainer to exit, at most two minutes (then kills it, so a lost signal fails the test instead of
/// hanging it).
fn finish(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().unwrap()
}

/// Waits until the run under `runs` has logged a training step.
fn wait_for_training(runs: &Path, child: &mut Child) -> PathBuf {
    let start = Instant::now();
    loop {
        let run =
            std::fs::read_dir(runs).ok().and_then(|mut d| d.next()).map(|e| e.unwrap().path());
        if let Some(run) = run {
            let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap_or_default();
            if log.contains("\"kind\":\"train\"") {
                return run;
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "ended early");
        assert!(start.elapsed() < Duration::from_secs(120), "no training step logged");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `pgrs` in the repository root, on one thread: on a busy machine 2-thread CPU training is not always
/// bit-reproducible (docs/reliability.md, "Bit for bit"), and these tests compare runs bit for bit beside other tests.
fn pgrs() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgrs"));
    cmd.current_dir(root()).env("OMP_NUM_THREADS", "1");
    cmd
}

fn resume_command(run: &Path, extra: &[&str]) -> Command {
    let mut cmd = pgrs();
    cmd.args(["train", "--quiet", "--resume"]).arg(run).args(extra);
    cmd
}

fn resume(run: &Path, extra: &[&str]) -> std::process::Output {
    resume_command(run, extra).output().unwrap()
}

fn run_json(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("run.json")).unwrap()).unwrap()
}

fn train(runs: &Path, data: &Path, extra: &[&str]) -> Command {
    let mut cmd = pgrs();
    common::terminal_signals(&mut cmd);
    cmd.args(["train", "--config", "experiments/demo.toml", "--quiet", "--runs-dir"]).arg(runs);
    for s in [
        format!("data.path=\"{}\"", data.display()),
        "model.scratch.image_size=32".into(),
        "train.steps=40".into(),
        "train.batch_size=4".into(),
        "train.checkpoint_every=4".into(),
        "train.keep_checkpoints=20".into(),
        "train.eval_every=0".into(),
        "eval.before=false".into(),
        "eval.test_subset=2".into(),
        "eval.val_subset=2".into(),
        "eval.max_new_tokens=2".into(),
        "eval.meteor=\"skip\"".into(),
    ] {
        cmd.arg("--set").arg(s);
    }
    cmd.args(extra);
    cmd
}

fn run_dir(runs: &Path) -> PathBuf {
    std::fs::read_dir(runs).unwrap().next().unwrap().unwrap().path()
}

fn wait_for(path: &Path, child: &mut Child) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before {} appeared",
            path.display()
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn bytes(run: &Path, step: usize, file: &str) -> Vec<u8> {
    std::fs::read(run.join(format!("checkpoints/step-{step:06}/{file}"))).unwrap()
}

#[test]
fn sigkill_then_resume_equals_a_straight_run() {
    let data = synth();
    let tmp = temp_dir("pg-resume");
    let _ = std::fs::remove_dir_all(&tmp);
    let killed = tmp.join("killed");
    let mut child = train(&killed, &data, &[]).spawn().unwrap();
    let start = Instant::now();
    while !killed.exists() || std::fs::read_dir(&killed).unwrap().next().is_none() {
        assert!(start.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(5));
    }
    let run = run_dir(&killed);
    wait_for(&run.join("checkpoints/step-000008"), &mut child);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!run.join("checkpoints/step-000040").exists(), "killed before the end");

    let out = resume(&run, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let straight_run = straight_run();
    for file in ["trainable.safetensors", "optimizer.safetensors"] {
        assert!(
            bytes(&run, 40, file) == bytes(&straight_run, 40, file),
            "{file} differs after resume"
        );
    }
    // a damaged newest checkpoint is detected and the previous one used
    let newest = run.join("checkpoints/step-000040/trainable.safetensors");
    std::fs::write(&newest, b"not a checkpoint").unwrap();
    let out = pgrs()
        .args(["eval", "--limit", "2", "--meteor", "skip", "--max-new-tokens", "2", "--run"])
        .arg(&run)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("damaged") && err.contains("at step 36"), "{err}");
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn ctrl_c_saves_a_checkpoint_and_exits_cleanly() {
    let data = synth();
    let runs = temp_dir("pg-sigint");
    let _ = std::fs::remove_dir_all(&runs);
    let mut child = train(
        &runs,
        &data,
        &["--set", "train.checkpoint_every=1000", "--set", "train.steps=100000"],
    )
    .spawn()
    .unwrap();
    let run = wait_for_training(&runs, &mut child);
    signal(&child, "-INT");
    let status = finish(&mut child);
    assert_eq!(status.code(), Some(130), "SIGINT exits with 128 + 2");
    let ckpts: Vec<_> = std::fs::read_dir(run.join("checkpoints")).unwrap().collect();
    assert_eq!(ckpts.len(), 1, "one checkpoint saved on interrupt");
    let info = run_json(&run);
    assert_eq!(info["status"], "interrupted");
    assert_eq!(info["interrupted"]["signal"], "SIGINT");
    let _ = std::fs::remove_dir_all(&runs);
}

/// Issue 9, item 3: preemption (SIGTERM) checkpoints at the next step boundary, exits 143, records it in run.json,
/// and resuming ends bit-identical to the straight run.
#[test]
fn sigterm_checkpoints_and_resume_equals_a_straight_run() {
    let data = synth();
    let runs = temp_dir("pg-sigterm");
    let _ = std::fs::remove_dir_all(&runs);
    // checkpoint_every stays 4 (the straight run's), so the resumed run writes the same files
    let mut child = train(&runs, &data, &[]).spawn().unwrap();
    let run = wait_for_training(&runs, &mut child);
    signal(&child, "-TERM");
    let status = finish(&mut child);
    assert_eq!(status.code(), Some(143), "SIGTERM exits with 128 + 15");
    let info = run_json(&run);
    assert_eq!(info["status"], "interrupted");
    assert_eq!(info["interrupted"]["signal"], "SIGTERM");
    let step = info["interrupted"]["step"].as_u64().unwrap() as usize;
    assert!(step < 40, "stopped mid-run, at step {step}");
    assert!(run.join(format!("checkpoints/step-{step:06}/manifest.json")).exists());

    let out = resume(&run, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("from step {step}")), "{err}");
    let straight = straight_run();
    for file in ["trainable.safetensors", "optimizer.safetensors"] {
        assert!(bytes(&run, 40, file) == bytes(&straight, 40, file), "{file} differs after resume");
    }
    // every step is logged once
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    let mut sorted = steps.clone();
    sorted.dedup();
    assert_eq!(steps, sorted, "a step logged twice: {steps:?}");
    // TensorBoard sees the same curves as for the straight run (the resumed event file supersedes the steps it
    // repeats), every evaluation's metrics, and sample captions
    let tb = |r: &Path| tensorboard::scalars(&r.join("tb")).unwrap();
    let (resumed, whole) = (tb(&run), tb(&straight));
    assert!(resumed["train/loss"].len() >= 2, "{:?}", resumed.keys());
    for tag in ["train/loss", "train/lr", "train/grad_norm", "test/CIDEr", "test/Bleu_4"] {
        assert_eq!(resumed[tag], whole[tag], "{tag}");
    }
    let logged: Vec<(i64, f64)> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| (v["step"].as_i64().unwrap(), v["loss"].as_f64().unwrap() as f32 as f64))
        .collect();
    assert_eq!(resumed["train/loss"], logged, "TensorBoard holds what metrics.jsonl holds");
    let texts = tensorboard::texts(&run.join("tb")).unwrap();
    assert!(texts["test/captions"][0].1.starts_with("| image | caption |"), "{texts:?}");
    let _ = std::fs::remove_dir_all(&runs);
}

/// SIGHUP (a closed terminal) stops the same way; a second signal stops at once, without waiting for the step.
#[test]
fn sighup_stops_cleanly_and_a_second_signal_stops_at_once() {
    let data = synth();
    let runs = temp_dir("pg-sighup");
    let _ = std::fs::remove_dir_all(&runs);
    let long = ["--set", "train.checkpoint_every=1000", "--set", "train.steps=100000"];
    let mut child = train(&runs, &data, &long).spawn().unwrap();
    wait_for_training(&runs, &mut child);
    signal(&child, "-HUP");
    assert_eq!(finish(&mut child).code(), Some(129), "SIGHUP exits with 128 + 1");
    let _ = std::fs::remove_dir_all(&runs);

    // Before training starts (here: the before-training evaluation of many images with long captions) the first
    // signal is only recorded; the second ends the process with its own code at once.
    let mut child = train(
        &runs,
        &data,
        &[&long[..], &["--set", "eval.before=true", "--set", "eval.test_subset=1000"]].concat(),
    )
    .args(["--set", "data.test_split=\"train\"", "--set", "eval.max_new_tokens=64"])
    .args(["--set", "eval.num_beams=3"])
    .spawn()
    .unwrap();
    let start = Instant::now();
    let run = loop {
        let run =
            std::fs::read_dir(&runs).ok().and_then(|mut d| d.next()).map(|e| e.unwrap().path());
        if let Some(run) = run.filter(|r| {
            std::fs::read(r.join("run.json")).is_ok_and(|b| b.windows(8).any(|w| w == b"baseline"))
        }) {
            break run;
        }
        assert!(child.try_wait().unwrap().is_none(), "ended early");
        assert!(start.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(2));
    };
    signal(&child, "-INT");
    signal(&child, "-TERM");
    assert_eq!(finish(&mut child).code(), Some(143), "the second signal (SIGTERM) ended the run");
    assert!(!run.join("checkpoints").exists(), "nothing was trained, nothing saved");
    let _ = std::fs::remove_dir_all(&runs);
}

/// A launcher may start the trainer with SIGTERM blocked (a signal mask survives exec): the trainer unblocks what it
/// handles, so preemption still checkpoints and stops.
#[test]
fn sigterm_is_handled_even_when_the_launcher_left_it_blocked() {
    use std::os::unix::process::CommandExt;
    let data = synth();
    let runs = temp_dir("pg-blocked");
    let long = ["--set", "train.checkpoint_every=1000", "--set", "train.steps=100000"];
    let mut cmd = train(&runs, &data, &long);
    // SAFETY: runs in the forked child before exec; sigprocmask is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let run = wait_for_training(&runs, &mut child);
    signal(&child, "-TERM");
    assert_eq!(finish(&mut child).code(), Some(143), "SIGTERM reached the trainer");
    assert_eq!(run_json(&run)["interrupted"]["signal"], "SIGTERM");
}

/// Issue 9, items 2 and 4: with every checkpoint damaged, resume restarts from step 0, moves the damaged ones to
/// checkpoints/damaged/, keeps the new checkpoints, and starts a fresh metrics log (the old one kept aside).
#[test]
fn all_checkpoints_damaged_restart_keeps_new_checkpoints_and_one_log() {
    let data = synth();
    let runs = temp_dir("pg-damaged");
    let _ = std::fs::remove_dir_all(&runs);
    let out = train(&runs, &data, &["--set", "train.steps=8", "--set", "train.keep_checkpoints=2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = run_dir(&runs);
    for step in [4, 8] {
        std::fs::write(run.join(format!("checkpoints/step-{step:06}/trainable.safetensors")), b"x")
            .unwrap();
    }
    // resume with a run that stops (SIGTERM) after a step or two: its checkpoint must survive
    let mut child =
        resume_command(&run, &["--set", "train.checkpoint_every=1", "--set", "train.steps=100000"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    let start = Instant::now();
    while !run.join("checkpoints/step-000001").exists() {
        assert!(child.try_wait().unwrap().is_none(), "ended early");
        assert!(start.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert!(err.contains("starting from step 0") && err.contains("damaged"), "{err}");
    assert!(run.join("checkpoints/damaged/step-000004").exists());
    assert!(run.join("checkpoints/damaged/step-000008").exists());
    let step = run_json(&run)["interrupted"]["step"].as_u64().unwrap() as usize;
    assert!(
        run.join(format!("checkpoints/step-{step:06}")).exists(),
        "the new checkpoint was pruned"
    );
    // one log for the new attempt (steps start again at 1), the old one kept aside
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let first = serde_json::from_str::<serde_json::Value>(log.lines().next().unwrap()).unwrap();
    let train_steps: Vec<u64> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert!(train_steps.windows(2).all(|w| w[0] < w[1]), "{train_steps:?} (first line {first})");
    let old: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("metrics-"))
        .collect();
    assert_eq!(old.len(), 1, "the earlier log is kept aside");
    let _ = std::fs::remove_dir_all(&runs);
}

/// Issue 9, item 12: a refused resume names each changed key with its old and new value.
#[test]
fn resume_with_a_changed_config_names_the_keys() {
    let data = synth();
    let runs = temp_dir("pg-changed");
    let _ = std::fs::remove_dir_all(&runs);
    let out = train(&runs, &data, &["--set", "train.steps=4"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = run_dir(&runs);
    let out = resume(
        &run,
        &["--set", "optim.lr=0.5", "--set", "train.batch_size=2", "--set", "train.log_every=7"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("optim.lr: ") && err.contains("-> 0.5"), "{err}");
    assert!(err.contains("train.batch_size: 4 -> 2"), "{err}");
    assert!(!err.contains("log_every"), "logging keys may change: {err}");
    let _ = std::fs::remove_dir_all(&runs);
}

/// Issue 9, item 7: missing images are found before step 1 (all of them named); an image that becomes unreadable
/// mid-run checkpoints the completed steps first, then stops naming the file.
#[test]
fn unreadable_images_are_found_before_training_and_mid_run_errors_checkpoint_first() {
    let dir = temp_dir("pg-badimg");
    let _ = std::fs::remove_dir_all(&dir);
    rsicd_data::synth::generate(&dir.join("data"), 40, 1, 32).unwrap();
    let data = dir.join("data/dataset_synth.json");
    let images: Vec<PathBuf> =
        std::fs::read_dir(dir.join("data/images")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(images.len() >= 40);
    let gone = images[3].clone();
    let saved = std::fs::read(&gone).unwrap();
    std::fs::remove_file(&gone).unwrap();
    let out = train(&dir.join("runs"), &data, &[]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&gone.file_name().unwrap().to_string_lossy().to_string()), "{err}");
    assert!(err.contains("--skip-image-check"), "{err}");
    std::fs::write(&gone, saved).unwrap();

    let long = ["--set", "train.checkpoint_every=1000", "--set", "train.steps=100000"];
    let mut child = train(&dir.join("runs2"), &data, &long)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let run = wait_for_training(&dir.join("runs2"), &mut child);
    for img in &images {
        std::fs::write(img, b"not an image any more").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("images/") && err.contains("--resume"), "{err}");
    let info = run_json(&run);
    assert_eq!(info["status"], "failed");
    let ckpts: Vec<_> = std::fs::read_dir(run.join("checkpoints")).unwrap().collect();
    assert_eq!(ckpts.len(), 1, "the completed steps were checkpointed before stopping");
    let _ = std::fs::remove_dir_all(&dir);
}
