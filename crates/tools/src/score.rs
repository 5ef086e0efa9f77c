//! `cargo xtask score`: COCO caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D) of predictions against
//! references, equal to pycocoevalcap, via the `metrics` crate. `cargo xtask bench metrics` lives in
//! `score_bench.rs`, reading inputs through `score_inputs.rs`.
//!
//! What is computed and how it follows pycocoevalcap 1.2: docs/metrics.md.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use metrics::{DfSource, DocumentFrequency, MeteorMode, Options, Sample, Tokenization};

use crate::score_inputs::{load_predictions, load_references, match_ids};

#[derive(Subcommand)]
pub enum Command {
    /// Score captions with the COCO metrics (pycocoevalcap-equal): Bleu_1-4, METEOR, ROUGE_L, CIDEr.
    Score(ScoreArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum MeteorArg {
    /// The official jar when Java and the jar are found, else the labelled native approximation.
    Auto,
    /// The official jar or an error.
    Exact,
    /// The native approximation ("METEOR (approx)").
    Approx,
    /// No METEOR.
    Skip,
}

#[derive(clap::Args)]
pub struct ScoreArgs {
    /// Predictions: COCO results JSON `[{"image_id", "caption"}]` or JSON Lines with the same keys.
    #[arg(long)]
    pub predictions: PathBuf,
    /// References: COCO annotations JSON (ids = COCO image ids) or Karpathy-style JSON (ids = filenames).
    #[arg(long)]
    pub references: PathBuf,
    /// Split of a Karpathy-style references file (train, val, test, ...).
    #[arg(long)]
    pub split: Option<String>,
    /// Print JSON (pycocoevalcap's metric keys, per-image scores, how each value was computed).
    #[arg(long)]
    pub json: bool,
    /// Also write that JSON to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// How to compute METEOR.
    #[arg(long, value_enum, default_value_t = MeteorArg::Auto)]
    pub meteor: MeteorArg,
    /// meteor-1.5.jar to use (else $METEOR_JAR, else pycocoevalcap's in the reference venv).
    #[arg(long)]
    pub meteor_jar: Option<PathBuf>,
    /// Captions are already tokenized: skip the PTB tokenizer step.
    #[arg(long)]
    pub pretokenized: bool,
    /// Take CIDEr's document frequencies from these references (e.g. the training split) instead of the
    /// evaluated ones. Non-standard: the value is reported as "CIDEr (external df)".
    #[arg(long)]
    pub cider_df: Option<PathBuf>,
    /// Split of --cider-df when it is a Karpathy-style file.
    #[arg(long)]
    pub cider_df_split: Option<String>,
    /// Score only the reference images that have a prediction (non-standard corpus).
    #[arg(long)]
    pub allow_missing: bool,
}

pub fn run(cmd: Command) -> Result<i32> {
    match cmd {
        Command::Score(args) => score(&args),
    }
}

fn score(args: &ScoreArgs) -> Result<i32> {
    let refs = load_references(&args.references, args.split.as_deref())?;
    let preds = load_predictions(&args.predictions)?;
    let matched = match_ids(&refs, &preds, args.allow_missing)?;
    let tokenization =
        if args.pretokenized { Tokenization::Pretokenized } else { Tokenization::Ptb };
    let cider_df = match &args.cider_df {
        None => DfSource::Corpus,
        Some(p) => {
            let df_refs = load_references(p, args.cider_df_split.as_deref())
                .with_context(|| format!("loading --cider-df {}", p.display()))?;
            let tokenized: Vec<Vec<String>> = df_refs
                .images
                .iter()
                .map(|(_, caps)| match tokenization {
                    Tokenization::Ptb => metrics::ptb::tokenize_captions(caps),
                    Tokenization::Pretokenized => caps.clone(),
                })
                .collect();
            DfSource::External(Arc::new(DocumentFrequency::from_references(
                tokenized.iter().map(|caps| caps.iter().map(String::as_str)),
            )))
        }
    };
    let options = Options {
        tokenization,
        meteor: match args.meteor {
            MeteorArg::Auto => MeteorMode::Auto,
            MeteorArg::Exact => MeteorMode::Exact,
            MeteorArg::Approx => MeteorMode::Approximate,
            MeteorArg::Skip => MeteorMode::Skip,
        },
        meteor_jar: metrics::JarConfig { jar: args.meteor_jar.clone(), java: None },
        cider_df,
    };
    let samples: Vec<Sample> = matched
        .images
        .iter()
        .map(|(id, r, h)| Sample { image_id: id, references: r, hypothesis: h })
        .collect();

    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(format!(
        "scoring {} images (starting the METEOR jar takes a few seconds)",
        samples.len()
    ));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let report = metrics::evaluate_samples(&samples, &options);
    spinner.finish_and_clear();
    let report = report?;

    let json = report.to_json(refs.numeric_ids);
    if let Some(out) = &args.out {
        write_atomically(out, &serde_json::to_string_pretty(&json)?)?;
    }
    let mut text = String::new();
    if args.json {
        text = serde_json::to_string_pretty(&json)? + "\n";
    } else {
        use std::fmt::Write as _;
        let _ = writeln!(
            text,
            "references: {} ({}{}), predictions: {} ({})",
            refs.path.display(),
            refs.format,
            refs.split.as_ref().map(|s| format!(", split {s}")).unwrap_or_default(),
            preds.path.display(),
            preds.format
        );
        if matched.renamed > 0 {
            let _ = writeln!(
                text,
                "note: {} prediction id(s) matched a reference by file name or path basename",
                matched.renamed
            );
        }
        if matched.dropped > 0 {
            let _ = writeln!(
                text,
                "warning: {} reference image(s) without a prediction were left out (--allow-missing); these scores \
                 are not comparable with full-split results",
                matched.dropped
            );
        }
        text.push_str(&report.table());
        if let Some(out) = &args.out {
            let _ = writeln!(text, "JSON written to {}", out.display());
        }
    }
    print_stdout(&text)?;
    Ok(0)
}

/// Prints to stdout; a reader that went away (`| head`) is not an error.
pub fn print_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to stdout"),
    }
}

/// Writes `text` to `path` through a temporary file in the same folder, so an existing file is never left
/// half-written.
pub fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("out"),
        std::process::id()
    ));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}
