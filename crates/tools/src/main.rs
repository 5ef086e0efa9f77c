//! `pgtools`: the project's commands that need no libtorch (datasets, caption metrics, run reports). Users reach them
//! through `cargo xtask <command>`, which builds and runs this binary without waiting for libtorch.
mod data;
mod data_bench;
mod data_eda;
mod report_cmd;
mod score;
mod score_bench;
mod score_inputs;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "pgtools",
    bin_name = "cargo xtask",
    about = "Datasets, caption metrics and reports",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Score(score::Command),
    #[command(flatten)]
    Data(data::Command),
    #[command(flatten)]
    Report(report_cmd::Command),
    /// Benchmarks against the Python reference measured in the same run: `metrics`, `data`.
    Bench {
        name: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Score(c) => score::run(c),
        Command::Data(c) => data::run(c),
        Command::Report(c) => report_cmd::run(c),
        Command::Bench { name, args } => match name.as_str() {
            "metrics" => score_bench::bench(&args),
            "data" => data_bench::bench(&args),
            other => {
                Err(anyhow::anyhow!("unknown benchmark `{other}` here: expected metrics or data"))
            }
        },
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::exit(1);
        }
    }
}
