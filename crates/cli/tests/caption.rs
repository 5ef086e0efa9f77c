//! The `caption` command end to end on a committed tiny model: output format, agreement with the library, and
//! clear errors (non-zero exit, no panic) for bad input.
use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn pgrs(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pgrs")).current_dir(root()).args(args).output().unwrap()
}

#[test]
fn json_lines_carry_image_caption_and_generated_ids() {
    let out = pgrs(&[
        "caption",
        "--model",
        "data/fixtures/mha",
        "--image",
        "data/fixtures/sample.png",
        "data/fixtures/sample.png",
        "--max-new-tokens",
        "6",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    for v in &lines {
        assert_eq!(v["image"], "data/fixtures/sample.png");
        let ids = v["token_ids"].as_array().unwrap();
        assert!(!ids.is_empty() && ids.len() <= 6);
        // ids stop at <eos> (1) if it comes
        if let Some(p) = ids.iter().position(|i| i == 1) {
            assert_eq!(p, ids.len() - 1);
        }
        assert!(v["caption"].is_string());
    }
    assert_eq!(lines[0], lines[1], "same image, same caption (batched rows are independent)");
}

#[test]
fn greedy_and_beam_text_output() {
    for beams in ["1", "3"] {
        let out = pgrs(&[
            "caption",
            "--model",
            "data/fixtures/gqa-hub",
            "--image",
            "data/fixtures/sample.png",
            "--beams",
            beams,
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.starts_with("data/fixtures/sample.png\t"), "{text}");
    }
}

#[test]
fn bad_input_is_a_clear_error_not_a_panic() {
    let cases: &[(&[&str], &str)] = &[
        (&["caption", "--model", "data/fixtures/mqa", "--image", "no/such.png"], "no/such.png"),
        (
            &["caption", "--model", "data/fixtures/nope", "--image", "data/fixtures/sample.png"],
            "data/fixtures/nope",
        ),
        (
            &[
                "caption",
                "--model",
                "data/fixtures/mqa",
                "--image",
                "data/fixtures/mqa/config.json",
            ],
            "config.json",
        ),
        (
            &[
                "caption",
                "--model",
                "data/fixtures/mqa",
                "--image",
                "data/fixtures/sample.png",
                "--dtype",
                "f64",
            ],
            "unsupported dtype",
        ),
        (
            &[
                "caption",
                "--model",
                "data/fixtures/mqa",
                "--image",
                "data/fixtures/sample.png",
                "--device",
                "tpu",
            ],
            "unknown device",
        ),
    ];
    for (args, needle) in cases {
        let out = pgrs(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("error:") && err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn unreadable_images_are_reported_and_every_readable_one_is_captioned() {
    let tmp = std::env::temp_dir().join(format!("pg-caption-mixed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let sample = std::fs::read(root().join("data/fixtures/sample.png")).unwrap();
    let good: Vec<PathBuf> = ["a.png", "b.png", "c.png"].iter().map(|n| tmp.join(n)).collect();
    for g in &good {
        std::fs::write(g, &sample).unwrap();
    }
    let missing = tmp.join("missing.png");
    let text = tmp.join("text.png");
    std::fs::write(&text, "not an image\n").unwrap();
    let truncated = tmp.join("truncated.png");
    std::fs::write(&truncated, &sample[..sample.len() / 3]).unwrap();
    // bad images share both batches with good ones
    let images = [&good[0], &missing, &text, &good[1], &truncated, &good[2]];
    let out = Command::new(env!("CARGO_BIN_EXE_pgrs"))
        .current_dir(root())
        .args(["caption", "--model", "data/fixtures/mqa", "--max-new-tokens", "4"])
        .args(["--batch-size", "3", "--image"])
        .args(images)
        .output()
        .unwrap();
    let (stdout, stderr) =
        (String::from_utf8(out.stdout).unwrap(), String::from_utf8_lossy(&out.stderr).into_owned());
    let _ = std::fs::remove_dir_all(&tmp);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<(&str, &str)> = stdout.lines().map(|l| l.split_once('\t').unwrap()).collect();
    let paths: Vec<String> = good.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(lines.iter().map(|l| l.0).collect::<Vec<_>>(), paths, "{stdout}\n{stderr}");
    assert!(lines.iter().all(|l| l.1 == lines[0].1), "same image, same caption: {stdout}");
    for bad in [&missing, &text, &truncated] {
        let line = stderr.lines().find(|l| l.contains(&*bad.display().to_string()));
        assert!(
            line.is_some_and(|l| l.starts_with("error:")),
            "{} not reported: {stderr}",
            bad.display()
        );
    }
    assert!(stderr.contains("3 of 6 images could not be read"), "{stderr}");
}

/// A PaliGemma 2 directory is recognised from its config.json (Gemma-2 decoder) under either naming scheme: the
/// same weights give the same captions, greedy and beam.
#[test]
fn paligemma2_models_caption_from_their_config() {
    for beams in ["1", "3"] {
        let run = |model: &str| {
            let out = pgrs(&[
                "caption",
                "--model",
                model,
                "--image",
                "data/fixtures/sample.png",
                "--beams",
                beams,
                "--max-new-tokens",
                "6",
                "--json",
            ]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert!(!v["token_ids"].as_array().unwrap().is_empty());
            v
        };
        assert_eq!(run("data/fixtures/pg2-gqa"), run("data/fixtures/pg2-gqa-hub"), "beams {beams}");
    }
}
