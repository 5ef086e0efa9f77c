//! End-to-end runs of `xtask report` and `xtask compare` through the real binary: outputs, printed tables,
//! directories of runs, and the exit codes and messages users see on bad input.
use std::path::{Path, PathBuf};
use std::process::Command;

fn xtask(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pgtools")).args(args).output().expect("xtask runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("xtask-report-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A run with 10 train steps and a test evaluation with the given CIDEr and BLEU-4.
fn run_dir(root: &Path, name: &str, cider: f64, bleu4: f64) -> PathBuf {
    let dir = root.join(format!("{name}-20240501-120000"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("run.json"),
        format!(r#"{{"name":"{name}","strategy":"lora","status":"finished","steps":10}}"#),
    )
    .unwrap();
    let mut log = String::new();
    for s in 1..=10 {
        log += &format!(
            "{{\"kind\":\"train\",\"step\":{s},\"loss\":{},\"lr\":0.001}}\n",
            3.0 / s as f64
        );
    }
    log += &format!(
        "{{\"kind\":\"eval\",\"step\":10,\"split\":\"test\",\"metrics\":{{\"Bleu_4\":{bleu4},\"CIDEr\":{cider}}},\
         \"diversity\":0.5,\"n_images\":2}}\n"
    );
    std::fs::write(dir.join("metrics.jsonl"), log).unwrap();
    dir
}

#[test]
fn report_prints_the_table_and_path() {
    let root = tmp("report");
    let dir = run_dir(&root, "a", 0.5, 0.2);
    let (code, out, err) = xtask(&["report", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("a: test split at step 10, 2 images"), "{out}");
    assert!(out.contains("20.00") && out.contains("50.00"), "{out}");
    assert!(out.contains(&format!("report: {}", dir.join("report.html").display())), "{out}");
    assert!(dir.join("report.html").is_file() && dir.join("plots/loss.svg").is_file());
}

#[test]
fn compare_ranks_and_accepts_a_directory_of_runs() {
    let root = tmp("compare");
    let runs = root.join("runs");
    run_dir(&runs, "low", 0.3, 0.3);
    run_dir(&runs, "high", 0.9, 0.1);
    let out_dir = root.join("cmp");
    let (code, out, err) = xtask(&[
        "compare",
        runs.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--rank-by",
        "cider",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let high = out.find("| 1 | high-20240501-120000 |").expect("high ranked first");
    let low = out.find("| 2 | low-20240501-120000 |").expect("low ranked second");
    assert!(high < low, "{out}");
    assert!(out.contains(&format!("compare: {}", out_dir.join("compare.html").display())), "{out}");
    assert!(out_dir.join("metric-cider.png").is_file());

    // Default output directory: compare-<stamp> next to the runs; a later `compare runs/` skips it.
    let (code, out, err) = xtask(&["compare", runs.to_str().unwrap(), "--rank-by", "Bleu_4"]);
    assert_eq!(code, 0, "{out}{err}");
    let made: Vec<String> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("compare-"))
        .collect();
    assert_eq!(made.len(), 1, "{made:?}");
    assert!(out.find("| 1 | low-").unwrap() < out.find("| 2 | high-").unwrap(), "{out}");
    let (code, out, err) =
        xtask(&["compare", runs.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.matches("-20240501-120000 |").count(), 2, "{out}");
}

#[test]
fn bad_input_gives_a_clear_error_and_exit_code() {
    let root = tmp("bad");
    let (code, _, err) = xtask(&["report", root.join("nope").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("nope: not a directory"), "{err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");

    let (code, _, err) = xtask(&["report", root.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("holds no run directories"), "{err}");

    let dir = run_dir(&root, "r", 0.5, 0.2);
    let mut log = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    log.insert_str(0, "{\"kind\":\"train\",\"step\":0,\"loss\":}\n");
    std::fs::write(dir.join("metrics.jsonl"), log).unwrap();
    let (code, _, err) = xtask(&["report", dir.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("metrics.jsonl:1: not valid JSON"), "{err}");

    let good = run_dir(&root, "g", 0.5, 0.2);
    let (code, _, err) = xtask(&["compare", good.to_str().unwrap(), "--rank-by", "SPICE"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot rank by `SPICE`") && err.contains("Bleu_4, CIDEr"), "{err}");
}
