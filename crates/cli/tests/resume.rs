//! Resuming is exact: a run killed with SIGKILL mid-way and resumed ends with trainable weights and optimizer state
//! bit-identical to an uninterrupted run (CPU). Ctrl-C (SIGINT) saves a checkpoint and exits cleanly.
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn synth() -> PathBuf {
    static DATA: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DATA.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("pg-resume-synth-{}", std::process::id()));
        rsicd_data::synth::generate(&dir, 40, 0, 32).unwrap();
        dir.join("dataset_synth.json")
    })
    .clone()
}

fn train(runs: &Path, data: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgrs"));
    cmd.current_dir(root())
        .args(["train", "--config", "experiments/demo.toml", "--quiet", "--runs-dir"])
        .arg(runs);
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
    let tmp = std::env::temp_dir().join(format!("pg-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let (straight, killed) = (tmp.join("straight"), tmp.join("killed"));
    let out = train(&straight, &data, &[]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

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

    let out = Command::new(env!("CARGO_BIN_EXE_pgrs"))
        .current_dir(root())
        .args(["train", "--quiet", "--resume"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let straight_run = run_dir(&straight);
    for file in ["trainable.safetensors", "optimizer.safetensors"] {
        assert!(
            bytes(&run, 40, file) == bytes(&straight_run, 40, file),
            "{file} differs after resume"
        );
    }
    // a damaged newest checkpoint is detected and the previous one used
    let newest = run.join("checkpoints/step-000040/trainable.safetensors");
    std::fs::write(&newest, b"not a checkpoint").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pgrs"))
        .current_dir(root())
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
    let runs = std::env::temp_dir().join(format!("pg-sigint-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&runs);
    let mut child = train(
        &runs,
        &data,
        &["--set", "train.checkpoint_every=1000", "--set", "train.steps=100000"],
    )
    .spawn()
    .unwrap();
    let start = Instant::now();
    loop {
        let logged = std::fs::read_dir(&runs)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| std::fs::read_to_string(e.ok()?.path().join("metrics.jsonl")).ok())
            .is_some_and(|m| m.contains("\"kind\":\"train\""));
        if logged {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "ended early");
        assert!(start.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(10));
    }
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "interrupted runs exit with 130");
    let run = run_dir(&runs);
    let ckpts: Vec<_> = std::fs::read_dir(run.join("checkpoints")).unwrap().collect();
    assert_eq!(ckpts.len(), 1, "one checkpoint saved on interrupt");
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(info["status"], "interrupted");
    let _ = std::fs::remove_dir_all(&runs);
}
