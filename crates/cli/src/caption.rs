//! `caption`: load an HF-format model directory (optionally with a PEFT LoRA adapter, applied unmerged) and caption
//! images: files, directories and glob patterns (`caption_inputs`), in batches, to stdout or to an `--output` file
//! in JSONL, CSV or COCO-results JSON that keeps what a stopped run finished and that `--resume` continues
//! (`caption_output`).
//!
//! SIGINT, SIGTERM and SIGHUP stop the run at the next batch boundary: the finished captions are printed or
//! written whole, and the process exits with 128 + the signal number (a second signal stops it at once; the
//! journal of `--output` then still holds every finished batch).
use crate::caption_inputs;
use crate::caption_output::{Output, Record};
use crate::options::{at_least_one, setting};
use anyhow::{Context, Result};
use paligemma::{
    generate, DType, GenerationConfig, LoadOptions, PaliGemma, PaliGemmaTokenizer, Sequence,
    SequenceLayout,
};
use rsicd_data::{ImagePreprocessor, Resample};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use tch::Tensor;
use trainer::device::DeviceSpec;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model directory (config.json, model.safetensors or shards with their index, tokenizer.json), or a Hugging
    /// Face hub id such as google/paligemma-3b-mix-224, found in the HF cache or downloaded (docs/hub.md).
    #[arg(long)]
    pub model: PathBuf,
    /// A PEFT LoRA adapter directory (adapter_config.json, adapter_model.safetensors) to apply, unmerged.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Images to caption: files (JPEG, PNG, TIFF, WebP), directories (searched recursively for image
    /// extensions) and quoted glob patterns (`*`, `?`, `**`).
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
    /// One JSON object per image on stdout: {"image", "caption", "token_ids"}.
    #[arg(long, conflicts_with = "output")]
    pub json: bool,
    /// Write the captions to this file instead of stdout: .jsonl (as --json), .csv (image,caption) or .json
    /// (COCO results), replaced atomically; a stopped run keeps what it finished.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Continue an existing --output: caption only the images it does not hold yet.
    #[arg(long, requires = "output", conflicts_with = "overwrite")]
    pub resume: bool,
    /// Replace an existing --output.
    #[arg(long, requires = "output")]
    pub overwrite: bool,
}

pub fn run(args: &Args) -> Result<i32> {
    paligemma::allocator::for_captioning();
    let dtype = args.dtype.as_deref().map(|w| setting::<DType>("--dtype", w)).transpose()?;
    let device = setting::<DeviceSpec>("--device", &args.device)?;
    let resample = setting::<Resample>("--resample", &args.resample)?;
    // Everything the user gave is checked before the model is loaded (which may take minutes).
    if let Some(dir) = &args.adapter {
        if !dir.join("adapter_config.json").is_file() {
            anyhow::bail!(
                "--adapter {}: no adapter_config.json there (expected a PEFT LoRA adapter directory: \
                 adapter_config.json, adapter_model.safetensors)",
                dir.display()
            );
        }
    }
    let inputs = caption_inputs::expand(&args.image)?;
    if inputs.duplicates > 0 {
        eprintln!("note: {} repeated image path(s) are captioned once", inputs.duplicates);
    }
    let mut output =
        args.output.as_deref().map(|p| Output::open(p, args.overwrite, args.resume)).transpose()?;
    let total = inputs.images.len();
    let todo: Vec<PathBuf> = match &output {
        Some(out) => {
            out.check_names(&inputs.images)?;
            inputs.images.into_iter().filter(|p| !out.has(p)).collect()
        }
        None => inputs.images,
    };
    if let Some(out) = output.as_ref().filter(|_| !todo.is_empty() && todo.len() < total) {
        eprintln!(
            "resuming: {} of {total} images are in {} already; captioning the other {}",
            total - todo.len(),
            out.path.display(),
            todo.len()
        );
    }
    if todo.is_empty() {
        if let Some(out) = output {
            let path = out.path.clone();
            let n = out.finish()?;
            eprintln!(
                "nothing to caption: {} holds all {total} images ({})",
                path.display(),
                plural(n, "caption")
            );
        }
        return Ok(0);
    }

    interrupt::install("stopping after the current batch, keeping the finished captions");
    let device = device.resolve()?;
    let model_dir = trainer::strategy::model_dir(&args.model)?;
    let mut loaded = paligemma::load(&model_dir, LoadOptions { dtype, device })
        .with_context(|| format!("loading the model from {}", model_dir.display()))?;
    let adapter_vs = tch::nn::VarStore::new(device);
    if let Some(dir) = &args.adapter {
        let lc = trainer::peft::load_adapter(dir, &mut loaded.model, &adapter_vs)
            .with_context(|| format!("applying the adapter to {}", args.model.display()))?;
        eprintln!("adapter {}: LoRA r={} alpha={} (unmerged)", dir.display(), lc.r, lc.lora_alpha);
    }
    let (model, tok) = (&loaded.model, &loaded.tokenizer);
    let size = model.config.vision_config.image_size as u32;
    let layout = SequenceLayout::for_model(&model.config, tok);
    let (prefix, sep) = tok.encode_prompt(&args.prompt)?;
    let captioner = Captioner {
        model,
        tok,
        pre: ImagePreprocessor::new(size, resample),
        prompt: layout.build(&prefix, &sep, None)?,
        cfg: GenerationConfig {
            max_new_tokens: args.max_new_tokens,
            num_beams: args.beams,
            ..Default::default()
        },
    };

    let progress = progress_bar(todo.len(), !args.json && std::io::stderr().is_terminal());
    let (mut captioned, mut failed, mut stop) = (0, 0, None);
    let outcome = (|| -> Result<()> {
        for chunk in todo.chunks(args.batch_size) {
            if let Some(signal) = interrupt::requested() {
                stop = Some(signal);
                break;
            }
            let records = captioner.batch(chunk, &progress, &mut failed)?;
            captioned += records.len();
            match &mut output {
                Some(out) => out.append(records)?,
                None => progress.suspend(|| {
                    for r in &records {
                        if args.json {
                            println!("{}", r.json_line());
                        } else {
                            println!("{}\t{}", r.image, r.caption);
                        }
                    }
                }),
            }
            progress.inc(chunk.len() as u64);
        }
        Ok(())
    })();
    progress.finish_and_clear();
    // What this run finished is written whatever stopped it (the end, a signal, an error).
    let written = match output {
        Some(out) => {
            let path = out.path.clone();
            match (out.finish(), &outcome) {
                (Ok(n), _) => Some((path, n)),
                (Err(e), Ok(())) => return Err(e),
                (Err(e), Err(_)) => {
                    eprintln!("error: {e:#}");
                    None
                }
            }
        }
        None => None,
    };
    let kept = |what: &str| match &written {
        Some((path, n)) => format!("; {} holds {}{what}", path.display(), plural(*n, "caption")),
        None => String::new(),
    };
    if let Err(e) = outcome {
        if captioned > 0 {
            eprintln!(
                "note: {captioned} image(s) were captioned before the error{}",
                kept(" (--resume continues)")
            );
        }
        return Err(e);
    }
    let s = if todo.len() == 1 { "" } else { "s" };
    let unreadable = if failed > 0 {
        format!(", {failed} could not be read (see above)")
    } else {
        String::new()
    };
    if let Some(signal) = stop {
        eprintln!(
            "{}: stopped after {captioned} of {} image{s}{unreadable}{}",
            signal.name(),
            todo.len(),
            kept(" (--resume captions the rest)")
        );
        return Ok(signal.exit_code());
    }
    if failed > 0 {
        let rest = if failed < todo.len() { "; the others were captioned" } else { "" };
        anyhow::bail!(
            "{failed} of {} image{s} could not be read (see above){rest}{}",
            todo.len(),
            kept("")
        );
    }
    if let Some((path, n)) = &written {
        eprintln!(
            "captioned {}; {} holds {}",
            plural(captioned, "image"),
            path.display(),
            plural(*n, "caption")
        );
    }
    Ok(0)
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// The model and settings every batch uses.
struct Captioner<'a> {
    model: &'a PaliGemma,
    tok: &'a PaliGemmaTokenizer,
    pre: ImagePreprocessor,
    prompt: Sequence,
    cfg: GenerationConfig,
}

impl Captioner<'_> {
    /// Captions one batch. An unreadable image is reported and counted in `failed`, and the others are still
    /// captioned.
    fn batch(
        &self,
        chunk: &[PathBuf],
        progress: &indicatif::ProgressBar,
        failed: &mut usize,
    ) -> Result<Vec<Record>> {
        let mut pixels = Vec::with_capacity(chunk.len() * self.pre.len());
        let mut paths: Vec<&Path> = Vec::with_capacity(chunk.len());
        for (path, loaded) in chunk.iter().zip(self.pre.load_batch(chunk)) {
            match loaded {
                Ok(p) => {
                    pixels.extend(p);
                    paths.push(path);
                }
                Err(e) => {
                    progress.suspend(|| eprintln!("error: reading image {e}"));
                    *failed += 1;
                }
            }
        }
        if paths.is_empty() {
            return Ok(vec![]);
        }
        let size = self.pre.size as i64;
        let pixels = Tensor::from_slice(&pixels).view([paths.len() as i64, 3, size, size]);
        let prompts = vec![self.prompt.clone(); paths.len()];
        let ids = generate(self.model, &prompts, &pixels, None, &self.cfg);
        paths
            .into_iter()
            .zip(ids)
            .map(|(path, ids)| {
                Ok(Record {
                    image: path.display().to_string(),
                    caption: self.tok.decode(&ids, true)?,
                    token_ids: Some(ids),
                })
            })
            .collect()
    }
}

/// Images done, rate and time left on stderr, drawn only on a terminal (never under `--json`).
fn progress_bar(total: usize, visible: bool) -> indicatif::ProgressBar {
    if !visible {
        return indicatif::ProgressBar::hidden();
    }
    let style = indicatif::ProgressStyle::with_template(
        "  caption {bar:30} {pos}/{len} images | {per_sec} | {eta} left",
    );
    indicatif::ProgressBar::new(total as u64).with_style(style.expect("template"))
}
