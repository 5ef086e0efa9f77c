//! `cargo xtask bench data`: images per second for decode + resize + normalize (224, bicubic) on real images
//! from shared data, against PIL + the HF `SiglipImageProcessor` measured in the same run by
//! `scripts/data/bench_preprocess.py`; prints a table and appends a dated section to docs/benchmarks.md.
//!
//! Options: `--seconds <s>` per measurement (default 3), `--python <path>` (default `$PALIGEMMA_PYTHON`, else the
//! project's reference venv), `--no-write` to skip docs/benchmarks.md.
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rsicd_data::cache::PixelCache;
use rsicd_data::{ImagePreprocessor, Item, Resample};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shared_images() -> Result<PathBuf> {
    let dir = std::env::var_os("PALIGEMMA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared"))
        .join("data/remote-sensing");
    if !dir.is_dir() {
        bail!("shared data not found at {} (set PALIGEMMA_SHARED)", dir.display());
    }
    Ok(dir)
}

fn files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    Ok(v)
}

/// Images per second of `f` applied to every path, repeated until `seconds` have passed.
fn rate(paths: &[PathBuf], seconds: f64, mut f: impl FnMut(&[PathBuf])) -> f64 {
    f(paths);
    let t = Instant::now();
    let mut n = 0usize;
    while t.elapsed().as_secs_f64() < seconds {
        f(paths);
        n += paths.len();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

struct Row {
    group: String,
    images: usize,
    rust_1: f64,
    rust_par: f64,
    cached: f64,
    pil: Option<f64>,
    tv: Option<f64>,
}

fn date_utc() -> String {
    report::utc_date(report::unix_now())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

pub fn bench(args: &[String]) -> Result<i32> {
    let mut seconds = 3.0;
    let mut python: Option<PathBuf> = std::env::var_os("PALIGEMMA_PYTHON").map(PathBuf::from);
    let mut write = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => seconds = it.next().context("--seconds needs a value")?.parse().context("--seconds")?,
            "--python" => python = Some(PathBuf::from(it.next().context("--python needs a path")?)),
            "--no-write" => write = false,
            other => bail!("bench data: unknown option {other:?} (options: --seconds <s>, --python <path>, --no-write)"),
        }
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: built without optimizations; run `cargo run --release -p xtask -- bench data` for real numbers");
    }
    let python = python.unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default())
            .join(".cache/paligemma-rs/torch-2.13.0/venv/bin/python")
    });
    let rs = shared_images()?;
    let groups: Vec<(&str, Vec<PathBuf>)> = vec![
        ("RSICD JPEG 224x224", files(&rs.join("RSICD/images"), "jpg")?),
        (
            "UCM TIFF 256x256",
            [
                files(&rs.join("UCM/images/Jbarata98"), "tif")?,
                files(&rs.join("UCM/images/xiaoyuan1996"), "tif")?,
            ]
            .concat(),
        ),
        ("Sydney TIFF 500x500", files(&rs.join("Sydney/images"), "tif")?),
    ];
    let pre = ImagePreprocessor::new(224, Resample::Bicubic);
    let threads = rayon::current_num_threads();

    // Reference first (it does not compete with our threads).
    let reference: Option<serde_json::Value> = if python.is_file() {
        let script = repo_root().join("scripts/data/bench_preprocess.py");
        let mut cmd = std::process::Command::new(&python);
        cmd.arg(&script).arg(seconds.to_string());
        for (i, (_, paths)) in groups.iter().enumerate() {
            let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            cmd.arg(format!("g{i}={}", list.join(",")));
        }
        eprintln!(
            "measuring the reference (PIL + HF SiglipImageProcessor) with {} ...",
            python.display()
        );
        let out = cmd.output().with_context(|| format!("running {}", python.display()))?;
        if !out.status.success() {
            bail!("reference benchmark failed:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        Some(
            serde_json::from_str(stdout.lines().last().unwrap_or(""))
                .context("reference output")?,
        )
    } else {
        eprintln!(
            "warning: no Python reference at {} (set PALIGEMMA_PYTHON); Rust numbers only",
            python.display()
        );
        None
    };

    let cache_dir = std::env::temp_dir().join(format!("pgrs-bench-cache-{}", std::process::id()));
    let mut rows = Vec::new();
    for (i, (group, paths)) in groups.iter().enumerate() {
        eprintln!("measuring {group} ({} images) ...", paths.len());
        let mut buf = vec![0f32; pre.len()];
        let rust_1 = rate(paths, seconds, |ps| {
            for p in ps {
                let img = rsicd_data::decode::decode_file(p).expect("decodes");
                pre.apply_rgb_into(&rsicd_data::decode::into_rgb8(img), &mut buf);
            }
        });
        let rust_par = rate(paths, seconds, |ps| {
            let _ = pre.load_batch_contiguous(ps).expect("decodes");
        });
        // Epoch 2 and later: from the memory-mapped cache (warmed by the first call inside `rate`).
        let items: Vec<Item> = paths
            .iter()
            .enumerate()
            .map(|(k, p)| Item {
                id: k,
                filename: p.display().to_string(),
                split: rsicd_data::Split::Train,
                captions: vec![],
                class: None,
                source: None,
                image_path: Some(p.clone()),
                image_bytes: None,
                origin: String::new(),
            })
            .collect();
        let refs: Vec<&Item> = items.iter().collect();
        let mut cache = PixelCache::open(&cache_dir, pre)?;
        let cached = rate(paths, seconds, |_| {
            let _ = cache.load_batch(&refs).expect("cache");
        });
        let r = reference.as_ref().map(|v| &v[format!("g{i}")]);
        rows.push(Row {
            group: group.to_string(),
            images: paths.len(),
            rust_1,
            rust_par,
            cached,
            pil: r.and_then(|r| r["pil"].as_f64()),
            tv: r.and_then(|r| r["torchvision"].as_f64()),
        });
    }
    let _ = std::fs::remove_dir_all(&cache_dir);

    let ratio = |a: f64, b: Option<f64>| b.map_or("n/a".to_string(), |b| format!("{:.1}x", a / b));
    let num = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.0}"));
    let mut table = String::new();
    table.push_str(&format!(
        "| images | n | HF PIL (1 thread) | HF torchvision (1 thread) | Rust (1 thread) | ratio vs HF PIL | Rust ({threads} threads) | Rust cached, {threads} threads |\n|---|---|---|---|---|---|---|---|\n"
    ));
    for r in &rows {
        table.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} | **{}** | {:.0} | {:.0} |\n",
            r.group,
            r.images,
            num(r.pil),
            num(r.tv),
            r.rust_1,
            ratio(r.rust_1, r.pil),
            r.rust_par,
            r.cached
        ));
    }
    println!("\nimages/s, decode + resize to 224 (bicubic) + normalize, CHW f32\n");
    print!("{table}");
    if write {
        let versions = reference
            .as_ref()
            .map(|v| {
                format!(
                    "transformers {}, Pillow {}, torch {}",
                    v["versions"]["transformers"].as_str().unwrap_or("?"),
                    v["versions"]["pillow"].as_str().unwrap_or("?"),
                    v["versions"]["torch"].as_str().unwrap_or("?")
                )
            })
            .unwrap_or_else(|| "reference not measured".into());
        let section = format!(
            "\n## data: image preprocessing ({date})\n\n`cargo xtask bench data` (`--seconds {seconds}`), {cpu}, {threads} rayon threads, {profile} build. \
             Images per second for decode + resize to 224x224 (bicubic) + normalize to CHW `f32`, on the real images in \
             shared data. The reference is PIL decode + the HF `SiglipImageProcessor` ({versions}), one image at a time \
             in one process with torch threads = 1, measured in the same run by `scripts/data/bench_preprocess.py`. \
             \"Ratio\" compares single-threaded Rust with it. \"Cached\" is a later epoch served by the memory-mapped \
             pixel cache (`rsicd_data::cache`). Outputs are bit-exact with the HF PIL backend \
             (`tests/preprocess_golden.rs`).\n\n{table}",
            date = date_utc(),
            cpu = cpu_model(),
            profile = if cfg!(debug_assertions) { "debug" } else { "release" },
        );
        let path = repo_root().join("docs/benchmarks.md");
        let mut text =
            std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".to_string());
        text.push_str(&section);
        crate::data::write_atomic(&path, text.as_bytes())?;
        println!("\nappended to {}", path.display());
    }
    Ok(0)
}
