//! `pgrs`: the project's CLI for everything that needs libtorch. Users normally reach it through `cargo xtask …`,
//! which installs libtorch first and then builds and runs this binary.
mod caption;
mod device;
mod doctor;

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
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::exit(1);
        }
    }
}
