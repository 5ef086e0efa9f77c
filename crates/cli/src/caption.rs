//! `caption`: load an HF-format model directory and caption images.
use crate::options::{at_least_one, setting};
use anyhow::{Context, Result};
use paligemma::{generate, DType, GenerationConfig, LoadOptions, SequenceLayout};
use rsicd_data::{ImagePreprocessor, Resample};
use std::path::PathBuf;
use tch::Tensor;
use trainer::device::DeviceSpec;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model directory: config.json, model.safetensors (or sharded with its index), tokenizer.json.
    #[arg(long)]
    pub model: PathBuf,
    /// Images to caption (JPEG, PNG, TIFF).
    #[arg(long, required = true, num_args = 1..)]
    pub image: Vec<PathBuf>,
    /// Text prefix (PaliGemma's task prompt).
    #[arg(long, default_value = "caption en")]
    pub prompt: String,
    #[arg(long, default_value_t = 32, value_parser = at_least_one)]
    pub max_new_tokens: usize,
    /// Beam width (1 = greedy).
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    pub beams: usize,
    /// f32, bf16 or f16 (default: the checkpoint's dtype).
    #[arg(long)]
    pub dtype: Option<String>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8, value_parser = at_least_one)]
    pub batch_size: usize,
    /// bicubic (as the HF processor) or bilinear (antialiased, as big_vision).
    #[arg(long, default_value = "bicubic")]
    pub resample: String,
    /// One JSON object per image: {"image", "caption", "token_ids"}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<i32> {
    let dtype = args.dtype.as_deref().map(|w| setting::<DType>("--dtype", w)).transpose()?;
    let device = setting::<DeviceSpec>("--device", &args.device)?.resolve()?;
    let resample = setting::<Resample>("--resample", &args.resample)?;
    let loaded = paligemma::load(&args.model, LoadOptions { dtype, device })
        .with_context(|| format!("loading the model from {}", args.model.display()))?;
    let (model, tok) = (&loaded.model, &loaded.tokenizer);
    let size = model.config.vision_config.image_size as u32;
    let pre = ImagePreprocessor::new(size, resample);
    let layout = SequenceLayout::for_model(&model.config, tok);
    let (prefix, sep) = tok.encode_prompt(&args.prompt)?;
    let prompt = layout.build(&prefix, &sep, None)?;
    let cfg = GenerationConfig {
        max_new_tokens: args.max_new_tokens,
        num_beams: args.beams,
        ..Default::default()
    };
    // An unreadable image is reported and skipped: every readable one is still captioned (its batch included).
    let mut failed = 0;
    for chunk in args.image.chunks(args.batch_size) {
        let mut pixels = Vec::with_capacity(chunk.len() * pre.len());
        let mut paths = Vec::with_capacity(chunk.len());
        for (path, loaded) in chunk.iter().zip(pre.load_batch(chunk)) {
            match loaded {
                Ok(p) => {
                    pixels.extend(p);
                    paths.push(path);
                }
                Err(e) => {
                    eprintln!("error: reading image {e}");
                    failed += 1;
                }
            }
        }
        if paths.is_empty() {
            continue;
        }
        let pixels =
            Tensor::from_slice(&pixels).view([paths.len() as i64, 3, size as i64, size as i64]);
        let prompts = vec![prompt.clone(); paths.len()];
        let ids = generate(model, &prompts, &pixels, None, &cfg);
        for (path, ids) in paths.into_iter().zip(ids) {
            let caption = tok.decode(&ids, true)?;
            if args.json {
                let line = serde_json::json!({"image": path, "caption": caption, "token_ids": ids});
                println!("{line}");
            } else {
                println!("{}\t{}", path.display(), caption);
            }
        }
    }
    if failed > 0 {
        let total = args.image.len();
        let rest = if failed < total { "; the others were captioned" } else { "" };
        let s = if total == 1 { "" } else { "s" };
        anyhow::bail!("{failed} of {total} image{s} could not be read (see above){rest}");
    }
    Ok(0)
}
