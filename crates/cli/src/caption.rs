//! `caption`: load an HF-format model directory and caption images.
use anyhow::{Context, Result};
use paligemma::{generate, DType, GenerationConfig, LoadOptions, SequenceLayout};
use rsicd_data::{ImagePreprocessor, Resample};
use std::path::PathBuf;
use tch::Tensor;

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
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: usize,
    /// Beam width (1 = greedy).
    #[arg(long, default_value_t = 1)]
    pub beams: usize,
    /// f32, bf16 or f16 (default: the checkpoint's dtype).
    #[arg(long)]
    pub dtype: Option<String>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// bicubic (as the HF processor) or bilinear (antialiased, as big_vision).
    #[arg(long, default_value = "bicubic")]
    pub resample: String,
    /// One JSON object per image: {"image", "caption", "token_ids"}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<i32> {
    let dtype = args.dtype.as_deref().map(DType::parse).transpose()?;
    let device = crate::device::parse(&args.device)?;
    let resample = match args.resample.as_str() {
        "bicubic" => Resample::Bicubic,
        "bilinear" => Resample::BilinearAntialias,
        other => anyhow::bail!("unknown --resample `{other}`: expected bicubic or bilinear"),
    };
    let loaded = paligemma::load(&args.model, LoadOptions { dtype, device })
        .with_context(|| format!("loading the model from {}", args.model.display()))?;
    let (model, tok) = (&loaded.model, &loaded.tokenizer);
    let size = model.config.vision_config.image_size as u32;
    let pre = ImagePreprocessor::new(size, resample);
    let layout = SequenceLayout::new(
        model.config.num_image_tokens() as usize,
        tok.image_id,
        tok.bos_id,
        tok.eos_id,
        tok.pad_id,
    );
    let (prefix, sep) = tok.encode_prompt(&args.prompt)?;
    let prompt = layout.build(&prefix, &sep, None)?;
    let cfg = GenerationConfig {
        max_new_tokens: args.max_new_tokens,
        num_beams: args.beams.max(1),
        ..Default::default()
    };
    for chunk in args.image.chunks(args.batch_size.max(1)) {
        let mut pixels = Vec::with_capacity(chunk.len() * pre.len());
        for path in chunk {
            pixels.extend(
                pre.load(path).with_context(|| format!("reading image {}", path.display()))?,
            );
        }
        let pixels =
            Tensor::from_slice(&pixels).view([chunk.len() as i64, 3, size as i64, size as i64]);
        let prompts = vec![prompt.clone(); chunk.len()];
        let ids = generate(model, &prompts, &pixels, None, &cfg);
        for (path, ids) in chunk.iter().zip(ids) {
            let caption = tok.decode(&ids, true)?;
            if args.json {
                let line = serde_json::json!({"image": path, "caption": caption, "token_ids": ids});
                println!("{line}");
            } else {
                println!("{}\t{}", path.display(), caption);
            }
        }
    }
    Ok(0)
}
