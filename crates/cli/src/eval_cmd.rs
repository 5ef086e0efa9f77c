//! `eval` (any checkpoint, the zero-shot base included) and `export` (merge adapters into an HF directory).
use crate::options::{at_least_one, setting};
use anyhow::{bail, Context, Result};
use metrics::MeteorMode;
use paligemma::{DType, LoadOptions, SequenceLayout};
use std::path::{Path, PathBuf};
use trainer::config::EvalConfig;
use trainer::data::{self, Prompt};
use trainer::device::DeviceSpec;
use trainer::eval::{self, Evaluation};
use trainer::{checkpoint, strategy, ExperimentConfig};

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// A training run directory (its config and newest good checkpoint).
    #[arg(long, conflicts_with = "model")]
    pub run: Option<PathBuf>,
    /// An HF-format model directory (zero-shot, or with --adapter).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// A PEFT LoRA adapter directory to apply to --model.
    #[arg(long, requires = "model")]
    pub adapter: Option<PathBuf>,
    /// Dataset (default with --run: the run's dataset).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    #[arg(long, default_value = "test")]
    pub split: String,
    #[arg(long, default_value = "caption en")]
    pub prompt: String,
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    pub beams: usize,
    #[arg(long, default_value_t = 32, value_parser = at_least_one)]
    pub max_new_tokens: usize,
    /// Evaluate an evenly spaced subset of this many images.
    #[arg(long, value_parser = at_least_one)]
    pub limit: Option<usize>,
    /// f32, bf16 or f16 (default: as stored).
    #[arg(long)]
    pub dtype: Option<String>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// auto, exact, approx or skip.
    #[arg(long, default_value = "auto")]
    pub meteor: String,
    /// Write the predictions (COCO results JSON) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value_t = 16, value_parser = at_least_one)]
    pub batch_size: usize,
}

fn eval_cfg(args: &EvalArgs) -> Result<EvalConfig> {
    Ok(EvalConfig {
        num_beams: args.beams,
        max_new_tokens: args.max_new_tokens,
        batch_size: args.batch_size,
        meteor: setting::<MeteorMode>("--meteor", &args.meteor)?,
        ..Default::default()
    })
}

pub fn run_eval(args: &EvalArgs) -> Result<i32> {
    paligemma::allocator::for_captioning();
    let ecfg = eval_cfg(args)?;
    let evaluator = metrics::Evaluator::new(eval::metrics_options(&ecfg));
    let out = if let Some(run) = &args.run {
        let mut sets = vec![];
        if let Some(d) = &args.dataset {
            sets.push(format!("data.path=\"{}\"", d.display()));
        }
        sets.push(format!("model.device=\"{}\"", args.device));
        let cfg = ExperimentConfig::load(&run.join("config.toml"), &sets)?;
        let ds = data::load_dataset(&cfg)?;
        let built = strategy::build(&cfg, &[], run)?;
        let (dir, state) =
            checkpoint::latest_good(&run.join("checkpoints"))?.with_context(|| {
                format!("no good checkpoint in {}", run.join("checkpoints").display())
            })?;
        checkpoint::load(&dir, &built.trainables)?;
        eprintln!("evaluating {} at step {}", run.display(), state.step);
        let pre = data::preprocessor(&cfg, built.model.config.vision_config.image_size);
        let prompt = Prompt::new(&built.tokenizer, &cfg.data.prefix)?;
        let soft = built.soft.as_ref().map(|s| s.vectors.shallow_clone());
        let ev = Evaluation {
            model: &built.model,
            tokenizer: &built.tokenizer,
            layout: &built.layout,
            prompt: &prompt,
            soft: soft.as_ref(),
            pre: &pre,
            device: built.device,
            cfg: &ecfg,
            evaluator: &evaluator,
            group: None,
        };
        ev.run(&ds, &args.split, args.limit)?
    } else {
        let model = args.model.as_ref().context("give --run <dir> or --model <dir or hub id>")?;
        let model_dir = &trainer::strategy::model_dir(model)?;
        let dataset = args.dataset.as_ref().context("--model needs --dataset")?;
        let dtype = args.dtype.as_deref().map(|w| setting::<DType>("--dtype", w)).transpose()?;
        let device = setting::<DeviceSpec>("--device", &args.device)?.resolve()?;
        let mut loaded = paligemma::load(model_dir, LoadOptions { dtype, device })?;
        let adapter_vs = tch::nn::VarStore::new(device);
        if let Some(a) = &args.adapter {
            let lc = trainer::peft::load_adapter(a, &mut loaded.model, &adapter_vs)?;
            eprintln!("adapter {}: LoRA r={} alpha={}", a.display(), lc.r, lc.lora_alpha);
        }
        let ds = rsicd_data::Dataset::load(dataset, None)?;
        let t = &loaded.tokenizer;
        let layout = SequenceLayout::for_model(&loaded.model.config, t);
        let pre = rsicd_data::ImagePreprocessor::new(
            loaded.model.config.vision_config.image_size as u32,
            rsicd_data::Resample::Bicubic,
        );
        let prompt = Prompt::new(t, &args.prompt)?;
        let ev = Evaluation {
            model: &loaded.model,
            tokenizer: t,
            layout: &layout,
            prompt: &prompt,
            soft: None,
            pre: &pre,
            device,
            cfg: &ecfg,
            evaluator: &evaluator,
            group: None,
        };
        ev.run(&ds, &args.split, args.limit)?
    };
    for (name, value) in &out.metrics {
        println!("{name:<18} {:>8.2}", value * 100.0);
    }
    println!("{:<18} {:>8.3}  ({} images)", "diversity", out.diversity, out.predictions.len());
    if let Some(path) = &args.out {
        let preds: Vec<serde_json::Value> = out
            .predictions
            .iter()
            .map(|(id, c)| serde_json::json!({"image_id": id, "caption": c}))
            .collect();
        std::fs::write(path, serde_json::to_vec_pretty(&preds)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("predictions: {}", path.display());
    }
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Training run directory.
    #[arg(long)]
    pub run: PathBuf,
    /// Output HF-format directory (adapters merged into the base): new or empty, and never one the run reads.
    #[arg(long)]
    pub to: PathBuf,
    /// Export into a non-empty --to, replacing its model.safetensors, config.json and tokenizer.json.
    #[arg(long)]
    pub overwrite: bool,
}

/// The directories the run reads: its config's inputs, the run itself and the image folder it trained on.
fn run_inputs(cfg: &ExperimentConfig, run: &Path) -> Vec<(String, PathBuf)> {
    let mut inputs = cfg.input_dirs();
    inputs.push(("the run directory (--run)".into(), run.to_path_buf()));
    let info: Option<serde_json::Value> =
        std::fs::read(run.join("run.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(root) = info.as_ref().and_then(|v| v["image_root"].as_str()) {
        inputs.push(("the run's image folder".into(), PathBuf::from(root)));
    }
    inputs
}

pub fn run_export(args: &ExportArgs) -> Result<i32> {
    let cfg = ExperimentConfig::load(&args.run.join("config.toml"), &[])?;
    if trainer::what_trains::WhatTrains::of(&cfg).soft_prompt.is_some() {
        bail!("a soft prompt is not part of an HF PaliGemma checkpoint; evaluate or caption with `eval --run {}`", args.run.display());
    }
    let tokenizer = match (cfg.model.source, &cfg.model.path, &cfg.model.scratch) {
        (trainer::config::ModelSource::Hf, Some(base), _) => base.join("tokenizer.json"),
        (trainer::config::ModelSource::Scratch, _, Some(s)) => {
            s.tokenizer.clone().unwrap_or_else(|| args.run.join("tokenizer.json"))
        }
        (trainer::config::ModelSource::Custom, _, _) => {
            bail!("custom compositions are exported with their run directory only")
        }
        _ => bail!("{}: the config names no base model", args.run.join("config.toml").display()),
    };
    // Before anything is loaded or written: never into (or around) what the run reads, never over files
    // without --overwrite.
    trainer::peft::check_export_target(&args.to, &run_inputs(&cfg, &args.run), args.overwrite)
        .map_err(|e| anyhow::anyhow!("--to {e}"))?;
    let mut built = strategy::build(&cfg, &[], &args.run)?;
    let (dir, state) = checkpoint::latest_good(&args.run.join("checkpoints"))?
        .with_context(|| format!("no good checkpoint in {}", args.run.display()))?;
    checkpoint::load(&dir, &built.trainables)?;
    trainer::peft::export_merged(&mut built.model, &built.base_vs, &tokenizer, &args.to)?;
    println!(
        "exported step {} of {} to {} (adapters merged)",
        state.step,
        args.run.display(),
        args.to.display()
    );
    Ok(0)
}
