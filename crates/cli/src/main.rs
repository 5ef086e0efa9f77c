//! `pgrs`: the project's CLI for everything that needs libtorch. Users normally reach it through `cargo xtask …`,
//! which installs libtorch first and then builds and runs this binary.
mod caption;
mod caption_inputs;
mod caption_output;
mod doctor;
mod eval_cmd;
mod options;
mod plan_cmd;
mod train_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "pgrs",
    about = "PaliGemma for remote-sensing captioning (libtorch side)",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Caption images with an HF-format PaliGemma directory.
    Caption(caption::Args),
    /// Runtime checks: libtorch, CUDA, GPUs, bf16, threads.
    Doctor,
    /// Fine-tune (hard prompt, LoRA, soft prompt, hybrid, custom composition) from an experiment file.
    Train(train_cmd::TrainArgs),
    /// Evaluate a run's checkpoint, or an HF model (zero-shot or with a PEFT adapter), on a dataset split.
    Eval(eval_cmd::EvalArgs),
    /// Merge a run's adapters into its base and write an HF-format model directory.
    Export(eval_cmd::ExportArgs),
    /// Memory plan of an experiment from configs alone (no weights needed).
    Plan(plan_cmd::PlanArgs),
    /// Train a grid of configs sequentially and rank them.
    Sweep(train_cmd::SweepArgs),
    /// The main job: synthetic sample, a small PaliGemma trained from scratch, before/after metrics, report.
    Demo(train_cmd::DemoArgs),
    /// Benchmarks against a reference measured in the same run: train, generate, fullsize, attention, ddp.
    Bench(bench::Args),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Caption(args) => caption::run(&args),
        Command::Doctor => doctor::run(),
        Command::Train(args) => train_cmd::run_train(&args),
        Command::Eval(args) => eval_cmd::run_eval(&args),
        Command::Export(args) => eval_cmd::run_export(&args),
        Command::Sweep(args) => train_cmd::run_sweep(&args),
        Command::Plan(args) => plan_cmd::run_plan(&args),
        Command::Demo(args) => train_cmd::run_demo(&args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            // A clean stop on a signal exits as the shell reports that signal: 130 (SIGINT), 143 (SIGTERM),
            // 129 (SIGHUP); docs/reliability.md lists the codes.
            let code = match err.downcast_ref::<trainer::TrainError>() {
                Some(trainer::TrainError::Interrupted { signal, .. }) => signal.exit_code(),
                _ => 1,
            };
            std::process::exit(code);
        }
    }
}
