//! The training loop, readable top to bottom: prepare (data, model, plan), resume, baselines, then step after step
//! with what follows each (evaluation, checkpoint, a stop on a signal), then the final evaluation. The phases live
//! in `session.rs` (and `resume.rs`); the guards of an update (loss scaling, non-finite values, the gradient check,
//! clipping) in `guard.rs`; one forward and backward in `step.rs`; what several ranks add in `parallel.rs`.
use crate::session::{Session, StepOutcome};
use crate::{resume, ExperimentConfig, TrainError};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Where new runs go (`runs/`).
    pub runs_dir: PathBuf,
    /// Continue this run directory from its newest good checkpoint.
    pub resume: Option<PathBuf>,
    /// Print the trainable table and the memory plan, then stop.
    pub dry_run: bool,
    /// No progress bar (tests, CI logs).
    pub quiet: bool,
    /// Skip the check of every dataset image before step 1 (for huge sets whose images are known good).
    pub skip_image_check: bool,
    /// Data-parallel runs: how long a rank waits for the others (rendezvous, any collective) before it stops with
    /// an error; `None`: 30 minutes, PyTorch's default.
    pub dist_timeout: Option<Duration>,
}

impl TrainOptions {
    pub fn dist_timeout(&self) -> Duration {
        self.dist_timeout.unwrap_or(Duration::from_secs(30 * 60))
    }
}

#[derive(Debug, Clone, Default)]
pub struct TrainSummary {
    /// This process's rank (0 for one process); only rank 0's summary has metrics and a report.
    pub rank: usize,
    pub run_dir: PathBuf,
    pub steps: usize,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
    /// Final test metrics (or last validation metrics when there is no test split).
    pub final_metrics: Vec<(String, f64)>,
    pub before_metrics: Option<Vec<(String, f64)>>,
    pub baseline_metrics: Option<Vec<(String, f64)>>,
    pub report: Option<PathBuf>,
}

/// Trains (or resumes) a run and returns its summary.
pub fn train(cfg: &ExperimentConfig, opts: &TrainOptions) -> Result<TrainSummary, TrainError> {
    let cfg = &crate::parallel::for_this_rank(cfg)?;
    // Joining the other ranks comes first: a signal while waiting for them stops at once (nothing is written yet).
    let group = crate::parallel::join(cfg.model.device, opts.dist_timeout())?;
    // SIGINT, SIGTERM and SIGHUP are acted on at safe points: before the first step, and at step boundaries after
    // a checkpoint. A second signal ends the process at once.
    interrupt::install("stopping at the next step boundary, after saving a checkpoint");
    let mut s = Session::prepare(cfg, opts, group)?;
    if opts.dry_run {
        return Ok(s.dry_run_summary());
    }
    if opts.resume.is_some() {
        resume::resume(&mut s)?;
    }
    crate::parallel::broadcast_trainables(&s.group, &s.built.trainables)?;
    s.record_start()?;
    s.baselines()?;
    s.bar.set_position(s.state.step as u64);
    s.stop_if_signalled()?;
    while s.state.step < cfg.train.steps && !s.state.stopped_early {
        if let StepOutcome::Skipped { what } = s.step()? {
            s.skipped(&what)?;
        }
        s.advance();
        s.after_step()?;
    }
    s.stop_if_signalled()?;
    s.finish()
}
