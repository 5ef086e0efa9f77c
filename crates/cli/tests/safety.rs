//! Nothing a user owns is lost: `export` never writes into what its run reads nor over files without
//! `--overwrite`, and invalid numbers (zero counts, non-finite or out-of-range values) are refused up front with
//! an error naming the option or key, never accepted silently.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn pgrs<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_pgrs")).current_dir(root()).args(args).output().unwrap()
}

/// A temporary directory removed when the test ends (pass or fail).
struct Tmp(PathBuf);

impl Tmp {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("pg-safety-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Tmp(dir)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every file under `dir` (relative name -> bytes).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Fails unless the command exited non-zero (without a panic) and its stderr holds every needle.
fn assert_refused(out: &Output, needles: &[&str], what: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "{what}: accepted\n{err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    for n in needles {
        assert!(err.contains(n), "{what}: `{n}` not in\n{err}");
    }
}

#[test]
fn export_never_writes_into_what_the_run_reads_nor_over_files_without_overwrite() {
    let tmp = Tmp::new("export");
    // a private copy of the base (tokenizer.json is a symlink in the fixture: copy its contents)
    let base = tmp.0.join("base");
    std::fs::create_dir_all(&base).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(root().join("data/fixtures/mqa").join(f), base.join(f)).unwrap();
    }
    let data = tmp.0.join("data");
    rsicd_data::synth::generate(&data, 20, 0, 32).unwrap();
    let runs = tmp.0.join("runs");
    let mut train = vec![
        "train".to_string(),
        "--config".into(),
        "experiments/tiny/lora.toml".into(),
        "--quiet".into(),
        "--runs-dir".into(),
        runs.display().to_string(),
    ];
    for s in [
        format!("model.path=\"{}\"", base.display()),
        format!("data.path=\"{}\"", data.join("dataset_synth.json").display()),
        "train.steps=1".into(),
        "train.batch_size=2".into(),
        "eval.test_subset=1".into(),
        "eval.val_subset=1".into(),
        "eval.max_new_tokens=2".into(),
    ] {
        train.extend(["--set".into(), s]);
    }
    let out = pgrs(&train);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = std::fs::read_dir(&runs).unwrap().next().unwrap().unwrap().path();
    let (base_before, data_before) = (snapshot(&base), snapshot(&data));
    let export = |to: &Path, overwrite: bool| {
        let mut args = vec!["export".into(), "--run".into(), run.clone().into_os_string()];
        args.extend(["--to".into(), to.as_os_str().to_owned()]);
        if overwrite {
            args.push("--overwrite".into());
        }
        pgrs(args)
    };

    // the base itself (the reported bug), with and without --overwrite, and spelled another way
    let base_str = base.canonicalize().unwrap().display().to_string();
    for (to, overwrite) in
        [(base.clone(), false), (base.clone(), true), (tmp.0.join("data/../base"), true)]
    {
        let out = export(&to, overwrite);
        assert_refused(&out, &["--to", "the base model directory", &base_str], "--to <base>");
    }
    // inside the base, the run, the dataset, or a directory holding the run
    let cases = [
        (base.join("merged"), "is inside the base model directory"),
        (run.clone(), "is the run directory"),
        (run.join("export"), "is inside the run directory"),
        (data.clone(), "the dataset directory"),
        (data.join("images"), "the dataset directory"),
        (runs.clone(), "contains the run directory"),
    ];
    for (to, needle) in &cases {
        let out = export(to, true);
        assert_refused(&out, &[needle], &to.display().to_string());
    }
    assert!(!base.join("merged").exists() && !run.join("export").exists());
    assert!(snapshot(&base) == base_before, "the base model directory changed");
    assert!(snapshot(&data) == data_before, "the dataset changed");

    // a non-empty target: refused without --overwrite, untouched
    let target = tmp.0.join("target");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("notes.txt"), b"mine").unwrap();
    let out = export(&target, false);
    assert_refused(&out, &["--to", "not empty", "notes.txt", "--overwrite"], "non-empty --to");
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 1, "nothing written");

    // with --overwrite: the model files are written, the user's other files kept, no temporaries left
    let out = export(&target, true);
    assert!(out.status.success(), "{}", stderr(&out));
    let written = snapshot(&target);
    let names: Vec<String> = written.keys().map(|p| p.display().to_string()).collect();
    assert_eq!(names, ["config.json", "model.safetensors", "notes.txt", "tokenizer.json"]);
    assert_eq!(written[Path::new("notes.txt")], b"mine");
    assert_eq!(written[Path::new("tokenizer.json")], base_before[Path::new("tokenizer.json")]);
    assert!(snapshot(&base) == base_before, "the base model directory changed");

    // a new directory needs no flag, and the export is a loadable model
    let fresh = tmp.0.join("fresh/merged");
    let out = export(&fresh, false);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = pgrs([
        "caption".as_ref(),
        "--model".as_ref(),
        fresh.as_os_str(),
        "--image".as_ref(),
        "data/fixtures/sample.png".as_ref(),
        "--max-new-tokens".as_ref(),
        "2".as_ref(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn zero_counts_and_bad_numbers_on_the_command_line_name_the_option() {
    let caption =
        ["caption", "--model", "data/fixtures/mqa", "--image", "data/fixtures/sample.png"];
    let eval = ["eval", "--model", "data/fixtures/mqa", "--dataset", "no/such/dataset.json"];
    let plan = ["plan", "--config", "experiments/tiny/lora.toml"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        ([&caption[..], &["--beams", "0"]].concat(), "--beams"),
        ([&caption[..], &["--batch-size", "0"]].concat(), "--batch-size"),
        ([&caption[..], &["--max-new-tokens", "0"]].concat(), "--max-new-tokens"),
        ([&caption[..], &["--beams=-1"]].concat(), "--beams"),
        ([&eval[..], &["--beams", "0"]].concat(), "--beams"),
        ([&eval[..], &["--batch-size", "0"]].concat(), "--batch-size"),
        ([&eval[..], &["--max-new-tokens", "0"]].concat(), "--max-new-tokens"),
        ([&eval[..], &["--limit", "0"]].concat(), "--limit"),
        ([&plan[..], &["--text-len", "0"]].concat(), "--text-len"),
        ([&plan[..], &["--gpu-gib", "nan"]].concat(), "--gpu-gib"),
        ([&plan[..], &["--gpu-gib=-16"]].concat(), "--gpu-gib"),
        ([&plan[..], &["--architecture", "paligemma2-7b-pt-224"]].concat(), "--architecture"),
    ];
    for (args, option) in &cases {
        let out = pgrs(args);
        assert_refused(&out, &[option, "expected"], &args.join(" "));
    }
}

#[test]
fn non_finite_or_out_of_range_config_values_name_the_key() {
    let cases = [
        ("optim.lr=inf", "optim.lr = inf: expected a finite number > 0"),
        ("optim.lr=nan", "optim.lr = NaN: expected a finite number > 0"),
        ("optim.lr=-0.01", "optim.lr = -0.01: expected a finite number > 0"),
        ("train.batch_size=0", "train.batch_size = 0: expected an integer >= 1"),
        ("lora.dropout=1.5", "lora.dropout = 1.5: expected a number in [0, 1)"),
        ("eval.num_beams=0", "eval.num_beams = 0"),
    ];
    for (set, want) in cases {
        for cmd in ["train", "plan"] {
            let mut args = vec![cmd, "--config", "experiments/tiny/lora.toml", "--set", set];
            if cmd == "train" {
                args.push("--dry-run");
            }
            let out = pgrs(&args);
            assert_refused(&out, &["experiments/tiny/lora.toml", want], &args.join(" "));
        }
    }
}

/// An error says each cause once: no OS error twice, no message segment repeated right after itself (issue 9,
/// item 12: "entity not found: entity not found").
fn says_each_cause_once(err: &str) -> bool {
    let segments: Vec<&str> = err.split(": ").map(str::trim).collect();
    !segments.windows(2).any(|w| w[0] == w[1])
        && (1..200).all(|n| err.matches(&format!("(os error {n})")).count() <= 1)
}

#[test]
fn error_messages_say_each_cause_once() {
    let tmp = Tmp::new("messages");
    let file = tmp.0.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let file_as_dir = file.join("runs");
    rsicd_data::synth::generate(&tmp.0.join("data"), 10, 0, 32).unwrap();
    let data = tmp.0.join("data/dataset_synth.json");
    let cases: Vec<Vec<String>> = vec![
        vec!["train".into(), "--config".into(), "/nonexistent/exp.toml".into()],
        vec!["train".into(), "--resume".into(), "/nonexistent/run".into()],
        vec![
            "caption".into(),
            "--model".into(),
            "/nonexistent/model".into(),
            "--image".into(),
            "data/fixtures/sample.png".into(),
        ],
        vec![
            "eval".into(),
            "--model".into(),
            "data/fixtures/mqa".into(),
            "--dataset".into(),
            "/nonexistent/dataset.json".into(),
        ],
        // a runs directory that cannot be created (a file is in the way: os error 20)
        vec![
            "train".into(),
            "--config".into(),
            "experiments/demo.toml".into(),
            "--runs-dir".into(),
            file_as_dir.display().to_string(),
            "--set".into(),
            format!("data.path=\"{}\"", data.display()),
            "--set".into(),
            "model.scratch.image_size=32".into(),
        ],
    ];
    for args in cases {
        let out = pgrs(&args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_ne!(out.status.code(), Some(101), "{args:?} panicked: {err}");
        assert!(says_each_cause_once(&err), "{args:?} repeats itself:\n{err}");
    }
}

/// Every recipe in experiments/rsicd and experiments/riscm quotes its memory plan in its header ("Expected memory
/// (`cargo xtask plan --config F --architecture A`): N GiB"): running that command prints N GiB, for PaliGemma 1 and 2.
#[test]
fn recipes_quote_the_memory_plan_they_get() {
    let mut checked = 0;
    for ds in ["rsicd", "riscm"] {
        for entry in std::fs::read_dir(root().join("experiments").join(ds)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let header: String = text
                .lines()
                .take_while(|l| l.starts_with('#'))
                .map(|l| l.trim_start_matches('#').trim())
                .collect::<Vec<_>>()
                .join(" ");
            let Some(rest) = header.split("Expected memory (`cargo xtask plan ").nth(1) else {
                panic!("{}: no quoted memory plan", path.display())
            };
            let (command, after) = rest.split_once("`):").unwrap();
            let quoted = after.split_whitespace().next().unwrap();
            let args: Vec<&str> =
                std::iter::once("plan").chain(command.split_whitespace()).collect();
            let out = pgrs(&args);
            assert!(out.status.success(), "{}: {}", path.display(), stderr(&out));
            let stdout = String::from_utf8_lossy(&out.stdout);
            let got = stdout.lines().find(|l| l.contains(" GiB of ")).unwrap();
            assert!(
                got.starts_with(&format!("{quoted} GiB")),
                "{}: quotes {quoted} GiB, plan says {got}",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 16, "{checked} recipes");
}

/// Started by a launcher, `train` names a malformed environment contract, and a rank whose peers never arrive stops
/// at the rendezvous timeout with an error instead of hanging; neither writes anything.
#[test]
fn a_bad_launch_contract_or_missing_peers_stop_before_anything_is_written() {
    let tmp = Tmp::new("world");
    let runs = tmp.0.join("runs");
    let train = |vars: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgrs"));
        cmd.current_dir(root())
            .args(["train", "--config", "experiments/tiny/lora.toml", "--dist-timeout", "2"])
            .arg("--runs-dir")
            .arg(&runs)
            .args(["--set", "data.path=\"data/fixtures/no-such-dataset.json\""]);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let port = port.to_string();
    let contract = [
        ("WORLD_SIZE", "2"),
        ("RANK", "1"),
        ("LOCAL_RANK", "1"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", port.as_str()),
    ];
    assert_refused(&train(&contract[..4]), &["MASTER_PORT: not set"], "no MASTER_PORT");
    if distributed::HAS_GLOO {
        let alone = train(&contract);
        assert_refused(&alone, &["rendezvous", "rank 1 of 2"], "no rank 0");
    }
    assert!(!runs.exists(), "nothing written");
}

/// A Hugging Face hub id names a model wherever a directory does: `model.path = "org/name"` trains from the snapshot
/// in the standard HF cache layout (what Python downloaded), offline, without a copy; the adapter records the id as
/// PEFT does; a model that is neither a directory nor in the offline cache is a clear error.
#[test]
fn hub_ids_resolve_through_the_huggingface_cache() {
    let tmp = Tmp::new("hub");
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let repo = tmp.0.join("hub/models--test--tiny-pg");
    let snapshot = repo.join("snapshots").join(sha);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), sha).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors", "generation_config.json"] {
        std::fs::copy(root().join("data/fixtures/mqa").join(f), snapshot.join(f)).unwrap();
    }
    let data = tmp.0.join("data");
    rsicd_data::synth::generate(&data, 12, 0, 32).unwrap();
    let train = |model: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgrs"));
        cmd.current_dir(root())
            .args(["train", "--quiet", "--config", "experiments/tiny/lora.toml", "--runs-dir"])
            .arg(tmp.0.join("runs"))
            .env("HF_HUB_CACHE", tmp.0.join("hub"))
            .env("HF_HUB_OFFLINE", "1");
        let data = format!("data.path=\"{}\"", data.join("dataset_synth.json").display());
        for s in [
            format!("model.path=\"{model}\""),
            data,
            "train.steps=1".into(),
            "eval.test_subset=1".into(),
        ] {
            cmd.arg("--set").arg(s);
        }
        cmd.output().unwrap()
    };
    let out = train("test/tiny-pg");
    assert!(out.status.success(), "{}", stderr(&out));
    let run = std::fs::read_dir(tmp.0.join("runs")).unwrap().next().unwrap().unwrap().path();
    let adapter: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("adapter/adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(adapter["base_model_name_or_path"], "test/tiny-pg");
    assert_refused(
        &train("test/not-cached"),
        &["test/not-cached", "HF_HUB_OFFLINE"],
        "offline, not cached",
    );
    assert_refused(&train("no/such/dir"), &["no/such/dir", "no such model directory"], "neither");
}
