//! `cargo xtask report` and `cargo xtask compare`: rebuild a run's report (plots + report.html) and put runs
//! side by side, through the tch-free `report` crate. A directory that holds run directories (such as
//! `runs/`) stands for all of them.
//!
//! Reference: docs/report.md (the run directory contract and what the pages show).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum Command {
    /// Rebuild report.html and plots/ of run directories and print their final metric tables.
    /// A directory of runs (e.g. `runs/`) stands for every run in it.
    Report {
        /// Run directories (`runs/<name>-<timestamp>`), or directories holding them.
        #[arg(required = true, value_name = "RUN_DIR")]
        runs: Vec<PathBuf>,
    },
    /// Compare runs side by side: compare.md (final metrics, ranked), compare.html and overlaid curves.
    /// A directory of runs (e.g. `runs/`) stands for every run in it.
    Compare {
        /// Run directories (`runs/<name>-<timestamp>`), or directories holding them.
        #[arg(required = true, value_name = "RUN_DIR")]
        runs: Vec<PathBuf>,
        /// Output directory [default: compare-<UTC timestamp> next to the first run].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Rank runs by this metric, best first (CIDEr, Bleu_4, METEOR, ROUGE_L …; case-insensitive).
        #[arg(long, value_name = "METRIC")]
        rank_by: Option<String>,
    },
}

pub fn run(cmd: Command) -> Result<i32> {
    match cmd {
        Command::Report { runs } => report(&runs),
        Command::Compare { runs, out, rank_by } => compare(&runs, out, rank_by.as_deref()),
    }
}

fn is_run_dir(dir: &Path) -> bool {
    dir.join("run.json").is_file() || dir.join("metrics.jsonl").is_file()
}

/// Run directories as given, with each directory of runs replaced by the runs inside it (sorted by name).
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if !p.is_dir() {
            bail!(
                "{}: not a directory (expected a run directory such as runs/<name>-<timestamp>)",
                p.display()
            );
        }
        if is_run_dir(p) {
            out.push(p.clone());
            continue;
        }
        let mut inner: Vec<PathBuf> = std::fs::read_dir(p)
            .with_context(|| format!("listing {}", p.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|d| d.is_dir() && is_run_dir(d))
            .collect();
        if inner.is_empty() {
            bail!(
                "{}: not a run directory (no run.json or metrics.jsonl) and holds no run directories",
                p.display()
            );
        }
        inner.sort();
        out.extend(inner);
    }
    Ok(out)
}

fn report(paths: &[PathBuf]) -> Result<i32> {
    let runs = expand(paths)?;
    let mut failed = 0;
    for (i, dir) in runs.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let built = report::build(dir).with_context(|| format!("report of {}", dir.display()));
        match built {
            Ok(html) => {
                match report::final_metrics_table(dir) {
                    Ok(table) => print!("{table}"),
                    Err(report::ReportError::NoEvaluation { .. }) => {
                        println!("{}: no evaluation yet", dir.display())
                    }
                    Err(e) => return Err(e.into()),
                }
                println!("report: {}", html.display());
            }
            // With several runs, one bad directory does not stop the others; the exit code tells.
            Err(e) if runs.len() > 1 => {
                eprintln!("error: {e:#}");
                failed += 1;
            }
            Err(e) => return Err(e),
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} reports failed", runs.len());
        return Ok(1);
    }
    Ok(0)
}

fn compare(paths: &[PathBuf], out: Option<PathBuf>, rank_by: Option<&str>) -> Result<i32> {
    let runs = expand(paths)?;
    let out = match out {
        Some(o) => o,
        None => {
            let parent =
                runs[0].parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let now =
                SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            parent.join(format!("compare-{}", report::utc_stamp(now)))
        }
    };
    let html = report::compare(&runs, &out, rank_by)?;
    let md = std::fs::read_to_string(out.join("compare.md"))
        .with_context(|| format!("reading {}", out.join("compare.md").display()))?;
    print!("{md}");
    println!("\ncompare: {}", html.display());
    Ok(0)
}
