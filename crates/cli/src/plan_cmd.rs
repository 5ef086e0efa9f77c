//! `plan`: the memory plan of an experiment from configs alone, for a model that need not be on this machine
//! (the numbers quoted in experiments/ and docs/training.md come from here).
use anyhow::{bail, Result};
use paligemma::PaliGemmaConfig;
use std::path::PathBuf;
use trainer::config::{ModelSource, ProjectorKind};
use trainer::memory::{self, PlanInput};
use trainer::ExperimentConfig;

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    #[arg(long)]
    pub config: PathBuf,
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Use a released architecture instead of the model directory's config.json: a hub id such as
    /// paligemma2-10b-pt-448 or google/paligemma-3b-mix-224, or pt-224 / pt-448 / pt-896 for PaliGemma 1.
    #[arg(long)]
    pub architecture: Option<String>,
    /// Caption length in tokens (RSICD captions average about 20 Gemma tokens; 32 covers almost all).
    #[arg(long, default_value_t = 32, value_parser = crate::options::at_least_one)]
    pub text_len: usize,
    /// Data-parallel ranks (one per GPU): the plan is per rank, the global batch batch_size x ranks x grad_accum.
    #[arg(long, default_value_t = 1, value_parser = crate::options::at_least_one)]
    pub nproc: usize,
    /// GPU memory to compare against, in GiB.
    #[arg(long, default_value_t = 16.0, value_parser = positive_gib)]
    pub gpu_gib: f64,
}

fn positive_gib(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err("expected a finite number of GiB > 0".into()),
    }
}

/// A released architecture by hub id, or PaliGemma 1's `pt-224` / `pt-448` / `pt-896` shorthands.
fn architecture(name: &str) -> Result<PaliGemmaConfig> {
    let id =
        if name.starts_with("pt-") { format!("paligemma-3b-{name}") } else { name.to_string() };
    match PaliGemmaConfig::named(&id) {
        Some(cfg) => Ok(cfg),
        None => bail!(
            "unknown --architecture `{name}`: expected paligemma-3b-{{pt,mix}}-{{224,448,896}}, \
             paligemma2-{{3b,10b,28b}}-{{pt,mix}}-{{224,448,896}} (optionally with google/), or pt-224|pt-448|pt-896"
        ),
    }
}

pub fn run_plan(args: &PlanArgs) -> Result<i32> {
    let cfg = ExperimentConfig::load(&args.config, &args.set)?;
    let mut pcfg = match (args.architecture.as_deref(), cfg.model.source) {
        (Some(name), _) => architecture(name)?,
        (None, ModelSource::Hf) => {
            let path = cfg.model.path.clone().expect("validated");
            // A released hub id plans from its known config, without downloading the weights.
            match path.to_str().filter(|_| !path.is_dir()).and_then(PaliGemmaConfig::named) {
                Some(named) => named,
                None => {
                    let dir = trainer::strategy::model_dir(&path)?;
                    PaliGemmaConfig::from_file(&dir.join("config.json"))?
                }
            }
        }
        (None, _) => {
            bail!("give --architecture (e.g. pt-224 or paligemma2-3b-pt-448) for this model source")
        }
    };
    let kind = cfg.model.dtype.kind();
    let (mut base_params, mut base_bytes, mut trainable, extra, mut vision_trainable) =
        memory::analytic_sizes(&cfg, &pcfg, kind);
    if let (ModelSource::Custom, Some(c)) = (cfg.model.source, &cfg.model.custom) {
        if c.projector == ProjectorKind::Mlp {
            // the MLP projector replaces the linear one: in -> hidden -> out, trained in f32
            let (i, o) = (pcfg.vision_config.hidden_size, pcfg.text_config.hidden_size);
            let h = c.projector_hidden.unwrap_or(o);
            let (mlp, linear) = (i * h + h + h * o + o, i * o + o);
            base_params += mlp - linear;
            base_bytes += (mlp - linear) as f64 * 4.0;
            trainable += mlp - linear;
            vision_trainable = true;
        }
        pcfg.image_token_index = 0;
    }
    let soft = cfg.soft_prompt.as_ref().map_or(0, |s| s.length);
    let prompt_tokens = 1 + 3 + 1; // <bos>, "caption en" (2-3 tokens), "\\n"
    let seq_len = cfg
        .data
        .max_len
        .unwrap_or(pcfg.num_image_tokens() as usize + soft + prompt_tokens + args.text_len + 1);
    let plan = memory::plan(&PlanInput {
        config: &pcfg,
        act_bytes: memory::kind_bytes(kind),
        base_params,
        base_bytes,
        trainable_params: trainable,
        extra_params: extra,
        batch: cfg.train.batch_size,
        seq_len,
        supervised_tokens: cfg.train.batch_size * (args.text_len + 1),
        checkpointing: cfg.model.gradient_checkpointing,
        vision_trainable,
        optimizer_slots: trainer::session::optimizer_slots(&cfg),
        ranks: args.nproc,
    });
    println!(
        "{} on {}: {} params, {} trainable ({:.3}%), batch {}{}, {} tokens per sequence, base {}",
        cfg.name,
        pcfg.generation(),
        base_params + extra,
        trainable,
        100.0 * trainable as f64 / (base_params + extra) as f64,
        cfg.train.batch_size,
        match args.nproc {
            1 => String::new(),
            n => format!(
                " per rank x {n} ranks x {} accumulation = global batch {}",
                cfg.train.grad_accum,
                cfg.train.batch_size * n * cfg.train.grad_accum
            ),
        },
        seq_len,
        cfg.model.dtype
    );
    print!("{}", plan.table());
    let gib = plan.total() / (1u64 << 30) as f64;
    println!(
        "{:.1} GiB of {:.0} GiB: {} (plus the CUDA context, about 0.5 GiB, and allocator slack)",
        gib,
        args.gpu_gib,
        if gib + 0.5 <= args.gpu_gib { "fits" } else { "does NOT fit" }
    );
    Ok(0)
}
