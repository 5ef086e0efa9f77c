//! The `caption` command end to end on a committed tiny model: output format, agreement with the library, and
//! clear errors (non-zero exit, no panic) for bad input; captioning at scale: directories and glob patterns, a PEFT
//! adapter, `--output` in JSONL, CSV and COCO results, `--resume`, never replacing a file without `--overwrite`,
//! and runs stopped by SIGTERM or SIGKILL keeping what they finished.
mod common;

use common::root;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

fn pgrs(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pgrs")).current_dir(root()).args(args).output().unwrap()
}

#[test]
fn json_lines_carry_image_caption_and_generated_ids() {
    let tmp = TempDir::new("json-lines");
    let copy = tmp.image("copy.png");
    let out = pgrs(&[
        "caption",
        "--model",
        "data/fixtures/mha",
        "--image",
        "data/fixtures/sample.png",
        &copy,
        "data/fixtures/./sample.png",
        "--max-new-tokens",
        "6",
        "--json",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("1 repeated image path(s) are captioned once"), "{err}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "the same path twice is captioned once: {text}");
    assert_eq!(lines[0]["image"], "data/fixtures/sample.png");
    assert_eq!(lines[1]["image"], copy.as_str());
    for v in &lines {
        let ids = v["token_ids"].as_array().unwrap();
        assert!(!ids.is_empty() && ids.len() <= 6);
        // ids stop at <eos> (1) if it comes
        if let Some(p) = ids.iter().position(|i| i == 1) {
            assert_eq!(p, ids.len() - 1);
        }
        assert!(v["caption"].is_string());
    }
    assert_eq!(
        (&lines[0]["caption"], &lines[0]["token_ids"]),
        (&lines[1]["caption"], &lines[1]["token_ids"]),
        "same image, same caption (batched rows are independent)"
    );
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
    let text = tmp.join("text.png");
    std::fs::write(&text, "not an image\n").unwrap();
    let truncated = tmp.join("truncated.png");
    std::fs::write(&truncated, &sample[..sample.len() / 3]).unwrap();
    // bad images share both batches with good ones
    let images = [&good[0], &text, &good[1], &truncated, &good[2]];
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
    for bad in [&text, &truncated] {
        let line = stderr.lines().find(|l| l.contains(&*bad.display().to_string()));
        assert!(
            line.is_some_and(|l| l.starts_with("error:")),
            "{} not reported: {stderr}",
            bad.display()
        );
    }
    assert!(stderr.contains("2 of 5 images could not be read"), "{stderr}");
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

// ---- captioning at scale ----

const MODEL: &str = "data/fixtures/mqa";

/// A scratch directory under the system temp dir, removed when dropped (a failing test included).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("pg-caption-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    /// A copy of the sample image at `rel` (parents created); its path as text.
    fn image(&self, rel: &str) -> String {
        self.file(rel, &std::fs::read(root().join("data/fixtures/sample.png")).unwrap())
    }

    fn file(&self, rel: &str, bytes: &[u8]) -> String {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    }

    /// The names in the directory, sorted (to see that no temporary file or journal is left).
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `caption --model MODEL --max-new-tokens 3` and `extra`.
fn caption(extra: &[&str]) -> Output {
    let mut args = vec!["caption", "--model", MODEL, "--max-new-tokens", "3"];
    args.extend_from_slice(extra);
    pgrs(&args)
}

/// The image column of `caption`'s text output.
fn captioned(out: &Output) -> Vec<String> {
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).lines().map(|l| l.split_once('\t').unwrap().0.to_string()).collect()
}

fn refused(out: &Output, needles: &[&str]) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
}

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// RFC 4180 rows (quoted fields with doubled quotes and line breaks), read by rsicd-data's CSV reader.
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let rows = rsicd_data::formats::csv::parse(text)
        .unwrap_or_else(|(line, e)| panic!("line {line}: {e}: {text:?}"));
    assert!(text.is_empty() || text.ends_with('\n'), "the file ends with its last row: {text:?}");
    rows.into_iter().map(|r| r.fields).collect()
}

#[test]
fn directories_are_searched_recursively_for_image_extensions() {
    let tmp = TempDir::new("dirs");
    let want = [
        tmp.image("scenes/a.png"),
        tmp.image("scenes/sub/B.PNG"),
        tmp.image("scenes/sub/deeper/c.JpG"),
        tmp.image("scenes/z.webp.png"),
    ];
    tmp.file("scenes/notes.txt", b"not an image");
    tmp.file("scenes/sub/captions.json", b"[]");
    tmp.image("scenes/.hidden/h.png");
    tmp.image("scenes/._resource-fork.png");
    let dir = tmp.path("scenes").display().to_string();
    assert_eq!(
        captioned(&caption(&["--image", &dir])),
        want,
        "sorted, images only, hidden skipped"
    );
    // the path keeps the form it was given in; a file given again is captioned once
    let slash = format!("{dir}/");
    let got = captioned(&caption(&["--image", &want[3], &slash]));
    assert_eq!(got[0], want[3]);
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(got[1].starts_with(&slash) && got[1].ends_with("a.png"), "{got:?}");
}

#[test]
fn glob_patterns_match_files_and_directories() {
    let tmp = TempDir::new("globs");
    let a = tmp.image("scenes/a.png");
    let b = tmp.image("scenes/sub/b.png");
    let c = tmp.image("scenes/sub/deeper/c.png");
    let d = tmp.image("scenes/sub/deeper/d.tif.png");
    let e = tmp.image("scenes/other/E.PNG");
    tmp.file("scenes/sub/notes.png.txt", b"not an image");
    let pat = |p: &str| tmp.path(p).display().to_string();
    let cases: Vec<(String, Vec<&String>)> = vec![
        (pat("scenes/*.png"), vec![&a]),
        (pat("scenes/**/*.png"), vec![&a, &b, &c, &d]),
        (pat("scenes/**/?.png"), vec![&a, &b, &c]),
        (pat("scenes/*/*.PNG"), vec![&e]),
        // a directory that a pattern matches is searched like a directory given as such
        (pat("scenes/s?b"), vec![&b, &c, &d]),
        (pat("scenes/**"), vec![&a, &e, &b, &c, &d]),
    ];
    for (pattern, want) in cases {
        let got = captioned(&caption(&["--image", &pattern]));
        assert_eq!(got.iter().collect::<Vec<_>>(), want, "{pattern}");
    }
}

#[test]
fn missing_paths_empty_directories_and_patterns_matching_nothing_are_errors() {
    let tmp = TempDir::new("missing");
    let good = tmp.image("a.png");
    std::fs::create_dir_all(tmp.path("empty/sub")).unwrap();
    tmp.file("empty/sub/readme.txt", b"no images here");
    let missing = tmp.path("missing.png").display().to_string();
    let empty = tmp.path("empty").display().to_string();
    let nothing = tmp.path("*.jpg").display().to_string();
    for (bad, needle) in [
        (&missing, "no such file or directory"),
        (&empty, "the directory holds no images"),
        (&nothing, "the pattern matches no images"),
    ] {
        let out = caption(&["--image", &good, bad]);
        refused(&out, &[bad, needle, "error:"]);
        assert!(out.stdout.is_empty(), "nothing is captioned before the inputs are checked");
    }
}

#[test]
fn an_adapter_is_applied_and_a_mismatched_one_is_refused() {
    let run = |extra: &[&str]| {
        let mut args = vec!["--image", "data/fixtures/sample.png", "--json"];
        args.extend_from_slice(extra);
        let out = caption(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (v, text(&out.stderr))
    };
    let (base, _) = run(&[]);
    let (tuned, err) = run(&["--adapter", "data/fixtures/mqa-peft-lora"]);
    assert!(err.contains("adapter data/fixtures/mqa-peft-lora: LoRA r=4"), "{err}");
    assert_ne!(base["token_ids"], tuned["token_ids"], "the adapter changes the captions");
    let (again, _) = run(&["--adapter", "data/fixtures/mqa-peft-lora", "--batch-size", "2"]);
    assert_eq!(tuned, again, "deterministic");
    // an adapter trained on another base: its shapes do not fit
    let out = pgrs(&[
        "caption",
        "--model",
        "data/fixtures/mha",
        "--adapter",
        "data/fixtures/mqa-peft-lora",
        "--image",
        "data/fixtures/sample.png",
    ]);
    refused(&out, &["data/fixtures/mqa-peft-lora", "data/fixtures/mha", "has shape"]);
    // not an adapter directory: refused before the model is loaded
    let out = caption(&["--adapter", "data/fixtures/mqa", "--image", "data/fixtures/sample.png"]);
    refused(&out, &["--adapter data/fixtures/mqa", "adapter_config.json"]);
}

#[test]
fn each_output_format_reads_back() {
    let tmp = TempDir::new("formats");
    let images = [tmp.image("in/a.png"), tmp.image("in/sub/b.png"), tmp.image("in/c.png")];
    let dir = tmp.path("in").display().to_string();
    let reference = caption(&["--image", &dir, "--json"]);
    assert!(reference.status.success(), "{}", text(&reference.stderr));
    let want: Vec<serde_json::Value> =
        text(&reference.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(want.len(), 3);
    for ext in ["jsonl", "csv", "json"] {
        let path = tmp.path(&format!("out/captions.{ext}"));
        let out =
            caption(&["--image", &dir, "--batch-size", "2", "--output", path.to_str().unwrap()]);
        assert!(out.status.success(), "{ext}: {}", text(&out.stderr));
        assert!(out.stdout.is_empty(), "{ext}: the captions go to the file");
        let file = std::fs::read_to_string(&path).unwrap();
        match ext {
            "jsonl" => assert_eq!(jsonl(&path), want, "as --json prints"),
            "csv" => {
                let rows = csv_rows(&file);
                assert_eq!(rows[0], ["image", "caption"]);
                let got: Vec<[&str; 2]> =
                    rows[1..].iter().map(|r| [r[0].as_str(), r[1].as_str()]).collect();
                let exp: Vec<[&str; 2]> = want
                    .iter()
                    .map(|v| [v["image"].as_str().unwrap(), v["caption"].as_str().unwrap()])
                    .collect();
                assert_eq!(got, exp, "{file}");
            }
            _ => {
                let v: serde_json::Value = serde_json::from_str(&file).unwrap();
                let got: Vec<(&str, &str)> = v
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| (r["image_id"].as_str().unwrap(), r["caption"].as_str().unwrap()))
                    .collect();
                let names = ["a.png", "c.png", "b.png"];
                let exp: Vec<(&str, &str)> = names
                    .iter()
                    .zip(&want)
                    .map(|(n, v)| (*n, v["caption"].as_str().unwrap()))
                    .collect();
                assert_eq!(got, exp, "COCO results name images by file name: {file}");
            }
        }
    }
    let mut left: Vec<String> = std::fs::read_dir(tmp.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["captions.csv", "captions.json", "captions.jsonl"],
        "no journal or temporary file left"
    );
    assert_eq!(images.len(), 3);
    // COCO results cannot hold two images with one file name; other extensions are not guessed at
    let twin = tmp.image("in/sub/a.png");
    let coco = tmp.path("out/twins.json").display().to_string();
    refused(&caption(&["--image", &dir, "--output", &coco]), &[&coco, &twin, "both `a.png`"]);
    let txt = tmp.path("out/captions.txt").display().to_string();
    refused(&caption(&["--image", &dir, "--output", &txt]), &[&txt, ".jsonl", ".csv", ".json"]);
    assert!(!tmp.path("out/twins.json").exists() && !tmp.path("out/captions.txt").exists());
}

#[test]
fn an_existing_output_is_replaced_only_with_overwrite() {
    let tmp = TempDir::new("overwrite");
    let image = tmp.image("a.png");
    let path = tmp.file("out.jsonl", b"mine, not a caption file\n");
    let before = std::fs::read(&path).unwrap();
    refused(
        &caption(&["--image", &image, "--output", &path]),
        &[&path, "already exists", "--resume", "--overwrite"],
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "untouched");
    // --resume reads it first, and says where it is not what was expected
    refused(
        &caption(&["--image", &image, "--output", &path, "--resume"]),
        &[&path, "line 1", "\"image\""],
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "untouched");
    let out = caption(&["--image", &image, "--output", &path, "--overwrite"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = jsonl(Path::new(&path));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["image"], image.as_str());
    assert_eq!(tmp.names(), ["a.png", "out.jsonl"]);
    // --resume and --overwrite need --output, and exclude each other
    for extra in
        [&["--resume"][..], &["--overwrite"], &["--output", &path, "--resume", "--overwrite"]]
    {
        let out = caption(&[&["--image", &image][..], extra].concat());
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", text(&out.stderr));
    }
}

/// `--resume` captions only the images an output does not hold; those it holds keep their captions (sentinels
/// that the model would never write), in every format, CSV quoting included.
#[test]
fn resume_skips_the_images_already_written() {
    let tmp = TempDir::new("resume");
    let images: Vec<String> = (0..4).map(|i| tmp.image(&format!("in/{i}.png"))).collect();
    let dir = tmp.path("in").display().to_string();
    let tricky = "SENTINEL says \"hi\", twice\nthen, again";
    let prefills = [
        (
            "jsonl",
            format!(
                "{{\"image\":{:?},\"caption\":\"SENTINEL 0\",\"token_ids\":[1]}}\n{{\"image\":{:?},\"caption\":{}}}\n",
                images[0],
                images[2],
                serde_json::to_string(tricky).unwrap()
            ),
        ),
        (
            "csv",
            format!(
                "image,caption\r\n\"{}\",SENTINEL 0\r\n{},\"{}\"\r\n",
                images[0],
                images[2],
                tricky.replace('"', "\"\"")
            ),
        ),
        ("json", format!("[{{\"image_id\": \"0.png\", \"caption\": \"SENTINEL 0\"}}, {{\"image_id\": \"2.png\", \"caption\": {}}}]", serde_json::to_string(tricky).unwrap())),
    ];
    for (ext, prefill) in prefills {
        let path = tmp.file(&format!("out.{ext}"), prefill.as_bytes());
        let out = caption(&["--image", &dir, "--output", &path, "--resume"]);
        let err = text(&out.stderr);
        assert!(out.status.success(), "{ext}: {err}");
        assert!(
            err.contains("2 of 4 images are in") && err.contains("captioning the other 2"),
            "{ext}: {err}"
        );
        // (image key, caption) in file order
        let got: Vec<(String, String)> = match ext {
            "jsonl" => jsonl(Path::new(&path))
                .iter()
                .map(|v| {
                    (v["image"].as_str().unwrap().into(), v["caption"].as_str().unwrap().into())
                })
                .collect(),
            "csv" => {
                let rows = csv_rows(&std::fs::read_to_string(&path).unwrap());
                assert_eq!(rows[0], ["image", "caption"]);
                rows[1..].iter().map(|r| (r[0].clone(), r[1].clone())).collect()
            }
            _ => serde_json::from_slice::<serde_json::Value>(&std::fs::read(&path).unwrap())
                .unwrap()
                .as_array()
                .unwrap()
                .iter()
                .map(|v| {
                    (v["image_id"].as_str().unwrap().into(), v["caption"].as_str().unwrap().into())
                })
                .collect(),
        };
        let key = |i: usize| if ext == "json" { format!("{i}.png") } else { images[i].clone() };
        let keys: Vec<String> = got.iter().map(|g| g.0.clone()).collect();
        assert_eq!(keys, [key(0), key(2), key(1), key(3)], "{ext}: kept first, then the new ones");
        assert_eq!(got[0].1, "SENTINEL 0", "{ext}");
        assert_eq!(got[1].1, tricky, "{ext}: quotes, commas and line breaks survive");
        assert!(!got[2].1.contains("SENTINEL") && got[2].1 == got[3].1, "{ext}: {got:?}");
        // everything is done now: nothing is captioned (the model is not even loaded), the file is unchanged
        let before = std::fs::read(&path).unwrap();
        let out = caption(&["--image", &dir, "--output", &path, "--resume"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("nothing to caption"), "{}", text(&out.stderr));
        assert_eq!(std::fs::read(&path).unwrap(), before, "{ext}");
    }
    assert_eq!(
        tmp.names(),
        ["in", "out.csv", "out.json", "out.jsonl"],
        "no journal or temporary file left"
    );
}

/// A `caption` with the default dispositions a terminal gives (a test runner may have SIGINT / SIGHUP ignored).
fn spawn_caption(args: &[&str]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgrs"));
    common::terminal_signals(&mut cmd);
    cmd.current_dir(root())
        .args(["caption", "--model", MODEL, "--batch-size", "1"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `journal` holds a finished line (the child still running), then sends `signal`; returns the exit
/// status and stderr (a lost signal fails the test after two minutes instead of hanging it).
fn stop_after_first_batch(
    mut child: Child,
    journal: &Path,
    signal: i32,
) -> (std::process::ExitStatus, String) {
    let start = Instant::now();
    while !std::fs::read_to_string(journal).is_ok_and(|t| t.contains('\n')) {
        assert!(child.try_wait().unwrap().is_none(), "ended before a batch was journaled");
        assert!(start.elapsed() < Duration::from_secs(120), "no batch journaled");
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: kill(2) on the child we spawned.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
    while child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    (out.status, text(&out.stderr))
}

const MANY: usize = 120;

fn many_images(tmp: &TempDir) -> Vec<String> {
    (0..MANY).map(|i| tmp.image(&format!("in/{i:03}.png"))).collect()
}

/// Every image once, in input order.
fn assert_complete(path: &Path, images: &[String]) {
    let lines = jsonl(path);
    let got: Vec<&str> = lines.iter().map(|v| v["image"].as_str().unwrap()).collect();
    assert_eq!(got, images.iter().map(String::as_str).collect::<Vec<_>>());
}

/// Issue 13: SIGTERM stops at a batch boundary, the finished captions are written whole (exit 143), and `--resume`
/// captions the rest, leaving the finished ones as they were.
#[test]
fn sigterm_keeps_the_finished_captions_and_resume_completes_them() {
    let tmp = TempDir::new("sigterm");
    let images = many_images(&tmp);
    let dir = tmp.path("in").display().to_string();
    let path = tmp.path("out.jsonl");
    let out = path.display().to_string();
    let child = spawn_caption(&["--image", &dir, "--output", &out]);
    let (status, err) =
        stop_after_first_batch(child, &tmp.path("out.jsonl.partial.jsonl"), libc::SIGTERM);
    assert_eq!(status.code(), Some(143), "SIGTERM exits with 128 + 15: {err}");
    assert!(err.contains("SIGTERM: stopped after") && !err.contains("panicked"), "{err}");
    let first = jsonl(&path);
    assert!(!first.is_empty() && first.len() < MANY, "{} captions kept: {err}", first.len());
    assert_complete(&path, &images[..first.len()]);
    assert_eq!(tmp.names(), ["in", "out.jsonl"], "the journal is folded into the output");
    // without --resume the output is not touched
    refused(&caption(&["--image", &dir, "--output", &out]), &["already exists"]);
    // as the stopped run: greedy, 32 new tokens
    let done = pgrs(&["caption", "--model", MODEL, "--image", &dir, "--output", &out, "--resume"]);
    let err = text(&done.stderr);
    assert!(done.status.success(), "{err}");
    assert!(err.contains(&format!("captioning the other {}", MANY - first.len())), "{err}");
    assert_complete(&path, &images);
    assert_eq!(
        jsonl(&path)[..first.len()],
        first[..],
        "the finished captions are kept as they were"
    );
}

/// SIGKILL leaves no chance to write the output: the journal keeps every finished batch (a torn last line is
/// dropped), a new run refuses to start over it, and `--resume` continues from it.
#[test]
fn sigkill_leaves_a_journal_that_resume_continues() {
    let tmp = TempDir::new("sigkill");
    let images = many_images(&tmp);
    let dir = tmp.path("in").display().to_string();
    let (path, journal) = (tmp.path("out.csv"), tmp.path("out.csv.partial.jsonl"));
    let out = path.display().to_string();
    let child = spawn_caption(&["--image", &dir, "--output", &out]);
    let (status, _) = stop_after_first_batch(child, &journal, libc::SIGKILL);
    assert_eq!(status.code(), None, "killed");
    assert!(!path.exists(), "no half-written output");
    let journaled = jsonl(&journal).len();
    assert!((1..MANY).contains(&journaled), "{journaled} lines journaled");
    refused(
        &caption(&["--image", &dir, "--output", &out]),
        &["out.csv.partial.jsonl", "--resume", "--overwrite"],
    );
    // a line cut short by the kill
    let mut torn = std::fs::read(&journal).unwrap();
    torn.extend_from_slice(b"{\"image\":\"");
    std::fs::write(&journal, torn).unwrap();
    let done = caption(&["--image", &dir, "--output", &out, "--resume"]);
    let err = text(&done.stderr);
    assert!(done.status.success(), "{err}");
    assert!(err.contains("dropping its last line"), "{err}");
    assert!(err.contains(&format!("captioning the other {}", MANY - journaled)), "{err}");
    let rows = csv_rows(&std::fs::read_to_string(&path).unwrap());
    let got: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(got, images.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(tmp.names(), ["in", "out.csv"], "the journal is removed once folded in");
}
