//! `cargo xtask bench metrics`: the `metrics` crate against pycocoevalcap on the RSICD test split
//! (1,093 images, 5,465 references), in the same run, stage by stage, and whether the scores agree.
//! Prints a table and appends a dated section to docs/benchmarks.md.
//!
//! Options: `--repeats N` (default 5, the median is reported), `--meteor` (also time METEOR: the jar
//! through pycocoevalcap, the jar through this crate, the native approximation), `--shared DIR`,
//! `--no-record` (do not touch docs/benchmarks.md).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use metrics::{MeteorMode, Options, Sample, Tokenization};
use serde_json::{json, Value};

use crate::score::{print_stdout, write_atomically};
use crate::score_inputs::load_references;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The reference venv's python, found the way `setup` places it.
fn reference_python() -> Result<PathBuf> {
    let venv = metrics::meteor::jar::reference_venv()
        .ok_or_else(|| anyhow!("cannot locate the cache directory (HOME unset)"))?;
    let python = venv.join("bin").join("python");
    if !python.is_file() {
        bail!(
            "the Python reference environment is not installed: {} is missing. Run `cargo xtask setup`, or set \
             PALIGEMMA_CACHE to the cache holding torch-2.13.0/venv",
            python.display()
        );
    }
    let ok = Command::new(&python)
        .args(["-c", "import pycocoevalcap"])
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !ok.status.success() {
        bail!(
            "pycocoevalcap is not installed in the reference venv; install it with `{} -m pip install pycocoevalcap`",
            python.display()
        );
    }
    Ok(python)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

struct Args {
    repeats: usize,
    meteor: bool,
    shared: PathBuf,
    record: bool,
}

fn parse(args: &[String]) -> Result<Args> {
    let mut a = Args {
        repeats: 5,
        meteor: false,
        shared: repo_root().join("..").join("shared"),
        record: true,
    };
    if let Some(s) = std::env::var_os("PALIGEMMA_SHARED") {
        a.shared = PathBuf::from(s);
    }
    let mut it = args.iter();
    while let Some(x) = it.next() {
        match x.as_str() {
            "--repeats" => {
                let v = it.next().ok_or_else(|| anyhow!("--repeats needs a number"))?;
                a.repeats = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| anyhow!("--repeats: expected a positive integer, got {v:?}"))?;
            }
            "--meteor" => a.meteor = true,
            "--no-record" => a.record = false,
            "--shared" => a.shared = PathBuf::from(it.next().ok_or_else(|| anyhow!("--shared needs a folder"))?),
            other => bail!("bench metrics: unknown option {other:?} (options: --repeats N, --meteor, --shared DIR, --no-record)"),
        }
    }
    Ok(a)
}

/// Rust stage times in seconds (one repeat, or the medians).
struct Stages {
    tokenize: f64,
    encode: f64,
    bleu: f64,
    rouge: f64,
    cider: f64,
}

fn rust_once(samples: &[Sample]) -> Result<Stages> {
    let t = Instant::now();
    let refs: Vec<&str> =
        samples.iter().flat_map(|s| s.references.iter().map(String::as_str)).collect();
    let hyps: Vec<&str> = samples.iter().map(|s| s.hypothesis).collect();
    let ref_tok = metrics::ptb::tokenize_captions(&refs);
    let hyp_tok = metrics::ptb::tokenize_captions(&hyps);
    let tokenize = t.elapsed().as_secs_f64();
    let mut it = ref_tok.into_iter();
    let tok_refs: Vec<Vec<String>> =
        samples.iter().map(|s| it.by_ref().take(s.references.len()).collect()).collect();
    let tok_samples: Vec<Sample> = samples
        .iter()
        .zip(&tok_refs)
        .zip(&hyp_tok)
        .map(|((s, r), h)| Sample { image_id: s.image_id, references: r, hypothesis: h })
        .collect();
    let t = Instant::now();
    let prepared = metrics::corpus::prepare(&tok_samples, Tokenization::Pretokenized)?;
    let encode = t.elapsed().as_secs_f64();
    let t = Instant::now();
    std::hint::black_box(metrics::bleu::bleu(&prepared.images));
    let bleu_t = t.elapsed().as_secs_f64();
    let t = Instant::now();
    std::hint::black_box(metrics::rouge::rouge(&prepared.images));
    let rouge_t = t.elapsed().as_secs_f64();
    let t = Instant::now();
    std::hint::black_box(metrics::cider::cider(
        &prepared.images,
        &prepared.vocab,
        &metrics::DfSource::Corpus,
    ));
    let cider_t = t.elapsed().as_secs_f64();
    Ok(Stages { tokenize, encode, bleu: bleu_t, rouge: rouge_t, cider: cider_t })
}

fn rust_median(samples: &[Sample], repeats: usize) -> Result<Stages> {
    let runs: Vec<Stages> = (0..repeats).map(|_| rust_once(samples)).collect::<Result<_>>()?;
    let m = |f: fn(&Stages) -> f64| median(runs.iter().map(f).collect());
    Ok(Stages {
        tokenize: m(|r| r.tokenize),
        encode: m(|r| r.encode),
        bleu: m(|r| r.bleu),
        rouge: m(|r| r.rouge),
        cider: m(|r| r.cider),
    })
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn today() -> String {
    report::utc_date(report::unix_now())
}

pub fn bench(args: &[String]) -> Result<i32> {
    let a = parse(args)?;
    let ann =
        a.shared.join("data/remote-sensing/RSICD/annotations/dataset_rsicd_reconstructed.json");
    if !ann.is_file() {
        bail!(
            "RSICD annotations not found at {} (pass --shared DIR or set PALIGEMMA_SHARED)",
            ann.display()
        );
    }
    let refs = load_references(&ann, Some("test"))?;
    let fixture = repo_root().join("crates/metrics/tests/fixtures/rsicd_test_reference.json");
    let fx: Value = serde_json::from_str(
        &std::fs::read_to_string(&fixture)
            .with_context(|| format!("reading {}", fixture.display()))?,
    )?;
    let hyps: std::collections::HashMap<&str, &str> = fx["images"]
        .as_array()
        .ok_or_else(|| anyhow!("{}: no images list", fixture.display()))?
        .iter()
        .map(|im| (im["id"].as_str().unwrap_or(""), im["hypothesis"].as_str().unwrap_or("")))
        .collect();
    let samples: Vec<Sample> = refs
        .images
        .iter()
        .map(|(id, r)| {
            let h = hyps
                .get(id.as_str())
                .ok_or_else(|| anyhow!("{}: no hypothesis for {id}", fixture.display()))?;
            Ok(Sample { image_id: id, references: r, hypothesis: h })
        })
        .collect::<Result<_>>()?;
    let n_refs: usize = samples.iter().map(|s| s.references.len()).sum();
    let python = reference_python()?;

    // pycocoevalcap, timed inside Python (imports and interpreter start excluded).
    let dir = std::env::temp_dir().join(format!("pgrs-bench-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let input = dir.join("corpus.json");
    let ids: Vec<&str> = samples.iter().map(|s| s.image_id).collect();
    let refs_json: serde_json::Map<String, Value> =
        samples.iter().map(|s| (s.image_id.to_string(), json!(s.references))).collect();
    let hyps_json: serde_json::Map<String, Value> =
        samples.iter().map(|s| (s.image_id.to_string(), json!(s.hypothesis))).collect();
    std::fs::write(
        &input,
        serde_json::to_string(&json!({"ids": ids, "refs": refs_json, "hyps": hyps_json}))?,
    )?;
    let script = repo_root().join("scripts/metrics/bench_pycocoevalcap.py");
    eprintln!(
        "running pycocoevalcap ({} repeats{})...",
        a.repeats,
        if a.meteor { ", plus METEOR once" } else { "" }
    );
    let mut cmd = Command::new(&python);
    cmd.arg(&script).arg(&input).args(["--repeats", &a.repeats.to_string()]);
    if a.meteor {
        cmd.arg("--meteor");
    }
    let out = cmd.output().with_context(|| format!("running {}", script.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        bail!("{} failed:\n{}", script.display(), String::from_utf8_lossy(&out.stderr));
    }
    let py: Value =
        serde_json::from_slice(&out.stdout).context("parsing the Python benchmark output")?;
    let pm = |k: &str| -> f64 {
        median(
            py["times"][k]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default(),
        )
    };

    eprintln!(
        "running the Rust metrics crate ({} repeats, 1 thread and all threads)...",
        a.repeats
    );
    let pool1 = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let r1 = pool1.install(|| rust_median(&samples, a.repeats))?;
    let rn = rust_median(&samples, a.repeats)?;
    let threads = rayon::current_num_threads();

    // The scores, from the whole pipeline (the registered metrics without METEOR).
    let tok_opts = |mode| Options { meteor: mode, ..Options::default() };
    let rust = metrics::evaluate_samples(&samples, &tok_opts(MeteorMode::Skip))?;
    let mut max_diff = 0.0f64;
    for (k, v) in rust.corpus_metrics() {
        let p = py["scores"][k].as_f64().ok_or_else(|| anyhow!("Python output lacks {k}"))?;
        max_diff = max_diff.max((v - p).abs());
    }

    let ms = |s: f64| format!("{:.1} ms", s * 1e3);
    let ratio = |p: f64, r: f64| format!("{:.1}x", p / r);
    let scorers = |s: &Stages| s.encode + s.bleu + s.rouge + s.cider;
    let (pt, pb, pr, pc) = (pm("tokenize"), pm("bleu"), pm("rouge"), pm("cider"));
    let mut rows: Vec<[String; 5]> = vec![
        [
            "PTB tokenization (refs + hyps)".into(),
            ms(pt),
            ms(r1.tokenize),
            ms(rn.tokenize),
            ratio(pt, rn.tokenize),
        ],
        ["BLEU-1..4".into(), ms(pb), ms(r1.bleu), ms(rn.bleu), ratio(pb, rn.bleu)],
        ["ROUGE-L".into(), ms(pr), ms(r1.rouge), ms(rn.rouge), ratio(pr, rn.rouge)],
        ["CIDEr-D".into(), ms(pc), ms(r1.cider), ms(rn.cider), ratio(pc, rn.cider)],
        [
            "BLEU+ROUGE-L+CIDEr-D (Rust incl. word interning)".into(),
            ms(pb + pr + pc),
            ms(scorers(&r1)),
            ms(scorers(&rn)),
            ratio(pb + pr + pc, scorers(&rn)),
        ],
        [
            "full: tokenization + the three scorers".into(),
            ms(pt + pb + pr + pc),
            ms(r1.tokenize + scorers(&r1)),
            ms(rn.tokenize + scorers(&rn)),
            ratio(pt + pb + pr + pc, rn.tokenize + scorers(&rn)),
        ],
    ];
    let mut meteor_note = String::new();
    if a.meteor {
        let t = Instant::now();
        let exact = metrics::evaluate_samples(&samples, &tok_opts(MeteorMode::Exact))?;
        let exact_t = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let approx = metrics::evaluate_samples(&samples, &tok_opts(MeteorMode::Approximate))?;
        let approx_t = t.elapsed().as_secs_f64();
        let pmet = pm("meteor");
        rows.push([
            "METEOR: jar incl. JVM start (Rust: whole evaluation)".into(),
            ms(pmet),
            "-".into(),
            ms(exact_t),
            ratio(pmet, exact_t),
        ]);
        rows.push([
            "METEOR (approx), native, whole evaluation".into(),
            "-".into(),
            "-".into(),
            ms(approx_t),
            ratio(pmet, approx_t),
        ]);
        meteor_note = format!(
            "METEOR: pycocoevalcap {:.6}, this crate through the jar {:.6}, native approximation {:.6}.\n",
            py["scores"]["METEOR"].as_f64().unwrap_or(f64::NAN),
            exact.corpus.get("METEOR").unwrap_or(f64::NAN),
            approx.corpus.get("METEOR (approx)").unwrap_or(f64::NAN)
        );
    }

    let header = [
        "stage",
        "pycocoevalcap",
        "Rust, 1 thread",
        &format!("Rust, {threads} threads"),
        "speed-up",
    ];
    let mut table = format!("| {} |\n|---|---:|---:|---:|---:|\n", header.join(" | "));
    for r in &rows {
        table.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    let agree = if max_diff <= 1e-9 { "agree" } else { "DISAGREE" };
    let summary = format!(
        "Corpus: RSICD test split ({} images, {n_refs} references; hypotheses from \
         crates/metrics/tests/fixtures/rsicd_test_reference.json). Machine: {}, {} logical CPUs. \
         Reference: pycocoevalcap 1.2 on Python {}, in the same run. Median of {} runs; Python stages are timed \
         inside the interpreter, Rust stages in-process; Rust build profile: {}.\n\nBLEU/ROUGE-L/CIDEr-D scores {agree}: largest |difference| \
         {max_diff:.2e}.\n{meteor_note}",
        samples.len(),
        cpu_model(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        py["python"].as_str().unwrap_or("?"),
        a.repeats,
        if cfg!(debug_assertions) { "dev (the workspace's `cargo xtask` profile)" } else { "release" }
    );
    print_stdout(&format!("\n{table}\n{summary}"))?;
    if a.record {
        let path = repo_root().join("docs/benchmarks.md");
        let mut doc = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            "# Benchmarks\n\nSections are appended by `cargo xtask bench <name>`.\n".into()
        });
        doc.push_str(&format!("\n## metrics: caption metrics vs pycocoevalcap, {} (`cargo xtask bench metrics`)\n\n{table}\n{summary}", today()));
        write_atomically(&path, &doc)?;
        print_stdout(&format!("appended to {}\n", path.display()))?;
    }
    Ok(if max_diff <= 1e-9 { 0 } else { 1 })
}
