//! Dataset commands: `validate`, `eda`, `synth`, `download` (`bench data` is `data_bench::bench`).
//! They run on the `rsicd-data` crate and need no libtorch.
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use rsicd_data::download::{self, Auth, DownloadOptions, Expect, Outcome, SOURCES};
use rsicd_data::validate::{validate, Severity, ValidateOptions};
use rsicd_data::{Dataset, Format, LoadOptions};

#[derive(Args, Debug, Clone)]
pub struct DatasetArgs {
    /// Annotation file (Karpathy/COCO .json, RISCM captions.csv, HF .parquet) or a folder holding one.
    #[arg(long)]
    pub dataset: PathBuf,
    /// Force the format instead of detecting it: karpathy, riscm-csv, coco, hf-parquet.
    #[arg(long)]
    pub format: Option<Format>,
    /// Image folder; by default images/, resized/, imgs/ or ../images/ next to the annotation file.
    #[arg(long)]
    pub images: Option<PathBuf>,
}

impl DatasetArgs {
    pub fn load(&self) -> Result<Dataset> {
        let opts = LoadOptions { format: self.format, image_dir: self.images.clone() };
        let ds = Dataset::load_with(&self.dataset, &opts)?;
        eprintln!(
            "loaded {} ({}): {} images, {} captions",
            ds.annotation_files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            ds.format.name(),
            ds.items.len(),
            ds.caption_count()
        );
        for note in &ds.notes {
            eprintln!("note: {note}");
        }
        Ok(ds)
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check a dataset: missing/unreadable images, duplicates, empty captions, special tokens, splits, sizes.
    Validate {
        #[command(flatten)]
        data: DatasetArgs,
        /// Exit with status 1 if any error-level problem is found (CI, before training).
        #[arg(long)]
        strict: bool,
        /// Do not decode images; only probe them (present, recognised, dimensions, complete data): fast, catches
        /// truncated files but not corrupt pixel data.
        #[arg(long)]
        no_decode: bool,
        /// Expected image size, e.g. 224x224 (default: flag sizes that differ from the most common one).
        #[arg(long, value_parser = parse_size)]
        expect_size: Option<(u32, u32)>,
        /// Minimum number of distinct captions per image.
        #[arg(long, default_value_t = 5)]
        min_distinct: usize,
        /// Also write the full report as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Exploratory data analysis: stats.json, plots (PNG and SVG) and report.html in --out.
    Eda {
        #[command(flatten)]
        data: DatasetArgs,
        /// HF tokenizer.json: caption lengths in tokens, the number that decides sequence length.
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// Images decoded at most for image statistics (evenly spaced).
        #[arg(long, default_value_t = 2000)]
        max_images: usize,
    },
    /// Render a deterministic synthetic aerial dataset (Karpathy JSON + PNGs), the training demo's data.
    Synth {
        #[arg(long)]
        out: PathBuf,
        /// Number of images (split 80/10/10).
        #[arg(long, default_value_t = 1000)]
        n: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Image side in pixels.
        #[arg(long, default_value_t = 224)]
        size: u32,
    },
    /// Download a known dataset (see --list), or any file with --url and --sha256. Resumable and verified.
    Download {
        /// Known source name: rsicd, ucm-captions, sydney-captions, riscm.
        name: Option<String>,
        /// Where the files go (a hub dataset's with their repo paths, e.g. data/train-….parquet, and source.json).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Hub dataset sources only (rsicd): a branch, tag or commit instead of the table's revision. The table's
        /// pins describe its own commit, so another revision is downloaded unpinned (its checksums are printed).
        #[arg(long)]
        revision: Option<String>,
        /// Hub dataset sources only: write into a non-empty --out, replacing the dataset's files and source.json
        /// there (other files are left alone).
        #[arg(long)]
        overwrite: bool,
        /// Any URL (a mirror); the file name is taken from the URL unless --file-name is given.
        #[arg(long)]
        url: Option<String>,
        #[arg(long)]
        file_name: Option<String>,
        /// Expected SHA-256 (hex) for --url.
        #[arg(long)]
        sha256: Option<String>,
        /// Kaggle dataset `<owner>/<dataset>` (for riscm, or any Kaggle dataset).
        #[arg(long)]
        kaggle: Option<String>,
        /// List the known sources and exit.
        #[arg(long)]
        list: bool,
        #[command(flatten)]
        net: NetArgs,
    },
}

/// How patient a download is.
#[derive(Args, Debug, Clone)]
pub struct NetArgs {
    /// Retries after the first attempt (dropped connections, stalls, HTTP 5xx/429); each resumes the `.part`.
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// Seconds before the first retry; doubled for each further one.
    #[arg(long, default_value_t = 2.0)]
    pub retry_delay: f64,
    /// Seconds without any data from the server before an attempt is abandoned (and retried) [default: 60; for
    /// a hub dataset, HF_HUB_DOWNLOAD_TIMEOUT, else 30].
    #[arg(long)]
    pub read_timeout: Option<f64>,
    /// Largest download accepted when neither the source nor the server gives a size, e.g. 500M, 64G.
    #[arg(long, value_parser = parse_bytes, default_value = "64G")]
    pub max_size: u64,
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let unit = t[i..].to_ascii_uppercase();
            let mult: u64 = match unit.trim_end_matches("IB").trim_end_matches('B') {
                "" => 1,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1 << 40,
                _ => {
                    return Err(format!(
                        "unknown unit in {s:?}: expected a byte count or K, M, G, T"
                    ))
                }
            };
            (&t[..i], mult)
        }
        None => (t, 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("expected a size such as 500M or 64G, got {s:?}"))?;
    if !(n.is_finite() && n > 0.0) {
        return Err(format!("the size must be positive, got {s:?}"));
    }
    Ok((n * mult as f64) as u64)
}

fn seconds(what: &str, v: f64) -> Result<Duration> {
    if !(v.is_finite() && v >= 0.0) {
        bail!("--{what} must be a number of seconds >= 0, got {v}");
    }
    Ok(Duration::from_secs_f64(v))
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) =
        s.split_once(['x', 'X']).ok_or_else(|| format!("expected WxH, e.g. 224x224, got {s:?}"))?;
    Ok((
        w.parse().map_err(|_| format!("bad width in {s:?}"))?,
        h.parse().map_err(|_| format!("bad height in {s:?}"))?,
    ))
}

pub fn run(cmd: Command) -> Result<i32> {
    match cmd {
        Command::Validate { data, strict, no_decode, expect_size, min_distinct, json } => {
            run_validate(&data, strict, no_decode, expect_size, min_distinct, json.as_deref())
        }
        Command::Eda { data, tokenizer, out, max_images } => {
            crate::data_eda::run(&data, tokenizer.as_deref(), &out, max_images)
        }
        Command::Synth { out, n, seed, size } => {
            let t = std::time::Instant::now();
            let s = rsicd_data::synth::generate(&out, n, seed, size)?;
            println!(
                "wrote {} synthetic {}x{} images (seed {}) and {} in {:.1}s",
                s.images,
                s.size,
                s.size,
                s.seed,
                s.annotation.display(),
                t.elapsed().as_secs_f32()
            );
            Ok(0)
        }
        Command::Download {
            name,
            out,
            revision,
            overwrite,
            url,
            file_name,
            sha256,
            kaggle,
            list,
            net,
        } => run_download(
            name.as_deref(),
            out,
            HubArgs { revision, overwrite },
            url,
            file_name,
            sha256,
            kaggle,
            list,
            &net,
        ),
    }
}

fn run_validate(
    data: &DatasetArgs,
    strict: bool,
    no_decode: bool,
    expect_size: Option<(u32, u32)>,
    min_distinct: usize,
    json: Option<&Path>,
) -> Result<i32> {
    let ds = data.load()?;
    let t = std::time::Instant::now();
    let opts = ValidateOptions {
        decode_images: !no_decode,
        expected_size: expect_size,
        min_distinct_captions: min_distinct,
        max_examples: 5,
    };
    let report = validate(&ds, &opts);
    println!(
        "\n{} images, {} captions; {} images checked{} in {:.1}s",
        report.images,
        report.captions,
        report.images_checked,
        if no_decode { " (existence only)" } else { " (decoded)" },
        t.elapsed().as_secs_f32()
    );
    if !report.image_sizes.is_empty() {
        let sizes: Vec<String> =
            report.image_sizes.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        println!("image sizes: {}", sizes.join(", "));
    }
    if report.findings.is_empty() {
        println!("no problems found");
    } else {
        println!("\n{:<8} {:>7}  problem", "severity", "count");
        for f in &report.findings {
            let sev = if f.severity == Severity::Error { "error" } else { "warning" };
            println!("{:<8} {:>7}  {}", sev, f.count, f.description);
            for e in &f.examples {
                println!("{:<17}- {e}", "");
            }
        }
    }
    if let Some(path) = json {
        write_atomic(path, serde_json::to_string_pretty(&report)?.as_bytes())?;
        println!("\nreport written to {}", path.display());
    }
    let errors = report.errors();
    println!("\n{errors} errors, {} warnings", report.warnings());
    if strict && errors > 0 {
        eprintln!("validation failed (--strict): fix the errors above");
        return Ok(1);
    }
    Ok(0)
}

/// Writes through a temporary file and a rename, so a failed write never leaves a truncated file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let tmp = path.with_extension("tmp-write");
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", tmp.display()));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()));
    }
    Ok(())
}

fn byte_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

fn fetch(
    url: &str,
    dest: &Path,
    expect: &Expect,
    auth: Option<(String, String)>,
    net: &NetArgs,
) -> Result<()> {
    let bar = byte_bar();
    bar.set_message(dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    let progress = |done: u64, total: Option<u64>| {
        if let Some(t) = total {
            bar.set_length(t);
        }
        bar.set_position(done);
    };
    // `println` is a no-op on a hidden bar (stderr not a terminal: logs, CI); `suspend` prints either way.
    let on_retry = |m: &str| bar.suspend(|| eprintln!("warning: {m}"));
    let opts = DownloadOptions {
        retries: net.retries,
        backoff: seconds("retry-delay", net.retry_delay)?,
        read_timeout: seconds("read-timeout", net.read_timeout.unwrap_or(60.0))?
            .max(Duration::from_millis(1)),
        max_size: net.max_size,
        basic_auth: auth,
        progress: Some(&progress),
        on_retry: Some(&on_retry),
    };
    let outcome = download::download(url, dest, expect, &opts);
    bar.finish_and_clear();
    match outcome? {
        Outcome::AlreadyPresent { sha256 } => {
            println!("{} already present (sha256 {sha256})", dest.display())
        }
        Outcome::Downloaded { bytes, sha256, resumed_from } => {
            let resumed = if resumed_from > 0 {
                format!(", resumed at {resumed_from} bytes")
            } else {
                String::new()
            };
            let verified = if expect.sha256.is_some() {
                "verified"
            } else {
                "not pinned; pin it with --sha256"
            };
            println!("{}: {bytes} bytes{resumed}, sha256 {sha256} ({verified})", dest.display());
        }
    }
    Ok(())
}

/// The options of `download` that only hub dataset sources take.
struct HubArgs {
    revision: Option<String>,
    overwrite: bool,
}

impl HubArgs {
    /// Refuses them for a source that is not a hub dataset (`what` says what it is instead).
    fn refuse_for(&self, what: &str) -> Result<()> {
        let given: Vec<&str> =
            [(self.revision.is_some(), "--revision"), (self.overwrite, "--overwrite")]
                .into_iter()
                .filter_map(|(set, flag)| set.then_some(flag))
                .collect();
        if !given.is_empty() {
            let hub: Vec<&str> =
                SOURCES.iter().filter(|s| s.hub.is_some()).map(|s| s.name).collect();
            bail!(
                "{} applies to hub dataset sources only ({}); {what}",
                given.join(" and "),
                hub.join(", ")
            );
        }
        Ok(())
    }
}

fn run_download(
    name: Option<&str>,
    out: Option<PathBuf>,
    hub_args: HubArgs,
    url: Option<String>,
    file_name: Option<String>,
    sha256: Option<String>,
    kaggle: Option<String>,
    list: bool,
    net: &NetArgs,
) -> Result<i32> {
    if list || (name.is_none() && url.is_none() && kaggle.is_none()) {
        println!("{:<16} {:<8} files  description", "name", "auth");
        for s in SOURCES {
            let auth = if s.auth == Auth::Kaggle { "kaggle" } else { "none" };
            let files = if s.hub.is_some() { "hub".to_string() } else { s.files.len().to_string() };
            println!("{:<16} {:<8} {:>5}  {}", s.name, auth, files, s.description);
            println!("{:<32}{}", "", s.notes);
        }
        println!("\nany file: cargo xtask download --url <url> --sha256 <hex> --out <dir>");
        return Ok(if list { 0 } else { 2 });
    }
    let out = out.context("--out <dir> is required")?;
    if let Some(url) = url {
        hub_args.refuse_for("--url downloads one file, checked with --sha256")?;
        let name = file_name
            .or_else(|| {
                url.rsplit('/').next().map(|s| s.split('?').next().unwrap_or(s).to_string())
            })
            .filter(|n| !n.is_empty())
            .context("cannot take a file name from the URL; pass --file-name")?;
        if sha256.is_none() {
            eprintln!("warning: no --sha256 given: the download is checked for completeness but not content");
        }
        fetch(&url, &out.join(name), &Expect { size: None, sha256 }, None, net)?;
        return Ok(0);
    }
    let source = match name {
        Some(n) => Some(download::source(n).with_context(|| {
            let names: Vec<&str> = SOURCES.iter().map(|s| s.name).collect();
            format!("unknown dataset {n:?}; known: {} (or use --url)", names.join(", "))
        })?),
        None => None,
    };
    if let Some(hub) = source.and_then(|s| s.hub) {
        if kaggle.is_none() {
            return download_hub(source.expect("hub source").name, &hub, &out, hub_args, net);
        }
    }
    let kaggle_slug = match (kaggle.as_deref(), source) {
        (Some(slug), _) => Some(slug),
        (None, Some(src)) if src.auth == Auth::Kaggle => {
            bail!(
                "{} is on Kaggle and its owner was never recorded: pass --kaggle <owner>/<dataset>",
                src.name
            )
        }
        _ => None,
    };
    if let Some(slug) = kaggle_slug {
        hub_args.refuse_for("--kaggle downloads a Kaggle zip")?;
        let url = download::kaggle_url(slug)?;
        let creds = download::kaggle_credentials()?;
        let zip = out.join(format!("{}.zip", slug.replace('/', "_")));
        fetch(&url, &zip, &Expect::default(), Some(creds), net)?;
        let files = download::extract_zip(&zip, &out)?;
        println!("extracted {files} files into {}", out.display());
        return Ok(0);
    }
    let source = source.expect("name given");
    hub_args.refuse_for(&format!(
        "{} is downloaded from fixed URLs, each checked by its pinned SHA-256 where the table has one",
        source.name
    ))?;
    for f in source.files {
        let expect = Expect { size: f.size, sha256: f.sha256.map(str::to_string) };
        fetch(f.url, &out.join(f.file_name), &expect, None, net)?;
    }
    println!("{}\nnext: cargo xtask validate --dataset {}", source.notes, out.display());
    Ok(0)
}

/// A hub dataset source (docs/data.md, "Downloads"): into the Hugging Face cache through the `hub` crate, pinned
/// or recording what to pin, then into `out` with the files' repo paths and `source.json`. SIGINT, SIGTERM and
/// SIGHUP stop it after the current chunk, the partial file kept for the next run, with exit code 128 + the signal.
fn download_hub(
    name: &str,
    source: &download::HubDataset,
    out: &Path,
    args: HubArgs,
    net: &NetArgs,
) -> Result<i32> {
    // Before anything is downloaded: a refusal must not come after gigabytes.
    hub::check_out(out, args.overwrite)?;
    interrupt::install("keeping what was received for a resume, stopping after this chunk");
    let mut opts = hub::Options::from_env();
    opts.should_stop = Some(|| interrupt::requested().is_some());
    opts.retries = net.retries;
    opts.backoff = seconds("retry-delay", net.retry_delay)?;
    if let Some(t) = net.read_timeout {
        opts.timeout = seconds("read-timeout", t)?.max(Duration::from_millis(1));
    }
    let revision = args.revision.unwrap_or_else(|| source.revision.to_string());
    // The pins describe the table's commit only; another revision is recorded instead.
    let is_commit = |r: &str| r.len() == 40 && r.bytes().all(|b| b.is_ascii_hexdigit());
    let same = revision == source.revision
        || (is_commit(&revision) && revision.eq_ignore_ascii_case(source.revision));
    let pins: Vec<hub::Pin> = if same {
        let pin = |f: &download::PinnedFile| hub::Pin {
            path: f.path.to_string(),
            size: f.size,
            sha256: f.sha256.to_string(),
        };
        source.pinned.iter().map(pin).collect()
    } else {
        if source.is_pinned() {
            eprintln!(
                "note: the pins of {name} describe commit {}; --revision {revision} is downloaded unpinned",
                source.revision
            );
        }
        Vec::new()
    };
    let repo = hub::Repo::dataset(source.repo);
    let snapshot = match hub::download_pinned(
        &repo,
        &revision,
        &pins,
        &|f| source.selects(f),
        &opts,
    ) {
        Ok(snapshot) => snapshot,
        Err(e) => {
            // A signal decides the exit code whatever the error it caused (a stopped retry, a request cut).
            if let Some(sig) = interrupt::requested() {
                eprintln!("error: {e}");
                return Ok(sig.exit_code());
            }
            if let hub::HubError::PinMismatch(m) = &e {
                bail!(
                    "{e}\nThe commit's real sizes and checksums: cargo xtask download {name} --revision {} --out \
                     <an empty directory>",
                    m.commit
                );
            }
            return Err(e.into());
        }
    };
    if let Some(sig) = interrupt::requested() {
        eprintln!(
            "{}: stopped before writing {}; the cache holds every file, so the next run only writes it",
            sig.name(),
            out.display()
        );
        return Ok(sig.exit_code());
    }
    let paths: Vec<String> = snapshot.files.iter().map(|f| f.path.clone()).collect();
    let (linked, copied) = hub::export(&snapshot.dir, &paths, out, hub::LINK_FROM_BYTES)?;
    let record = serde_json::json!({
        "source": name,
        "repo": source.repo,
        "repo_type": "dataset",
        "revision": revision,
        "commit": snapshot.commit,
        "pinned": snapshot.pinned,
        "files": snapshot.files,
    });
    write_atomic(&out.join("source.json"), serde_json::to_string_pretty(&record)?.as_bytes())?;
    println!("{}", snapshot.dir.display());
    println!(
        "{}: {} file(s) of {}@{} (commit {}): {linked} hard-linked to the cache, {copied} copied; source.json \
         written",
        out.display(),
        snapshot.files.len(),
        source.repo,
        revision,
        snapshot.commit
    );
    for f in &snapshot.files {
        println!("  {}  {} bytes  sha256 {}", f.path, f.size, f.sha256);
    }
    if snapshot.pinned {
        println!("verified: the commit and every file's size and sha256 match the pins in SOURCES");
    } else {
        println!(
            "\nnot pinned: to pin {name} to exactly these files, replace the `hub: Some(…)` field of its entry in \
             SOURCES (crates/rsicd-data/src/download.rs) with:\n"
        );
        let files = snapshot.files.iter().map(|f| (f.path.as_str(), f.size, f.sha256.as_str()));
        print!("{}", source.pin_block(&snapshot.commit, files));
    }
    println!("\nnext: cargo xtask validate --dataset {}", out.display());
    Ok(0)
}
