//! Run reports and run comparison for paligemma-rs training runs (tch-free).
//!
//! The trainer writes a run directory (`run.json`, `metrics.jsonl`, `config.toml`, `predictions/`; the
//! contract is in docs/report.md). This crate turns it into plots (`plots/*.png|svg`) and a self-contained
//! `report.html` ([`build`]), prints its final metric table ([`final_metrics_table`]), and puts several runs
//! side by side ([`compare`]). Scores are shown ×100, the captioning convention.

mod atomic;
mod base64;
pub mod compare;
mod error;
mod final_table;
mod format;
pub mod gallery;
mod html;
mod json_file;
pub mod metric_names;
pub mod metrics_log;
mod ordered_map;
pub mod plot;
mod predictions;
mod run_charts;
pub mod run_dir;
pub mod run_info;
mod run_report;
mod smooth;
mod table;
mod thumbnail;
mod time;

use std::path::{Path, PathBuf};

pub use atomic::write_atomic;
pub use error::ReportError;
pub use final_table::SCORE_NOTE;
pub use metrics_log::{EvalRecord, MetricsLog, TrainRecord};
pub use ordered_map::OrderedMap;
pub use run_dir::Run;
pub use run_info::{Baseline, RunInfo};
pub use table::Table;
pub use time::{unix_now, utc_date, utc_rfc3339, utc_stamp};

/// Writes `plots/*` and `report.html` into `run_dir` (atomically) and returns the path of the report.
///
/// Missing optional parts (config, predictions, images, evaluations) are noted in the report; a malformed
/// `run.json`, `metrics.jsonl` line or predictions file is an error naming the file and key or line.
pub fn build(run_dir: &Path) -> Result<PathBuf, ReportError> {
    run_report::build(run_dir)
}

/// Writes `out_dir/compare.html`, `out_dir/compare.md` (final test metrics, else last validation metrics, one
/// row per run, ranked by `rank_by` descending when given) and overlaid curves (`loss`, `metric-<name>`) as
/// PNG and SVG. Returns the path of compare.html.
///
/// `rank_by` matches a metric name exactly, else ignoring case and punctuation (`cider` finds `CIDEr`); a name
/// no run has is an error listing the available ones.
pub fn compare(
    run_dirs: &[PathBuf],
    out_dir: &Path,
    rank_by: Option<&str>,
) -> Result<PathBuf, ReportError> {
    compare::compare(run_dirs, out_dir, rank_by)
}

/// The run's final metric table as plain text for the terminal: a heading naming the split, step and image
/// count, the table (run row; baseline and difference rows when run.json has a baseline) and the ×100 note.
/// Errors with [`ReportError::NoEvaluation`] when the run has no evaluation yet.
pub fn final_metrics_table(run_dir: &Path) -> Result<String, ReportError> {
    let run = Run::load(run_dir)?;
    let t = final_table::final_table(&run)
        .ok_or_else(|| ReportError::NoEvaluation { path: run_dir.join("metrics.jsonl") })?;
    Ok(format!("{}: {}\n{}{}\n", run.name(), t.heading, t.table.to_text(), SCORE_NOTE))
}
