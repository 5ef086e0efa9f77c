//! The shared inputs of a case, written once by the orchestrator and read by both workers: the batch (token ids,
//! segment ids, labels, pixels) and the initial trainables (LoRA A and B, soft-prompt vectors). Sharing them, rather
//! than letting each side draw its own, is what makes equal losses a real check: B is non-zero, so even the first
//! loss goes through the adapters, and the later losses through identical updates.
use anyhow::{Context, Result};
use paligemma::{
    collate, PadSide, PaliGemmaConfig, PaliGemmaTokenizer, Segment, Sequence, SequenceLayout,
    SoftPromptPlacement,
};
use std::path::Path;
use tch::{Kind, Tensor};

/// PyTorch's `ignore_index` (labels of unsupervised positions).
const IGNORE: i64 = -100;

/// Captions of the shape RSICD has (one to three clauses), so a batch of 8 has ragged lengths and padding.
const CAPTIONS: [&str; 8] = [
    "many buildings and green trees are around a playground",
    "a river goes through the forest with a bridge over it",
    "several storage tanks are near a road",
    "two planes are parked at the airport beside the runway and some cars are in the parking lot",
    "a large number of white houses are in a dense residential area",
    "the square is surrounded by some green trees and buildings",
    "some boats are in the harbor near the coast",
    "the farmland is divided into many green and brown fields",
];

/// Prompts for generation; different lengths so a batch is left-padded.
const PROMPTS: [&str; 3] = ["caption en", "describe the image", "caption es"];

pub fn layout(cfg: &PaliGemmaConfig, tok: &PaliGemmaTokenizer, soft_len: usize) -> SequenceLayout {
    let mut l = SequenceLayout::for_model(cfg, tok);
    if soft_len > 0 {
        l.soft_prompt = Some((soft_len, SoftPromptPlacement::AfterImage));
    }
    l
}

fn pixels(cfg: &PaliGemmaConfig, batch: usize, seed: i64) -> Tensor {
    tch::manual_seed(seed);
    let s = cfg.vision_config.image_size;
    Tensor::rand([batch as i64, 3, s, s], (Kind::Float, tch::Device::Cpu)) * 2.0 - 1.0
}

fn load_meta(model_dir: &Path) -> Result<(PaliGemmaConfig, PaliGemmaTokenizer)> {
    let cfg = PaliGemmaConfig::from_file(&model_dir.join("config.json"))?;
    let tok = PaliGemmaTokenizer::from_file(&model_dir.join("tokenizer.json"), &cfg)?;
    Ok((cfg, tok))
}

/// A right-padded training batch of `batch` captions with the "caption en" prompt (and `soft_len` soft slots).
pub fn write_train(
    model_dir: &Path,
    batch: usize,
    soft_len: usize,
    seed: i64,
    out: &Path,
) -> Result<i64> {
    let (cfg, tok) = load_meta(model_dir)?;
    let l = layout(&cfg, &tok, soft_len);
    let (prefix, sep) = tok.encode_prompt("caption en")?;
    let seqs: Vec<Sequence> = (0..batch)
        .map(|i| {
            let caption = tok.encode(CAPTIONS[i % CAPTIONS.len()])?;
            Ok(l.build(&prefix, &sep, Some(&caption))?)
        })
        .collect::<Result<_>>()?;
    let b = collate(&seqs, PadSide::Right, tok.pad_id);
    let len = b.ids.size()[1];
    write(
        out,
        &[
            ("input_ids", b.ids),
            ("segments", b.segments),
            ("labels", b.labels),
            ("pixel_values", pixels(&cfg, batch, seed)),
        ],
    )?;
    Ok(len)
}

/// Left-padded generation prompts (no suffix).
pub fn write_generate(model_dir: &Path, batch: usize, seed: i64, out: &Path) -> Result<()> {
    let (cfg, tok) = load_meta(model_dir)?;
    let l = layout(&cfg, &tok, 0);
    let seqs: Vec<Sequence> = (0..batch)
        .map(|i| {
            let (prefix, sep) = tok.encode_prompt(PROMPTS[i % PROMPTS.len()])?;
            Ok(l.build(&prefix, &sep, None)?)
        })
        .collect::<Result<_>>()?;
    let b = collate(&seqs, PadSide::Left, tok.pad_id);
    write(
        out,
        &[
            ("input_ids", b.ids),
            ("segments", b.segments),
            ("pixel_values", pixels(&cfg, batch, seed)),
        ],
    )
}

/// Initial trainables by our variable names: LoRA A ~ N(0, 1/in) and B ~ N(0, 0.02²) on the Gemma q/k/v/o of every
/// layer (rank `r`), or `soft_len` soft-prompt vectors ~ N(0, 0.5²).
pub fn write_init(
    cfg: &PaliGemmaConfig,
    strategy: &str,
    r: i64,
    soft_len: usize,
    seed: i64,
    out: &Path,
) -> Result<()> {
    tch::manual_seed(seed);
    let f32 = (Kind::Float, tch::Device::Cpu);
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    match strategy {
        "lora" => {
            let glob = "language_model.model.layers.*.self_attn.{q,k,v,o}_proj";
            for (name, shape) in cfg.parameter_shapes() {
                let Some(module) = name.strip_suffix(".weight") else { continue };
                if !trainer::glob::matches(glob, module) {
                    continue;
                }
                let (out_dim, in_dim) = (shape[0], shape[1]);
                let a = Tensor::randn([r, in_dim], f32) / (in_dim as f64).sqrt();
                let b = Tensor::randn([out_dim, r], f32) * 0.02;
                tensors.push((format!("{module}.lora_A.weight"), a));
                tensors.push((format!("{module}.lora_B.weight"), b));
            }
        }
        "soft_prompt" => {
            let d = cfg.text_config.hidden_size;
            tensors.push((
                "soft_prompt.weight".into(),
                Tensor::randn([soft_len as i64, d], f32) * 0.5,
            ));
        }
        _ => {}
    }
    let refs: Vec<(&str, Tensor)> =
        tensors.iter().map(|(n, t)| (n.as_str(), t.shallow_clone())).collect();
    write(out, &refs)
}

fn write(out: &Path, tensors: &[(&str, Tensor)]) -> Result<()> {
    let tmp = out.with_extension("safetensors.tmp");
    Tensor::write_safetensors(tensors, &tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// Segment ids back to `Segment` (prompts are rebuilt from the shared inputs by the Rust worker).
pub fn segment_of(id: i64) -> Option<Segment> {
    [Segment::Pad, Segment::Image, Segment::SoftPrompt, Segment::Prefix, Segment::Suffix]
        .into_iter()
        .find(|s| s.id() == id)
}

/// The unpadded prompt of each row of a left-padded batch.
pub fn prompts_from(ids: &Tensor, segments: &Tensor) -> Result<Vec<Sequence>> {
    let (b, _) = ids.size2()?;
    (0..b)
        .map(|i| {
            let row_ids: Vec<i64> = Vec::try_from(ids.get(i))?;
            let row_seg: Vec<i64> = Vec::try_from(segments.get(i))?;
            let mut s = Sequence { ids: vec![], segments: vec![], labels: vec![] };
            for (&id, &g) in row_ids.iter().zip(&row_seg) {
                let seg = segment_of(g).with_context(|| format!("unknown segment id {g}"))?;
                if seg != Segment::Pad {
                    s.ids.push(id);
                    s.segments.push(seg);
                    s.labels.push(IGNORE);
                }
            }
            Ok(s)
        })
        .collect()
}
