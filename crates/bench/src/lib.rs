//! `pgrs bench`: this project against the Python stack (transformers 5.23 + PEFT 0.21) on the same work, side by
//! side in one run: `train` (one optimizer step), `generate` (greedy and beam captioning) and `fullsize` (peak memory
//! of PaliGemma-3B fine-tuning steps against the memory planner). `pgrs` (crates/cli) only declares the subcommand,
//! `Bench(bench::Args)`, and calls [`run`].
//!
//! Method (issue 6, `docs/benchmarks.md`): one weights directory written once by `scripts/bench/make_model.py`
//! (seeded random, nothing downloaded), one batch and one set of initial trainables written by this process, read by
//! both sides; each side runs in its own process (`pgrs bench worker` and `scripts/bench/hf_worker.py`, same spec
//! file) so its peak RSS is its own; rounds alternate which side goes first; same dtype, batch, sequence length and
//! thread count; losses and generated ids are compared before any time is reported.
//!
//! The binary that calls [`run`] must route `<itself> bench …` to it, as `pgrs` does: the Rust worker is started as
//! `<current executable> bench worker --spec … --out …`. `scripts/bench/` is found from the repository root
//! (`cases::repo_root`: the working directory's nearest ancestor holding it, else this checkout).
mod cases;
mod fullsize;
mod generate;
mod gpu_memory;
pub mod inputs;
mod machine;
mod profile;
mod report;
mod rss;
mod runner;
pub mod spec;
mod stats;
mod train;
mod worker;

use anyhow::Result;
use runner::{find_python, Runner};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

/// Options every orchestrating benchmark shares.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Python with torch, transformers 5.23 and peft 0.21 (default: $PALIGEMMA_PYTHON, else the venv that
    /// `cargo xtask setup` made, else `python3`).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Threads for both sides (libtorch intra-op); default: every available core.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Rounds per case; each round runs both sides once, alternating which goes first.
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Timed repetitions inside each worker process (after one untimed warm-up).
    #[arg(long)]
    pub steps: Option<usize>,
    /// cpu or cuda.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Fewer cases and repetitions: a first look in about a minute or two.
    #[arg(long)]
    pub quick: bool,
    /// Only cases whose label contains this text (e.g. `lora`, `b8`, `bf16`).
    #[arg(long)]
    pub only: Option<String>,
    /// Where cached weights, inputs and worker logs go.
    #[arg(long, default_value = "data/cache/bench")]
    pub work_dir: PathBuf,
    /// Markdown file the results are appended to.
    #[arg(long, default_value = "docs/benchmarks.md")]
    pub record: PathBuf,
    /// Print only; do not append to the record file.
    #[arg(long)]
    pub no_record: bool,
    /// Profile both sides by block (forward blocks, backward, optimizer) even where targets are met.
    #[arg(long)]
    pub profile: bool,
}

/// What every orchestrating benchmark sets up first.
pub struct Session {
    pub repo: PathBuf,
    pub work: PathBuf,
    pub python: PathBuf,
    pub runner: Runner,
    /// Versions the reference interpreter reported (checked to have torch, transformers and peft).
    pub versions: serde_json::Value,
    pub threads: usize,
}

impl Common {
    pub fn session(&self) -> Result<Session> {
        let repo = cases::repo_root();
        let work = cases::resolve(&repo, &self.work_dir);
        let python = find_python(self.python.as_deref());
        let runner = Runner::new(python.clone(), &repo, work.join("logs"))?;
        let versions = runner.check_python()?;
        let threads = self
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        Ok(Session { repo, work, python, runner, versions, threads })
    }

    pub fn rounds(&self) -> usize {
        self.rounds.unwrap_or(if self.quick { 1 } else { 2 })
    }

    /// The cases whose label contains `--only` (all without it); none left is an error.
    pub fn select<T>(&self, mut list: Vec<T>, label: impl Fn(&T) -> String) -> Result<Vec<T>> {
        if let Some(f) = &self.only {
            list.retain(|k| label(k).contains(f.as_str()));
        }
        if list.is_empty() {
            anyhow::bail!("no case matches --only {:?}", self.only);
        }
        Ok(list)
    }
}

impl Session {
    /// `--model`, else the generated mid-size PaliGemma (written once).
    pub fn model_or_midsize(&self, explicit: Option<&Path>) -> Result<PathBuf> {
        match explicit {
            Some(m) => Ok(m.to_path_buf()),
            None => {
                cases::ensure_model(&self.python, &self.repo, "midsize", &self.work.join("midsize"))
            }
        }
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// One optimizer step (forward, backward, update) against transformers + PEFT on a mid-size PaliGemma.
    Train(train::Args),
    /// Greedy and beam-3 captioning against `generate` of transformers on the same weights.
    Generate(generate::Args),
    /// PaliGemma-3B-pt-224 shapes (random bf16): peak memory of LoRA / attention-only / custom steps vs the planner.
    Fullsize(fullsize::Args),
    /// One side of one case (used by the benchmarks; reads a spec file, writes a result file).
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        spec: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(args: Args) -> Result<i32> {
    match args.command {
        Command::Train(a) => train::run(&a),
        Command::Generate(a) => generate::run(&a),
        Command::Fullsize(a) => fullsize::run(&a),
        Command::Worker { spec, out } => worker::run(&spec, &out),
    }
}
