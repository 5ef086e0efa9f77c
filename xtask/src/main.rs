//! `cargo xtask`: the project's front door.
//!
//! xtask links no libtorch, because it is what installs libtorch (`setup`). Commands that need libtorch are
//! forwarded to the project's own CLI binary (`pgrs`, crate `paligemma-cli`), which xtask builds and runs
//! with the right environment after making sure libtorch is present. Commands that need no libtorch
//! (dataset work, scoring, weight conversion) run right here and never wait for it.
mod convert;
mod data;
mod data_bench;
mod data_eda;
mod launcher;
mod npz;
mod report_cmd;
mod score;
mod score_bench;
mod score_inputs;
mod setup;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "PaliGemma fine-tuning for remote-sensing captions",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install libtorch (torch==2.13.0 from PyPI) into the per-user cache and point the workspace at it.
    Setup(setup::Args),
    /// Report libtorch, CUDA, GPUs, bf16 support and threads; every problem comes with its fix.
    Doctor,
    /// Run the whole test suite (sets libtorch up first). Extra arguments go to `cargo test`.
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Caption images with an HF-format PaliGemma directory (config.json, safetensors, tokenizer.json).
    #[command(disable_help_flag = true)]
    Caption {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Convert a big_vision PaliGemma checkpoint (.npz) to HF-layout safetensors + config.json.
    Convert(convert::Args),
    /// The main job: generate the synthetic sample, train a small PaliGemma from scratch, evaluate before and after.
    #[command(disable_help_flag = true)]
    Demo {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Fine-tune from an experiment file (`--config experiments/….toml [--set key=value] [--dry-run] [--resume run]`).
    #[command(disable_help_flag = true)]
    Train {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Evaluate a run (`--run dir`) or an HF model (`--model dir [--adapter dir]`) on a dataset split.
    #[command(disable_help_flag = true)]
    Eval {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Merge a run's adapters into its base model and write an HF-format directory.
    #[command(disable_help_flag = true)]
    Export {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Memory plan of an experiment from configs alone (`--config f.toml --architecture pt-224`).
    #[command(disable_help_flag = true)]
    Plan {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Train a grid of experiment variants and rank them (`--grid "optim.lr=1e-4,3e-5"`).
    #[command(disable_help_flag = true)]
    Sweep {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmarks against the reference implementation measured in the same run: `metrics`, `data`.
    /// Results are printed and appended to docs/benchmarks.md.
    Bench {
        /// Which benchmark: metrics | data | all.
        name: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    #[command(flatten)]
    Score(score::Command),
    #[command(flatten)]
    Data(data::Command),
    #[command(flatten)]
    Report(report_cmd::Command),
}

fn bench(name: &str, args: &[String]) -> anyhow::Result<i32> {
    match name {
        "metrics" => score_bench::bench(args),
        "data" => data_bench::bench(args),
        "all" => Ok(score_bench::bench(args)?.max(data_bench::bench(args)?)),
        other => anyhow::bail!("unknown benchmark `{other}`: expected metrics, data or all"),
    }
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup(args) => setup::run(&args),
        Command::Doctor => launcher::doctor(),
        Command::Test { args } => launcher::cargo_test(&args),
        Command::Caption { args } => launcher::run_cli("caption", &args),
        Command::Convert(args) => convert::run(&args),
        Command::Demo { args } => launcher::run_cli("demo", &args),
        Command::Train { args } => launcher::run_cli("train", &args),
        Command::Eval { args } => launcher::run_cli("eval", &args),
        Command::Export { args } => launcher::run_cli("export", &args),
        Command::Sweep { args } => launcher::run_cli("sweep", &args),
        Command::Plan { args } => launcher::run_cli("plan", &args),
        Command::Bench { name, args } => bench(&name, &args),
        Command::Score(c) => score::run(c),
        Command::Data(c) => data::run(c),
        Command::Report(c) => report_cmd::run(c),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::exit(1);
        }
    }
}
