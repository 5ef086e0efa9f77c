//! `pgrs bench`: this project against the Python stack (transformers 5.23 + PEFT 0.21) on the same work, side by
//! side in one run: `train` (one optimizer step), `generate` (greedy and beam captioning) and `fullsize` (peak memory
//! of PaliGemma-3B fine-tuning steps against the memory planner); `train` and `generate` run on the mid-size
//! PaliGemma (default) or PaliGemma 2 (`--model midsize2`). `attention` times the exact attention paths for Gemma 2's
//! soft-capped layers against each other and against fused SDPA (libtorch only, no Python). `ddp` times data-parallel
//! training on CPU (2 ranks against 1 process on the same cores) and its gradient all-reduce against
//! `torch.distributed`'s on gloo. `pgrs` (crates/cli) only declares the subcommand, `Bench(bench::Args)`, and calls
//! [`run`].
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
mod attention;
mod cases;
mod ddp;
mod fma_probe;
mod fullsize;
mod generate;
mod gpu_memory;
pub mod inputs;
mod machine;
mod profile;
mod read_bound;
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
    /// Only cases whose label contains one of these texts (comma-separated, e.g. `lora`, `b8`, `lora-b8,hard_prompt`).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Leave out cases whose label contains one of these texts (comma-separated, e.g. `ckpt,soft`).
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
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
    /// Prints a benchmark's section and appends it to the record file, unless `--no-record`.
    pub fn publish(&self, section: &str) -> Result<()> {
        println!("{section}");
        if !self.no_record {
            report::append(&cases::resolve(&cases::repo_root(), &self.record), section)?;
        }
        Ok(())
    }

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

    /// The cases whose label contains one of `--only` (all without it) and none of `--skip`; none left is an
    /// error.
    pub fn select<T>(&self, mut list: Vec<T>, label: impl Fn(&T) -> String) -> Result<Vec<T>> {
        list.retain(|k| {
            let l = label(k);
            (self.only.is_empty() || self.only.iter().any(|f| l.contains(f.as_str())))
                && !self.skip.iter().any(|f| l.contains(f.as_str()))
        });
        if list.is_empty() {
            anyhow::bail!("no case matches --only {:?} --skip {:?}", self.only, self.skip);
        }
        Ok(list)
    }

    /// The case-selection options as typed, for the command line a record shows.
    pub fn flags(&self) -> String {
        let mut s = String::new();
        if self.quick {
            s += " --quick";
        }
        for (flag, v) in [("--only", &self.only), ("--skip", &self.skip)] {
            if !v.is_empty() {
                s += &format!(" {flag} {}", v.join(","));
            }
        }
        s
    }
}

/// The weights `bench train` / `bench generate` run on (`--model`): a generated model by name, or a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelChoice {
    /// Written once by `scripts/bench/make_model.py <name>` into `<work dir>/<name>` (see [`GENERATED_MODELS`]).
    Generated(&'static str),
    /// An HF PaliGemma (1 or 2) directory.
    Dir(PathBuf),
}

/// The models `--model` names: the name `make_model.py` knows, and how the record calls it.
pub const GENERATED_MODELS: [(&str, &str); 2] =
    [("midsize", "mid-size PaliGemma"), ("midsize2", "mid-size PaliGemma 2")];

impl ModelChoice {
    pub const DEFAULT: &'static str = "midsize";

    /// A name of [`GENERATED_MODELS`], else a directory (write `./midsize` for a directory of that name).
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("expected midsize, midsize2 or an HF PaliGemma directory".into());
        }
        Ok(match GENERATED_MODELS.iter().find(|(n, _)| *n == s) {
            Some((n, _)) => Self::Generated(n),
            None => Self::Dir(PathBuf::from(s)),
        })
    }

    /// What the record calls the model.
    pub fn describe(&self) -> String {
        match self {
            Self::Generated(n) => GENERATED_MODELS
                .iter()
                .find(|(g, _)| g == n)
                .map_or_else(|| n.to_string(), |(_, d)| d.to_string()),
            Self::Dir(p) => p.display().to_string(),
        }
    }

    /// ` --model …` as typed, empty for the default, for the command line a record shows.
    pub fn flag(&self) -> String {
        match self {
            Self::Generated(n) if *n == Self::DEFAULT => String::new(),
            Self::Generated(n) => format!(" --model {n}"),
            Self::Dir(p) => format!(" --model {}", p.display()),
        }
    }

    /// A short name for file names: the generated model's, else the directory's last component.
    pub fn key(&self) -> String {
        match self {
            Self::Generated(n) => n.to_string(),
            Self::Dir(p) => {
                p.file_name().map_or_else(|| "model".into(), |f| f.to_string_lossy().into_owned())
            }
        }
    }

    /// `-<key>` for file names of a non-default model, empty for the default (whose files keep their old names).
    pub fn file_tag(&self) -> String {
        if self.flag().is_empty() {
            String::new()
        } else {
            format!("-{}", self.key())
        }
    }

    /// Where the shared inputs of this model's cases go (the default model keeps the original `inputs/`).
    pub fn inputs_dir(&self, work: &Path) -> PathBuf {
        match self {
            Self::Generated(n) if *n != Self::DEFAULT => work.join(format!("inputs-{n}")),
            _ => work.join("inputs"),
        }
    }
}

impl Session {
    /// The weights directory of `--model` (a generated one is written once, then cached under the work directory).
    pub fn model(&self, choice: &ModelChoice) -> Result<PathBuf> {
        match choice {
            ModelChoice::Dir(p) => Ok(p.clone()),
            ModelChoice::Generated(name) => {
                cases::ensure_model(&self.python, &self.repo, name, &self.work.join(name))
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
    /// Gemma 2's soft-capped attention: the exact paths against each other and fused SDPA, forward + backward.
    Attention(attention::Args),
    /// Data-parallel training on CPU: 2 ranks x 1 thread against 1 process x 2 threads, and the gradient all-reduce
    /// against torch.distributed (gloo).
    Ddp(ddp::Args),
    /// One side of one case (used by the benchmarks; reads a spec file, writes a result file).
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        spec: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// One rank of `bench ddp`'s all-reduce timings (under torchrun's variables; reads a spec, rank 0 writes).
    #[command(hide = true)]
    AllreduceWorker {
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
        Command::Attention(a) => attention::run(&a),
        Command::Ddp(a) => ddp::run(&a),
        Command::Worker { spec, out } => worker::run(&spec, &out),
        Command::AllreduceWorker { spec, out } => ddp::worker(&spec, &out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_select_generated_models_and_anything_else_is_a_directory() {
        assert_eq!(ModelChoice::parse("midsize2"), Ok(ModelChoice::Generated("midsize2")));
        let default = ModelChoice::parse(ModelChoice::DEFAULT).unwrap();
        assert_eq!(default, ModelChoice::Generated("midsize"));
        assert_eq!(default.flag(), "");
        let dir = ModelChoice::parse("data/fixtures/pg2-gqa").unwrap();
        assert_eq!(dir, ModelChoice::Dir("data/fixtures/pg2-gqa".into()));
        assert_eq!(ModelChoice::parse("./midsize2"), Ok(ModelChoice::Dir("./midsize2".into())));
        let two = ModelChoice::Generated("midsize2");
        assert_eq!(
            (two.describe().as_str(), two.flag().as_str()),
            ("mid-size PaliGemma 2", " --model midsize2")
        );
        let work = Path::new("w");
        assert_eq!(default.inputs_dir(work), work.join("inputs"));
        assert_eq!(two.inputs_dir(work), work.join("inputs-midsize2"));
        assert!(ModelChoice::parse("").is_err());
    }

    #[test]
    fn only_and_skip_take_lists() {
        #[derive(clap::Parser)]
        struct T {
            #[command(flatten)]
            c: Common,
        }
        let parse = |args: &[&str]| {
            <T as clap::Parser>::parse_from(std::iter::once("t").chain(args.iter().copied())).c
        };
        let labels =
            ["lora-b1-f32", "lora-b1-f32-ckpt", "hard_prompt-b8-f32", "soft_prompt-b1-f32"];
        let pick = |c: &Common| c.select(labels.to_vec(), |l| l.to_string());
        let c = parse(&["--only", "lora-b1,hard_prompt", "--skip", "ckpt"]);
        assert_eq!(pick(&c).unwrap(), ["lora-b1-f32", "hard_prompt-b8-f32"]);
        assert_eq!(c.flags(), " --only lora-b1,hard_prompt --skip ckpt");
        assert_eq!(pick(&parse(&[])).unwrap().len(), 4);
        assert!(pick(&parse(&["--only", "bf16"])).is_err());
    }
}
