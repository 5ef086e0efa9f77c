//! End-to-end runs of the dataset commands through the real `xtask` binary: synth -> validate -> eda, and the
//! exit codes and messages users see on bad input.
use std::path::PathBuf;
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
    let d = std::env::temp_dir().join(format!("xtask-data-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn synth_then_validate_strict_then_eda() {
    let data = tmp("synth");
    let (code, out, err) = xtask(&[
        "synth",
        "--out",
        data.to_str().unwrap(),
        "--n",
        "24",
        "--seed",
        "3",
        "--size",
        "32",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = xtask(&[
        "validate",
        "--dataset",
        data.to_str().unwrap(),
        "--strict",
        "--expect-size",
        "32x32",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("24 images, 120 captions; 24 images checked") && out.contains("0 errors"),
        "{out}"
    );
    let report = tmp("eda");
    let (code, out, err) =
        xtask(&["eda", "--dataset", data.to_str().unwrap(), "--out", report.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("vocabulary"), "{out}");
    for f in [
        "stats.json",
        "report.html",
        "caption_length_words.svg",
        "caption_length_words.png",
        "thumbnail_grid.png",
    ] {
        assert!(report.join(f).is_file(), "{f} missing");
    }
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("stats.json")).unwrap()).unwrap();
    assert_eq!(stats["images"], 24);
    assert_eq!(stats["image_stats"]["sizes"]["32x32"], 24);
}

#[test]
fn strict_validation_fails_and_bad_input_is_a_clean_error() {
    let d = tmp("bad");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("dataset_x.json"),
        r#"{"images":[{"filename":"gone.png","split":"train","sentences":[{"raw":"a <image> here"}]}]}"#,
    )
    .unwrap();
    let (code, out, _) =
        xtask(&["validate", "--dataset", d.join("dataset_x.json").to_str().unwrap(), "--strict"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("caption holds a special token") && out.contains("<image>"), "{out}");
    let (code, out, _) =
        xtask(&["validate", "--dataset", d.join("dataset_x.json").to_str().unwrap()]);
    assert_eq!(code, 0, "without --strict problems are reported, not fatal: {out}");

    std::fs::write(d.join("broken.json"), "{\"images\": [\n").unwrap();
    let (code, _, err) = xtask(&[
        "eda",
        "--dataset",
        d.join("broken.json").to_str().unwrap(),
        "--out",
        d.join("o").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("broken.json: line 2") && !err.contains("panicked"), "{err}");

    let (code, _, err) = xtask(&["download", "nosuch", "--out", d.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown dataset \"nosuch\"") && err.contains("rsicd"), "{err}");
    let (code, _, err) = xtask(&["download", "riscm", "--out", d.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("--kaggle <owner>/<dataset>"), "{err}");
}
