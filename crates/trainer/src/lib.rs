//! Fine-tuning PaliGemma for remote-sensing captioning: every strategy of the mission (hard prompt with a trainable
//! mask, LoRA, soft prompt, hybrid, and a custom SigLIP + projector + Gemma composition), in a loop built to be
//! trusted: f32 trainables over a bf16/f16 base, gradient checkpointing with exact gradients, NaN guard, gradient
//! checks after the first step, atomic verified checkpoints with bit-exact resume, periodic evaluation with the COCO
//! metrics, and a run directory with metrics, predictions and a report.
//!
//! Recipes follow big_vision's PaliGemma transfers (`configs/proj/paligemma/transfers/`) and peft for adapters;
//! `docs/training.md` explains each choice.
pub mod checkpoint;
pub mod checkpointing;
pub mod config;
pub mod data;
pub mod device;
pub mod eval;
pub mod glob;
pub mod guard;
pub mod memory;
pub mod optim;
pub mod parallel;
pub mod peft;
pub mod resume;
pub mod run;
pub mod schedule;
pub mod scratch;
pub mod selection;
pub mod session;
pub mod setting;
pub mod step;
pub mod strategy;
pub mod tb;
pub mod train;
pub mod what_trains;

pub use config::ExperimentConfig;

/// Builds `report.html` and the plots of a run directory (a failure to report never fails a finished run).
pub fn report_hook(run: &std::path::Path) -> Option<std::path::PathBuf> {
    match report::build(run) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!("could not build the report of {}: {e}", run.display());
            None
        }
    }
}
pub use train::{train, TrainOptions, TrainSummary};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("config: {0}")]
    Config(String),
    #[error("{0}")]
    Io(String),
    #[error("checkpoint {0}")]
    Checkpoint(String),
    #[error("{0}")]
    NonFinite(String),
    #[error("{0}")]
    Gradient(String),
    /// Stopped by SIGINT, SIGTERM or SIGHUP; the CLI exits with `signal.exit_code()` (128 + the signal number).
    #[error("interrupted by {}: {}", signal.name(), match checkpoint {
        Some(c) => format!("a checkpoint was saved in {}; continue with --resume {}", c.display(), run.display()),
        None => "training had not started, nothing to resume".to_string(),
    })]
    Interrupted {
        signal: interrupt::Signal,
        run: std::path::PathBuf,
        checkpoint: Option<std::path::PathBuf>,
    },
    /// Training stopped on an error after saving what it could; the message says where and how to continue.
    #[error("{0}")]
    Stopped(String),
    #[error(transparent)]
    Model(#[from] paligemma::PaliGemmaError),
    #[error(transparent)]
    Data(#[from] rsicd_data::DataError),
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    #[error(transparent)]
    Lora(#[from] layers::LoraError),
    #[error(transparent)]
    Siglip(#[from] siglip::SiglipError),
    #[error(transparent)]
    Gemma(#[from] gemma::GemmaError),
    #[error(transparent)]
    Hub(#[from] hub::HubError),
    #[error("libtorch: {0}")]
    Torch(tch::TchError),
}

weights::torch_error_from!(TrainError);
