//! The benchmark harness itself (not timings): on the tiny `mqa` fixture (PaliGemma 1) and the tiny `pg2-gqa` fixture
//! (PaliGemma 2: Gemma-2 decoder with soft-capping that bites and a sliding window shorter than every sequence), the
//! Rust worker (`pgrs bench worker`) must give the losses and generated ids that the reference worker
//! (`scripts/bench/hf_worker.py`, transformers 5.23 + PEFT 0.21, eager attention for Gemma 2) gave on the same inputs,
//! for LoRA (plain and checkpointed, f32 and bf16), attention-only, soft prompt, greedy and beam search.
//!
//! The reference's results are committed (`tests/bench_tiny/reference.json`, with a fingerprint of the inputs they
//! were computed on), so this runs without Python. Where the reference venv has transformers and peft, the reference
//! worker is also run live, and one whole `bench train` on each tiny model checks the orchestration (`--model` with a
//! PaliGemma 2 directory included).
//! Regenerate the committed file with
//! `cargo test -p bench --test bench_harness -- --ignored regenerate_reference`.
//!
//! This binary has its own `main` (`harness = false`) because it also stands in for `pgrs`: the Rust workers run in
//! child processes started as `<current executable> bench worker …` (by this file and by the orchestrator alike),
//! and `pgrs` belongs to another crate, so this binary answers `bench …` itself with `bench::run`, as `pgrs` does.
//! Anything else runs the tests (libtest's usual options: name filters, `--exact`, `--skip`, `--ignored`,
//! `--include-ignored`, `--list`; the rest are accepted and ignored: tests run one after another, uncaptured).
use bench::{inputs, spec};
use serde_json::{json, Value};
use spec::{Spec, Task, WorkerResult};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == "bench") {
        as_pgrs(args)
    }
    run_tests(
        &args[1..],
        &[
            (
                "rust_worker_matches_the_committed_reference",
                false,
                rust_worker_matches_the_committed_reference,
            ),
            (
                "live_reference_worker_and_orchestrator",
                false,
                live_reference_worker_and_orchestrator,
            ),
            ("regenerate_reference", true, regenerate_reference),
        ],
    )
}

/// `pgrs bench …`, for the workers this binary starts.
fn as_pgrs(args: Vec<String>) -> ! {
    #[derive(clap::Parser)]
    #[command(name = "pgrs")]
    enum Pgrs {
        Bench(bench::Args),
    }
    let Pgrs::Bench(a) = clap::Parser::parse_from(args);
    match bench::run(a) {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::exit(1);
        }
    }
}

/// Runs the selected tests (`(name, ignored, body)`) one after another, libtest style; fails (101) if one panics.
fn run_tests(args: &[String], tests: &[(&str, bool, fn())]) -> ExitCode {
    let (mut filters, mut skips) = (Vec::new(), Vec::new());
    let (mut exact, mut ignored, mut include_ignored, mut list) = (false, false, false, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--exact" => exact = true,
            "--ignored" => ignored = true,
            "--include-ignored" => include_ignored = true,
            "--list" => list = true,
            "--skip" => skips.extend(it.next().cloned()),
            "--test-threads" | "--color" | "--format" | "--logfile" | "-Z" => {
                it.next();
            }
            s if s.starts_with("--skip=") => skips.push(s["--skip=".len()..].to_string()),
            s if s.starts_with('-') => {}
            f => filters.push(f.to_string()),
        }
    }
    let matches =
        |name: &str, f: &String| if exact { name == f } else { name.contains(f.as_str()) };
    let selected: Vec<(&str, bool, fn())> = tests
        .iter()
        .copied()
        .filter(|&(name, ..)| filters.is_empty() || filters.iter().any(|f| matches(name, f)))
        .filter(|&(name, ..)| !skips.iter().any(|f| matches(name, f)))
        .filter(|&(_, is_ignored, _)| is_ignored || !ignored)
        .collect();
    if list {
        for (name, ..) in &selected {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let filtered_out = tests.len() - selected.len();
    println!("\nrunning {} tests", selected.len());
    let (mut passed, mut skipped, mut failed) = (0, 0, Vec::new());
    for (name, is_ignored, body) in selected {
        if is_ignored && !ignored && !include_ignored {
            println!("test {name} ... ignored");
            skipped += 1;
        } else if std::panic::catch_unwind(body).is_ok() {
            println!("test {name} ... ok");
            passed += 1;
        } else {
            println!("test {name} ... FAILED");
            failed.push(name);
        }
    }
    if !failed.is_empty() {
        println!("\nfailures:\n    {}", failed.join("\n    "));
    }
    println!(
        "\ntest result: {}. {passed} passed; {} failed; {skipped} ignored; 0 measured; {filtered_out} filtered out\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(101)
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The fixtures the cases run on: PaliGemma 1 (`mqa`) and PaliGemma 2 (`pg2-gqa`).
const MODELS: [&str; 2] = ["data/fixtures/mqa", "data/fixtures/pg2-gqa"];

fn model(dir: &str) -> PathBuf {
    root().join(dir)
}

/// Where one model's inputs go under a test's directory.
fn inputs_dir(dir: &Path, model: &str) -> PathBuf {
    dir.join(Path::new(model).file_name().unwrap())
}

fn reference_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bench_tiny/reference.json")
}

struct Case {
    name: &'static str,
    model: &'static str,
    task: Task,
    strategy: &'static str,
    dtype: &'static str,
    checkpointing: bool,
    beams: usize,
}

const MQA: &str = MODELS[0];
const PG2: &str = MODELS[1];

const CASES: [Case; 12] = [
    Case {
        model: MQA,
        name: "lora-f32",
        task: Task::Train,
        strategy: "lora",
        dtype: "f32",
        checkpointing: false,
        beams: 1,
    },
    Case {
        model: MQA,
        name: "lora-f32-ckpt",
        task: Task::Train,
        strategy: "lora",
        dtype: "f32",
        checkpointing: true,
        beams: 1,
    },
    Case {
        model: MQA,
        name: "lora-bf16",
        task: Task::Train,
        strategy: "lora",
        dtype: "bf16",
        checkpointing: false,
        beams: 1,
    },
    Case {
        model: MQA,
        name: "attention-f32",
        task: Task::Train,
        strategy: "hard_prompt",
        dtype: "f32",
        checkpointing: true,
        beams: 1,
    },
    Case {
        model: MQA,
        name: "soft-f32",
        task: Task::Train,
        strategy: "soft_prompt",
        dtype: "f32",
        checkpointing: false,
        beams: 1,
    },
    Case {
        model: MQA,
        name: "greedy",
        task: Task::Generate,
        strategy: "none",
        dtype: "f32",
        checkpointing: false,
        beams: 1,
    },
    Case {
        model: MQA,
        name: "beam3",
        task: Task::Generate,
        strategy: "none",
        dtype: "f32",
        checkpointing: false,
        beams: 3,
    },
    Case {
        model: PG2,
        name: "pg2-lora-f32",
        task: Task::Train,
        strategy: "lora",
        dtype: "f32",
        checkpointing: false,
        beams: 1,
    },
    Case {
        model: PG2,
        name: "pg2-lora-bf16",
        task: Task::Train,
        strategy: "lora",
        dtype: "bf16",
        checkpointing: false,
        beams: 1,
    },
    Case {
        model: PG2,
        name: "pg2-attention-f32-ckpt",
        task: Task::Train,
        strategy: "hard_prompt",
        dtype: "f32",
        checkpointing: true,
        beams: 1,
    },
    Case {
        model: PG2,
        name: "pg2-greedy",
        task: Task::Generate,
        strategy: "none",
        dtype: "f32",
        checkpointing: false,
        beams: 1,
    },
    Case {
        model: PG2,
        name: "pg2-beam3",
        task: Task::Generate,
        strategy: "none",
        dtype: "f32",
        checkpointing: false,
        beams: 3,
    },
];

/// Writes the inputs of every case into `dir` (the same code the benchmarks use), one folder per model; returns a
/// fingerprint of them by model.
fn write_inputs(dir: &Path) -> Value {
    let mut by_model = serde_json::Map::new();
    for m in MODELS {
        let d = inputs_dir(dir, m);
        std::fs::create_dir_all(&d).unwrap();
        by_model.insert(m.into(), write_model_inputs(&model(m), &d));
    }
    Value::Object(by_model)
}

fn write_model_inputs(model: &Path, dir: &Path) -> Value {
    let cfg = paligemma::PaliGemmaConfig::from_file(&model.join("config.json")).unwrap();
    inputs::write_train(model, 3, 0, 5, &dir.join("train.safetensors")).unwrap();
    inputs::write_train(model, 3, 4, 5, &dir.join("train-soft.safetensors")).unwrap();
    inputs::write_generate(model, 3, 6, &dir.join("generate.safetensors")).unwrap();
    inputs::write_init(&cfg, "lora", 4, 0, 7, &dir.join("init-lora.safetensors")).unwrap();
    inputs::write_init(&cfg, "soft_prompt", 0, 4, 8, &dir.join("init-soft.safetensors")).unwrap();
    let mut fp = serde_json::Map::new();
    for f in ["train", "train-soft", "generate", "init-lora", "init-soft"] {
        let mut tensors =
            tch::Tensor::read_safetensors(dir.join(format!("{f}.safetensors"))).unwrap();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let sums: Vec<Value> = tensors
            .iter()
            .map(|(n, t)| {
                let abs_sum = t.to_kind(tch::Kind::Double).abs().sum(tch::Kind::Double);
                json!([n, f64::try_from(abs_sum).unwrap()])
            })
            .collect();
        fp.insert(f.into(), Value::Array(sums));
    }
    Value::Object(fp)
}

/// The same models, each with the same fingerprint.
fn same_fingerprints(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else { return false };
    a.len() == b.len() && a.iter().all(|(m, x)| b.get(m).is_some_and(|y| same_fingerprint(x, y)))
}

/// Same tensor names and sums of absolute values within 1e-9 relative (summation order may differ by a rounding).
fn same_fingerprint(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else { return false };
    a.len() == b.len()
        && a.iter().all(|(file, x)| {
            let (Some(x), Some(y)) = (x.as_array(), b.get(file).and_then(Value::as_array)) else {
                return false;
            };
            x.len() == y.len()
                && x.iter().zip(y).all(|(p, q)| {
                    let (px, qx) =
                        (p[1].as_f64().unwrap_or(f64::NAN), q[1].as_f64().unwrap_or(f64::NAN));
                    p[0] == q[0] && (px - qx).abs() <= 1e-9 * qx.abs().max(1.0)
                })
        })
}

fn spec_for(c: &Case, dir: &Path) -> Spec {
    let soft = c.strategy == "soft_prompt";
    let dir = &inputs_dir(dir, c.model);
    Spec {
        task: c.task,
        model_dir: model(c.model),
        inputs: dir.join(match (c.task, soft) {
            (Task::Generate, _) => "generate.safetensors",
            (_, true) => "train-soft.safetensors",
            _ => "train.safetensors",
        }),
        init: match c.strategy {
            "lora" => Some(dir.join("init-lora.safetensors")),
            "soft_prompt" => Some(dir.join("init-soft.safetensors")),
            _ => None,
        },
        strategy: c.strategy.into(),
        dtype: c.dtype.into(),
        device: "cpu".into(),
        checkpointing: c.checkpointing,
        threads: 1,
        warmup: 1,
        steps: 2,
        lr: 1e-2,
        lora_r: 4,
        lora_alpha: 8.0,
        max_grad_norm: Some(1.0),
        num_beams: c.beams,
        max_new_tokens: 8,
        profile: false,
        siglip_dir: None,
        gemma_dir: None,
        soft_len: if soft { 4 } else { 0 },
        plan: false,
        probe: false,
    }
}

fn run_rust(spec: &Spec, dir: &Path, name: &str) -> WorkerResult {
    let spec_path = dir.join(format!("{name}.spec.json"));
    let out = dir.join(format!("{name}.rust.json"));
    spec::write_json(&spec_path, spec).unwrap();
    let o = Command::new(std::env::current_exe().unwrap())
        .args(["bench", "worker", "--spec"])
        .arg(&spec_path)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
    spec::read_json(&out).unwrap()
}

fn reference_python() -> Option<PathBuf> {
    let py = std::env::var_os("PALIGEMMA_PYTHON").map(PathBuf::from).or_else(|| {
        let p = PathBuf::from(std::env::var_os("HOME")?)
            .join(".cache/paligemma-rs/torch-2.13.0/venv/bin/python");
        p.is_file().then_some(p)
    })?;
    let ok = Command::new(&py)
        .args(["-c", "import transformers, peft; assert transformers.__version__ == '5.23.0'"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(py)
}

fn run_hf(py: &Path, spec: &Spec, dir: &Path, name: &str) -> WorkerResult {
    let spec_path = dir.join(format!("{name}.spec.json"));
    let out = dir.join(format!("{name}.hf.json"));
    spec::write_json(&spec_path, spec).unwrap();
    let o = Command::new(py)
        .arg(root().join("scripts/bench/hf_worker.py"))
        .arg("--spec")
        .arg(&spec_path)
        .arg("--out")
        .arg(&out)
        .env("HF_HUB_OFFLINE", "1")
        .env("PYTHONWARNINGS", "ignore")
        .output()
        .unwrap();
    assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
    spec::read_json(&out).unwrap()
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pg-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Losses agree (f32: every step, through identical updates; bf16: the first step), ids are identical.
fn assert_same(name: &str, dtype: &str, ours: &Value, theirs: &Value) {
    let ids = |v: &Value| v["ids"].clone();
    assert_eq!(ids(ours), ids(theirs), "{name}: generated ids differ");
    let l = |v: &Value| -> Vec<f64> {
        v["losses"].as_array().map_or(vec![], |a| a.iter().map(|x| x.as_f64().unwrap()).collect())
    };
    let (a, b) = (l(ours), l(theirs));
    assert_eq!(a.len(), b.len(), "{name}: step counts differ");
    let (n, tol) = if dtype == "f32" { (a.len(), 1e-4) } else { (a.len().min(1), 2e-2) };
    for i in 0..n {
        let rel = (a[i] - b[i]).abs() / b[i].abs();
        assert!(
            rel <= tol,
            "{name}: step {i} loss {} vs reference {} (relative {rel:.2e} > {tol:e})",
            a[i],
            b[i]
        );
    }
    if dtype == "f32" && a.len() > 1 {
        assert!(a[0] != a[a.len() - 1], "{name}: the loss never moved; the update did nothing");
    }
}

fn pick(r: &WorkerResult) -> Value {
    json!({"losses": r.losses, "ids": r.ids, "trainable_params": r.trainable_params})
}

fn rust_worker_matches_the_committed_reference() {
    let dir = temp("harness");
    let fingerprint = write_inputs(&dir);
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(reference_file()).expect("committed reference.json"),
    )
    .unwrap();
    assert!(
        same_fingerprints(&reference["inputs"], &fingerprint),
        "the benchmark inputs changed since reference.json was made; regenerate it (see this file's header)\n\
         committed: {}\nnow: {fingerprint}",
        reference["inputs"]
    );
    for c in &CASES {
        // Generation probes the machine between its calls (as `bench generate` asks): the ids must not change.
        let spec = Spec { probe: c.task == Task::Generate, ..spec_for(c, &dir) };
        let result = run_rust(&spec, &dir, c.name);
        if spec.probe {
            assert_probed_between_calls(c.name, &spec, &result);
        }
        let ours = pick(&result);
        let theirs = &reference["cases"][c.name];
        assert!(theirs.is_object(), "{}: not in reference.json", c.name);
        assert_same(c.name, c.dtype, &ours, theirs);
        if c.task == Task::Train {
            assert_eq!(
                ours["trainable_params"], theirs["trainable_params"],
                "{}: trainable parameters",
                c.name
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// One read probe (and, on x86-64, one multiply-add probe) per timed call, and a peak RSS that leaves out the read
/// probes' 256 MB buffers (issue 14's bound, taken between the calls, must not show in the calls' memory).
fn assert_probed_between_calls(name: &str, spec: &Spec, r: &WorkerResult) {
    assert_eq!(r.read_bps.len(), spec.steps, "{name}: read probes {:?}", r.read_bps);
    assert!(r.read_bps.iter().all(|&b| b.is_finite() && b > 1e8), "{name}: {:?}", r.read_bps);
    if cfg!(target_arch = "x86_64") && std::arch::is_x86_feature_detected!("fma") {
        assert_eq!(r.fma_rate.len(), spec.steps, "{name}: multiply-add probes {:?}", r.fma_rate);
    }
    let probe = 256 << 20;
    assert!(
        r.peak_rss < r.rss_loaded + probe,
        "{name}: peak {} MiB with the model loaded at {} MiB: the probes' memory was counted",
        r.peak_rss >> 20,
        r.rss_loaded >> 20
    );
}

fn live_reference_worker_and_orchestrator() {
    let Some(py) = reference_python() else {
        eprintln!("skipped: no Python with transformers 5.23 + peft (set PALIGEMMA_PYTHON or run cargo xtask setup)");
        return;
    };
    let dir = temp("live");
    write_inputs(&dir);
    let live = ["lora-f32-ckpt", "soft-f32", "beam3", "pg2-lora-f32", "pg2-beam3"];
    for c in CASES.iter().filter(|c| live.contains(&c.name)) {
        let spec = spec_for(c, &dir);
        let ours = pick(&run_rust(&spec, &dir, c.name));
        let theirs = pick(&run_hf(&py, &spec, &dir, c.name));
        assert_same(c.name, c.dtype, &ours, &theirs);
    }
    // One whole benchmark run on each tiny model: both sides, the loss check, the table.
    for m in MODELS {
        let o = Command::new(std::env::current_exe().unwrap())
            .current_dir(root())
            .args(["bench", "train", "--model", m, "--only", "lora-b1-f32", "--skip", "ckpt"])
            .args(["--rounds", "1", "--steps", "1", "--no-record", "--work-dir"])
            .arg(dir.join("work"))
            .arg("--python")
            .arg(&py)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{}\n{}", stdout, String::from_utf8_lossy(&o.stderr));
        assert!(stdout.contains("| LoRA r8 q/k/v/o | 1 | f32 | off |"), "{stdout}");
        assert!(!stdout.contains("| LoRA r8 q/k/v/o | 1 | f32 | on |"), "{stdout}");
        assert!(!stdout.contains("DISAGREE"), "{stdout}");
        if m == PG2 {
            assert!(stdout.contains("## train (PaliGemma 2):"), "{stdout}");
            assert!(stdout.contains("Gemma 2 48x3 (4 heads over 2 KV heads of 16"), "{stdout}");
            assert!(stdout.contains("attention as `eager`"), "{stdout}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes `tests/bench_tiny/reference.json` from the reference worker (needs the venv with transformers + peft).
fn regenerate_reference() {
    let py = reference_python().expect("a Python with transformers 5.23 and peft 0.21");
    let dir = temp("regen");
    let fingerprint = write_inputs(&dir);
    let mut cases = serde_json::Map::new();
    for c in &CASES {
        let r = run_hf(&py, &spec_for(c, &dir), &dir, c.name);
        cases.insert(c.name.into(), pick(&r));
    }
    let v = json!({
        "generator": "cargo test -p bench --test bench_harness -- --ignored regenerate_reference",
        "inputs": fingerprint,
        "cases": cases,
    });
    std::fs::create_dir_all(reference_file().parent().unwrap()).unwrap();
    std::fs::write(reference_file(), serde_json::to_string_pretty(&v).unwrap() + "\n").unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
