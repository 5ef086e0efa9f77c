//! `cargo xtask`: the project's front door.
//!
//! xtask links no libtorch, because it is what installs libtorch (`setup`), and it builds in seconds on a fresh
//! machine. Commands that need libtorch are forwarded to the project's own CLI binary (`pgrs`, crate
//! `paligemma-cli`), which xtask builds and runs after making sure libtorch is present. Commands that need no
//! libtorch (datasets, scoring, reports) are forwarded to `pgtools` (crate `paligemma-tools`) and never wait for
//! it; weight conversion runs right here.
mod bench_launch;
mod convert;
mod launcher;
mod npz;
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
    /// Benchmarks against the reference implementation measured in the same run: `metrics`, `data`, `train`,
    /// `generate`, `fullsize` (`all`: all but fullsize).
    /// Results are printed and appended to docs/benchmarks.md.
    Bench {
        /// Which benchmark: metrics | data | train | generate | fullsize | all.
        name: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Score captions with the COCO metrics (pycocoevalcap-equal): Bleu_1-4, METEOR, ROUGE_L, CIDEr.
    #[command(disable_help_flag = true)]
    Score {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Check a dataset: missing/unreadable images, duplicates, empty captions, special tokens, splits, sizes.
    #[command(disable_help_flag = true)]
    Validate {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Exploratory data analysis: stats.json, plots (PNG and SVG) and report.html in --out.
    #[command(disable_help_flag = true)]
    Eda {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Render a deterministic synthetic aerial dataset (Karpathy JSON + PNGs), the demo's data.
    #[command(disable_help_flag = true)]
    Synth {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Download a known dataset (see --list), or any file with --url and --sha256; resumable, verified.
    #[command(disable_help_flag = true)]
    Download {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Rebuild a run's plots and self-contained report.html (or every run in a folder).
    #[command(disable_help_flag = true)]
    Report {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Compare runs side by side: ranked table (compare.md), compare.html, overlaid curves.
    #[command(disable_help_flag = true)]
    Compare {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn with(name: &str, args: &[String]) -> Vec<String> {
    std::iter::once(name.to_string()).chain(args.iter().cloned()).collect()
}

fn bench(name: &str, args: &[String]) -> anyhow::Result<i32> {
    match name {
        "metrics" | "data" => launcher::run_tool("bench", &with(name, args)),
        "train" | "generate" | "fullsize" => bench_launch::run(name, args),
        // everything but `fullsize` (minutes, ~12 GB of generated weights)
        "all" => Ok(launcher::run_tool("bench", &with("metrics", args))?
            .max(launcher::run_tool("bench", &with("data", args))?)
            .max(bench_launch::run("train", args)?)
            .max(bench_launch::run("generate", args)?)),
        other => anyhow::bail!(
            "unknown benchmark `{other}`: expected metrics, data, train, generate, fullsize or all"
        ),
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
        Command::Score { args } => launcher::run_tool("score", &args),
        Command::Validate { args } => launcher::run_tool("validate", &args),
        Command::Eda { args } => launcher::run_tool("eda", &args),
        Command::Synth { args } => launcher::run_tool("synth", &args),
        Command::Download { args } => launcher::run_tool("download", &args),
        Command::Report { args } => launcher::run_tool("report", &args),
        Command::Compare { args } => launcher::run_tool("compare", &args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            // Stopped by a signal: 128 + its number, as a shell reports it (130 for Ctrl-C, 143 for SIGTERM).
            let code = err
                .chain()
                .find_map(|e| e.downcast_ref::<launcher::Interrupted>())
                .map_or(1, |i| i.0.exit_code());
            std::process::exit(code);
        }
    }
}
