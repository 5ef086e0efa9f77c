//! Errors of the report crate: every variant names the file (and line or key) at fault and what was expected.

use std::path::PathBuf;

/// Why a report or a comparison could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },

    #[error(
        "{} is not a run directory: it has neither run.json nor metrics.jsonl (the trainer writes both)",
        path.display()
    )]
    NotARunDir { path: PathBuf },

    /// A line of a JSON Lines file (metrics.jsonl) that is not what the trainer writes.
    #[error("{}:{line}: {message}", path.display())]
    Line { path: PathBuf, line: usize, message: String },

    /// A JSON file (run.json, predictions, references) that does not have the expected shape.
    #[error("{}: {message}", path.display())]
    Json { path: PathBuf, message: String },

    #[error("{}: no evaluation recorded yet (no `\"kind\":\"eval\"` line in metrics.jsonl)", path.display())]
    NoEvaluation { path: PathBuf },

    #[error("plot {}: {message}", path.display())]
    Plot { path: PathBuf, message: String },

    #[error("cannot rank by `{metric}`: none of the runs has that metric (available: {})", available.join(", "))]
    UnknownMetric { metric: String, available: Vec<String> },

    #[error("nothing to compare: give at least one run directory")]
    NoRuns,
}

impl ReportError {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        ReportError::Io { path: path.into(), error }
    }
}
