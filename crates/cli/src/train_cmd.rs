//! `train`, `sweep` and `demo`.
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use trainer::{ExperimentConfig, TrainOptions, TrainSummary};

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Experiment file (TOML). Not needed with --resume (the run's own config.toml is used).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override any key: --set optim.lr=3e-5 --set lora.r=16
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Print the trainable-parameter table and the memory plan, then exit.
    #[arg(long)]
    pub dry_run: bool,
    /// Continue a run directory from its newest good checkpoint.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Do not check every dataset image before step 1 (huge sets known to be good).
    #[arg(long)]
    pub skip_image_check: bool,
    /// Several ranks (torchrun, `cargo xtask train --nproc`): seconds a rank waits for the others before it stops
    /// with an error.
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    pub dist_timeout: u64,
}

pub fn load_config(args: &TrainArgs) -> Result<ExperimentConfig> {
    let path = match (&args.resume, &args.config) {
        (Some(run), _) => run.join("config.toml"),
        (None, Some(c)) => c.clone(),
        (None, None) => bail!("give --config <experiment.toml> (or --resume <run dir>)"),
    };
    Ok(ExperimentConfig::load(&path, &args.set)?)
}

pub fn print_summary(s: &TrainSummary) {
    if let (Some(a), Some(b)) = (s.first_loss, s.last_loss) {
        println!("steps {}: loss {a:.4} -> {b:.4}", s.steps);
    }
    let mut rows: Vec<(&str, &[(String, f64)])> = vec![];
    if let Some(m) = &s.baseline_metrics {
        rows.push(("blind baseline", m));
    }
    if let Some(m) = &s.before_metrics {
        rows.push(("before training", m));
    }
    if !s.final_metrics.is_empty() {
        rows.push(("after training", &s.final_metrics));
    }
    if let Some((_, first)) = rows.first() {
        print!("{:<18}", "");
        for (n, _) in first.iter() {
            print!(" {n:>16}");
        }
        println!();
        for (label, m) in &rows {
            print!("{label:<18}");
            for (_, v) in m.iter() {
                print!(" {:>16.2}", v * 100.0);
            }
            println!();
        }
        println!("(metrics x100)");
    }
    println!("run: {}", s.run_dir.display());
    if let Some(r) = &s.report {
        println!("report: {}", r.display());
    }
}

pub fn run_train(args: &TrainArgs) -> Result<i32> {
    let cfg = load_config(args)?;
    let opts = TrainOptions {
        runs_dir: args.runs_dir.clone(),
        resume: args.resume.clone(),
        dry_run: args.dry_run,
        quiet: args.quiet,
        skip_image_check: args.skip_image_check,
        dist_timeout: Some(std::time::Duration::from_secs(args.dist_timeout)),
    };
    let summary = trainer::train(&cfg, &opts)?;
    if !args.dry_run && summary.rank == 0 {
        print_summary(&summary);
    }
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct SweepArgs {
    #[arg(long)]
    pub config: PathBuf,
    /// `key=v1,v2,...`; several --grid flags give their cartesian product.
    #[arg(long, required = true)]
    pub grid: Vec<String>,
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Metric to rank by (CIDEr, Bleu_4, ...).
    #[arg(long, default_value = "CIDEr")]
    pub rank_by: String,
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    #[arg(long)]
    pub quiet: bool,
}

pub fn run_sweep(args: &SweepArgs) -> Result<i32> {
    let mut combos: Vec<Vec<String>> = vec![vec![]];
    for g in &args.grid {
        let (key, values) =
            g.split_once('=').with_context(|| format!("--grid `{g}`: expected key=v1,v2"))?;
        let values: Vec<&str> =
            values.split(',').map(str::trim).filter(|v| !v.is_empty()).collect();
        if values.is_empty() {
            bail!("--grid `{g}` has no values");
        }
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| [c.clone(), vec![format!("{key}={v}")]].concat())
            })
            .collect();
    }
    let base = ExperimentConfig::load(&args.config, &args.set)?;
    println!("sweep: {} runs", combos.len());
    let mut runs = vec![];
    for (i, combo) in combos.iter().enumerate() {
        let mut sets = args.set.clone();
        sets.extend(combo.iter().cloned());
        let label: String =
            combo.iter().map(|s| s.replace(['.', '='], "_")).collect::<Vec<_>>().join("-");
        sets.push(format!("name=\"{}-{label}\"", base.name));
        let cfg = ExperimentConfig::load(&args.config, &sets)?;
        println!("[{}/{}] {}", i + 1, combos.len(), combo.join(" "));
        let summary = trainer::train(
            &cfg,
            &TrainOptions {
                runs_dir: args.runs_dir.clone(),
                quiet: args.quiet,
                ..Default::default()
            },
        )?;
        runs.push(summary.run_dir);
    }
    let (stamp, _) = trainer::run::now();
    let out = args.runs_dir.join(format!("sweep-{}-{stamp}", base.name));
    let html = report::compare(&runs, &out, Some(&args.rank_by))?;
    if let Ok(md) = std::fs::read_to_string(out.join("compare.md")) {
        println!("{md}");
    }
    println!("summary: {}", html.display());
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// The demo experiment (a small PaliGemma-architecture model trained from scratch).
    #[arg(long, default_value = "experiments/demo.toml")]
    pub config: PathBuf,
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Synthetic images to generate (split 80/10/10).
    #[arg(long, default_value_t = 1200)]
    pub images: usize,
    #[arg(long, default_value_t = 48)]
    pub image_size: u32,
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    #[arg(long)]
    pub quiet: bool,
}

/// The synthetic sample, generated once per (size, count) and reused.
fn synth_dataset(n: usize, size: u32) -> Result<PathBuf> {
    let dir = Path::new("data/cache").join(format!("synth-{size}px-{n}-seed0"));
    let json = dir.join("dataset_synth.json");
    if !json.exists() {
        eprintln!("generating the synthetic sample: {n} images of {size} px in {}", dir.display());
        rsicd_data::synth::generate(&dir, n, 0, size)?;
    }
    Ok(json)
}

pub fn run_demo(args: &DemoArgs) -> Result<i32> {
    let started = std::time::Instant::now();
    let data = synth_dataset(args.images, args.image_size)?;
    let mut sets = vec![format!("data.path=\"{}\"", data.display())];
    sets.extend(args.set.iter().cloned());
    let cfg = ExperimentConfig::load(&args.config, &sets)?;
    let summary = trainer::train(
        &cfg,
        &TrainOptions { runs_dir: args.runs_dir.clone(), quiet: args.quiet, ..Default::default() },
    )?;
    println!();
    print_summary(&summary);
    let cider = |m: &Option<Vec<(String, f64)>>| {
        m.as_ref().and_then(|m| m.iter().find(|(n, _)| n == "CIDEr").map(|x| x.1))
    };
    let (after, base) =
        (cider(&Some(summary.final_metrics.clone())), cider(&summary.baseline_metrics));
    if let (Some(a), Some(b)) = (after, base) {
        let ok = a >= 2.0 * b;
        println!(
            "CIDEr {:.1} after training vs {:.1} for the blind baseline: {:.1}x ({})",
            a * 100.0,
            b * 100.0,
            a / b.max(1e-9),
            if ok { "clearly better" } else { "NOT twice the baseline" }
        );
        println!("demo finished in {:.0} s", started.elapsed().as_secs_f64());
        return Ok(if ok { 0 } else { 2 });
    }
    Ok(0)
}
