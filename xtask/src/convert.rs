//! `cargo xtask convert --from <big_vision .npz> --to <dir>`: a big_vision PaliGemma 1 or PaliGemma 2 checkpoint
//! (Kaggle / GCS `paligemma-3b-pt-224.npz`, `paligemma2-3b-pt-224.b16.npz`, `.bf16.npz`, `.f16.npz`) to an HF-layout
//! directory (`model.safetensors` with the hub key names, `config.json`, optionally `tokenizer.json`).
//!
//! The mapping and reshapes follow transformers' own converters (`convert_paligemma_weights_to_hf.py`,
//! `convert_paligemma2_weights_to_hf.py`): scanned layer stacks are split per layer, Flax kernels transposed to
//! PyTorch's `[out, in]`, attention `DenseGeneral` kernels flattened head-major. The architecture is read off the
//! array shapes, so 224/448/896 checkpoints (and tiny test ones) need no flags; one with Gemma 2's post-attention and
//! post-MLP norm stacks is PaliGemma 2 and gets the Gemma-2 `config.json` transformers' converter writes (soft-capping
//! 50 / 30, window 4096), with big_vision's query scale (`head_dim`; `width / heads` for the 27B decoder, which the
//! shapes identify). The vocabulary is extended as HF's converter does: `<image>` gets id `V_bv` and the table is
//! padded to a multiple of 64 rows; the new rows (never looked up as text) are set to the mean embedding instead of
//! HF's random draws, so conversion is deterministic.
//!
//! Memory: one source array at a time (the largest is `gating_einsum`, 4.8 GB in f32); the output is streamed to
//! `model.safetensors.convert-tmp` and renamed when complete.
//!
//! Nothing the user owns is lost: every array's shape is checked before anything is written; a non-empty `--to` is
//! refused unless `--overwrite`, and even then only `model.safetensors`, `config.json` and `tokenizer.json` are
//! replaced, each written under a temporary name and renamed into place at the very end (an existing
//! `<to>/tokenizer.json` given as `--tokenizer` is left as it is). Any failure, and SIGINT/SIGTERM/SIGHUP (polled
//! between tensors), removes the temporary files and leaves the directory as it was.
use crate::launcher::Interrupted;
use crate::npz::{permute, ArrayInfo, Dtype, Npz};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// big_vision checkpoint (.npz; float32, float16, or bfloat16 stored as |V2).
    #[arg(long)]
    pub from: PathBuf,
    /// Output directory (created; an existing one must be empty unless --overwrite).
    #[arg(long)]
    pub to: PathBuf,
    /// Output dtype: f32, bf16 or f16 (default: as stored).
    #[arg(long)]
    pub dtype: Option<String>,
    /// A PaliGemma `tokenizer.json` to copy into the output, so it is ready for `cargo xtask caption`.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Write into a non-empty --to: replaces model.safetensors, config.json (and tokenizer.json with --tokenizer)
    /// there; other files are left alone.
    #[arg(long)]
    pub overwrite: bool,
}

pub fn run(args: &Args) -> Result<i32> {
    let dtype = args.dtype.as_deref().map(parse_dtype).transpose()?;
    interrupt::install("removing the partial output, stopping after this tensor");
    let summary = convert(&args.from, &args.to, dtype, args.tokenizer.as_deref(), args.overwrite)?;
    println!("{summary}");
    if args.tokenizer.is_none() && !args.to.join("tokenizer.json").exists() {
        println!(
            "note: no --tokenizer given; copy PaliGemma's tokenizer.json into {} before captioning",
            args.to.display()
        );
    }
    Ok(0)
}

fn parse_dtype(s: &str) -> Result<Dtype> {
    Ok(match s {
        "f32" | "float32" => Dtype::F32,
        "bf16" | "bfloat16" => Dtype::Bf16,
        "f16" | "float16" => Dtype::F16,
        _ => bail!("unsupported --dtype `{s}`: expected f32, bf16 or f16"),
    })
}

/// One output tensor: `src[index...]`, axes permuted by `perm`, reshaped to `shape`.
#[derive(Debug, Clone)]
struct Piece {
    name: String,
    src: String,
    index: Vec<usize>,
    perm: Vec<usize>,
    shape: Vec<usize>,
    /// Rows to append (mean row) for the embedding table.
    pad_rows: usize,
}

/// The architecture read off the arrays.
#[derive(Debug, Clone)]
struct Dims {
    vision: usize,
    vision_mlp: usize,
    vision_layers: usize,
    vision_heads: usize,
    patch: usize,
    image_size: usize,
    image_tokens: usize,
    text: usize,
    text_mlp: usize,
    text_layers: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    bv_vocab: usize,
    vocab: usize,
    /// PaliGemma 2 (a Gemma-2 decoder): the checkpoint has the [`PG2_ONLY`] norm stacks.
    pg2: bool,
}

impl Dims {
    /// Gemma 2's `query_pre_attn_scalar`, which big_vision does not store: its `query_pre_attn_norm` is
    /// `rsqrt_emb_per_head` (`width / heads`) for `gemma2_27b` (PaliGemma 2 28B: width 4608, 32 heads of 128),
    /// `rsqrt_head_dim` for every other variant.
    fn query_pre_attn_scalar(&self) -> usize {
        if (self.text, self.heads, self.head_dim) == (4608, 32, 128) {
            self.text / self.heads
        } else {
            self.head_dim
        }
    }
}

/// One axis of a big_vision array: a fixed size, or a dimension of the architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Axis {
    Lit(usize),
    Patch,
    ImageTokens,
    Vision,
    VisionMlp,
    VisionLayers,
    VisionHeads,
    VisionHeadDim,
    Text,
    TextMlp,
    TextLayers,
    Heads,
    KvHeads,
    HeadDim,
    BvVocab,
}

impl Axis {
    fn name(self) -> &'static str {
        match self {
            Axis::Lit(_) => "",
            Axis::Patch => "patch",
            Axis::ImageTokens => "image_tokens",
            Axis::Vision => "vision_width",
            Axis::VisionMlp => "vision_mlp",
            Axis::VisionLayers => "vision_layers",
            Axis::VisionHeads => "vision_heads",
            Axis::VisionHeadDim => "vision_head_dim",
            Axis::Text => "width",
            Axis::TextMlp => "mlp",
            Axis::TextLayers => "layers",
            Axis::Heads => "heads",
            Axis::KvHeads => "kv_heads",
            Axis::HeadDim => "head_dim",
            Axis::BvVocab => "vocab",
        }
    }
}

/// Every array of a PaliGemma 1 or 2 big_vision checkpoint and its shape; the [`PG2_ONLY`] ones are PaliGemma 2's.
const SPEC: &[(&str, &[Axis])] = {
    use Axis::*;
    &[
        ("img/embedding/kernel", &[Patch, Patch, Lit(3), Vision]),
        ("img/embedding/bias", &[Vision]),
        ("img/pos_embedding", &[Lit(1), ImageTokens, Vision]),
        ("img/Transformer/encoderblock/LayerNorm_0/scale", &[VisionLayers, Vision]),
        ("img/Transformer/encoderblock/LayerNorm_0/bias", &[VisionLayers, Vision]),
        ("img/Transformer/encoderblock/LayerNorm_1/scale", &[VisionLayers, Vision]),
        ("img/Transformer/encoderblock/LayerNorm_1/bias", &[VisionLayers, Vision]),
        (
            "img/Transformer/encoderblock/MultiHeadDotProductAttention_0/query/kernel",
            &[VisionLayers, Vision, VisionHeads, VisionHeadDim],
        ),
        (
            "img/Transformer/encoderblock/MultiHeadDotProductAttention_0/query/bias",
            &[VisionLayers, VisionHeads, VisionHeadDim],
        ),
        (
            "img/Transformer/encoderblock/MultiHeadDotProductAttention_0/key/kernel",
            &[VisionLayers, Vision, VisionHeads, VisionHeadDim],
        ),
        (
            "img/Transformer/encoderblock/MultiHeadDotProductAttention_0/key/bias",
            &[VisionLayers, VisionHeads, VisionHeadDim],
        ),
        (
            "img/Transformer/encoderblock/MultiHeadDotProductAttention_0/value/kernel",
            &[VisionLayers, Vision, VisionHeads, VisionHeadDim],
        ),
        (
            "img/Transformer/encoderblock/MultiHeadDotProductAttention_0/value/bias",
            &[VisionLayers, VisionHeads, VisionHeadDim],
        ),
        (
            "img/Transformer/encoderblock/MultiHeadDotProductAttention_0/out/kernel",
            &[VisionLayers, VisionHeads, VisionHeadDim, Vision],
        ),
        (
            "img/Transformer/encoderblock/MultiHeadDotProductAttention_0/out/bias",
            &[VisionLayers, Vision],
        ),
        (
            "img/Transformer/encoderblock/MlpBlock_0/Dense_0/kernel",
            &[VisionLayers, Vision, VisionMlp],
        ),
        ("img/Transformer/encoderblock/MlpBlock_0/Dense_0/bias", &[VisionLayers, VisionMlp]),
        (
            "img/Transformer/encoderblock/MlpBlock_0/Dense_1/kernel",
            &[VisionLayers, VisionMlp, Vision],
        ),
        ("img/Transformer/encoderblock/MlpBlock_0/Dense_1/bias", &[VisionLayers, Vision]),
        ("img/Transformer/encoder_norm/scale", &[Vision]),
        ("img/Transformer/encoder_norm/bias", &[Vision]),
        ("img/head/kernel", &[Vision, Text]),
        ("img/head/bias", &[Text]),
        ("llm/embedder/input_embedding", &[BvVocab, Text]),
        ("llm/layers/attn/q_einsum/w", &[TextLayers, Heads, Text, HeadDim]),
        ("llm/layers/attn/kv_einsum/w", &[TextLayers, Lit(2), KvHeads, Text, HeadDim]),
        ("llm/layers/attn/attn_vec_einsum/w", &[TextLayers, Heads, HeadDim, Text]),
        ("llm/layers/mlp/gating_einsum", &[TextLayers, Lit(2), Text, TextMlp]),
        ("llm/layers/mlp/linear", &[TextLayers, TextMlp, Text]),
        ("llm/layers/pre_attention_norm/scale", &[TextLayers, Text]),
        ("llm/layers/pre_ffw_norm/scale", &[TextLayers, Text]),
        ("llm/layers/post_attention_norm/scale", &[TextLayers, Text]),
        ("llm/layers/post_ffw_norm/scale", &[TextLayers, Text]),
        ("llm/final_norm/scale", &[Text]),
    ]
};

/// Gemma 2's post-attention and post-MLP norms: a checkpoint with either is PaliGemma 2 and must have both.
const PG2_ONLY: [&str; 2] =
    ["llm/layers/post_attention_norm/scale", "llm/layers/post_ffw_norm/scale"];

/// The [`SPEC`] arrays a PaliGemma 1 (`pg2` false) or PaliGemma 2 checkpoint has.
fn spec(pg2: bool) -> impl Iterator<Item = &'static (&'static str, &'static [Axis])> {
    SPEC.iter().filter(move |(name, _)| pg2 || !PG2_ONLY.contains(name))
}

/// `[2, heads, 48, 12]`: known dimensions as numbers, unknown ones by name.
fn show(axes: &[Axis], known: &HashMap<Axis, usize>) -> String {
    let parts: Vec<String> = axes
        .iter()
        .map(|&a| match (a, known.get(&a)) {
            (Axis::Lit(n), _) | (_, Some(&n)) => n.to_string(),
            (a, None) => a.name().to_string(),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// Whether `shape` fits `axes` given the dimensions known so far.
fn fits(shape: &[usize], axes: &[Axis], known: &HashMap<Axis, usize>) -> bool {
    shape.len() == axes.len()
        && axes.iter().zip(shape).all(|(a, n)| match a {
            Axis::Lit(want) => want == n,
            a => known.get(a).is_none_or(|k| k == n),
        })
}

/// Each dimension's value, from the arrays not in `excluded`: the value most arrays agree on; a tie is a problem.
fn decide<'a>(
    infos: &HashMap<String, ArrayInfo>,
    excluded: &std::collections::HashSet<&'a str>,
    pg2: bool,
) -> (HashMap<Axis, usize>, Vec<String>) {
    // dimension -> value -> arrays. An array votes only if its rank and fixed axes are right and it agrees with
    // itself (`img/embedding/kernel` has the patch size twice).
    let mut votes: HashMap<Axis, Vec<(usize, Vec<&'a str>)>> = HashMap::new();
    for &(name, axes) in spec(pg2) {
        let Some(info) = infos.get(name).filter(|_| !excluded.contains(name)) else { continue };
        let mut own: HashMap<Axis, usize> = HashMap::new();
        let consistent = info.shape.len() == axes.len()
            && axes.iter().zip(&info.shape).all(|(&a, &n)| match a {
                Axis::Lit(want) => want == n,
                a => *own.entry(a).or_insert(n) == n,
            });
        if !consistent {
            continue;
        }
        for (a, n) in own {
            let tally = votes.entry(a).or_default();
            match tally.iter_mut().find(|(v, _)| *v == n) {
                Some((_, names)) => names.push(name),
                None => tally.push((n, vec![name])),
            }
        }
    }
    let (mut known, mut ties) = (HashMap::new(), Vec::new());
    let mut symbols: Vec<Axis> = votes.keys().copied().collect();
    symbols.sort_by_key(|d| d.name());
    for dim in symbols {
        let mut tally = votes.remove(&dim).expect("listed");
        tally.sort_by_key(|(n, names)| (std::cmp::Reverse(names.len()), *n));
        if tally.len() > 1 && tally[0].1.len() == tally[1].1.len() {
            let sides: Vec<String> = tally
                .iter()
                .map(|(n, names)| format!("{} = {n} in `{}`", dim.name(), names.join("`, `")))
                .collect();
            ties.push(format!("arrays disagree on {}: {}", dim.name(), sides.join("; ")));
        } else {
            known.insert(dim, tally[0].0);
        }
    }
    (known, ties)
}

/// The architecture read off the arrays, after checking every array against [`SPEC`]: each dimension takes the
/// value most arrays agree on, and an array at odds with it does not vote on the others, so the misshaped array is
/// the one named (never a consistent one next to it), with the shape it should have.
fn dims(infos: &HashMap<String, ArrayInfo>, from: &Path) -> Result<Dims> {
    let pg2 = PG2_ONLY.iter().any(|name| infos.contains_key(*name));
    let mut misshaped = std::collections::HashSet::new();
    let (known, mut problems) = loop {
        let (known, ties) = decide(infos, &misshaped, pg2);
        let newly: Vec<&str> = spec(pg2)
            .filter(|(name, axes)| {
                !misshaped.contains(name)
                    && infos.get(*name).is_some_and(|i| !fits(&i.shape, axes, &known))
            })
            .map(|(name, _)| *name)
            .collect();
        if newly.is_empty() {
            break (known, ties);
        }
        misshaped.extend(newly);
    };
    for &(name, axes) in spec(pg2) {
        let expected = show(axes, &known);
        match infos.get(name) {
            None => problems.push(format!("missing array `{name}` (expected shape {expected})")),
            Some(info) if !fits(&info.shape, axes, &known) => problems
                .push(format!("array `{name}` has shape {:?}, expected {expected}", info.shape)),
            Some(info) if info.shape.contains(&0) => {
                problems.push(format!("array `{name}` has shape {:?}: an empty axis", info.shape))
            }
            Some(_) => {}
        }
    }
    let get = |d: Axis| known.get(&d).copied().unwrap_or(0);
    if problems.is_empty() {
        let (n, dv, hv, hdv) = (
            get(Axis::ImageTokens),
            get(Axis::Vision),
            get(Axis::VisionHeads),
            get(Axis::VisionHeadDim),
        );
        let grid = (n as f64).sqrt().round() as usize;
        if grid * grid != n {
            problems.push(format!(
                "array `img/pos_embedding` has {n} positions, expected a square grid (e.g. 256 for 224 px)"
            ));
        }
        if hv * hdv != dv {
            problems.push(format!(
                "array `img/Transformer/encoderblock/MultiHeadDotProductAttention_0/query/kernel` has \
                 {hv} heads × {hdv}, expected heads × head_dim = the width {dv}"
            ));
        }
    }
    match problems.len() {
        0 => {}
        1 => bail!("{}: {}", from.display(), problems[0]),
        n => {
            let shown = problems.iter().take(8).map(|p| format!("\n  {p}")).collect::<String>();
            let more = if n > 8 { format!("\n  … and {} more", n - 8) } else { String::new() };
            bail!(
                "{}: {n} problems (is this a PaliGemma big_vision checkpoint?):{shown}{more}",
                from.display()
            );
        }
    }
    let bv_vocab = get(Axis::BvVocab);
    Ok(Dims {
        vision: get(Axis::Vision),
        vision_mlp: get(Axis::VisionMlp),
        vision_layers: get(Axis::VisionLayers),
        vision_heads: get(Axis::VisionHeads),
        patch: get(Axis::Patch),
        image_size: ((get(Axis::ImageTokens) as f64).sqrt().round() as usize) * get(Axis::Patch),
        image_tokens: get(Axis::ImageTokens),
        text: get(Axis::Text),
        text_mlp: get(Axis::TextMlp),
        text_layers: get(Axis::TextLayers),
        heads: get(Axis::Heads),
        kv_heads: get(Axis::KvHeads),
        head_dim: get(Axis::HeadDim),
        bv_vocab,
        vocab: (bv_vocab + 1).div_ceil(64) * 64,
        pg2,
    })
}

fn plan(d: &Dims) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut add =
        |name: String, src: &str, index: Vec<usize>, perm: Vec<usize>, shape: Vec<usize>| {
            out.push(Piece { name, src: src.to_string(), index, perm, shape, pad_rows: 0 });
        };
    let v = "vision_tower.vision_model";
    let (dv, hv, hdv) = (d.vision, d.vision_heads, d.vision / d.vision_heads);
    add(
        format!("{v}.embeddings.patch_embedding.weight"),
        "img/embedding/kernel",
        vec![],
        vec![3, 2, 0, 1],
        vec![dv, 3, d.patch, d.patch],
    );
    add(
        format!("{v}.embeddings.patch_embedding.bias"),
        "img/embedding/bias",
        vec![],
        vec![0],
        vec![dv],
    );
    add(
        format!("{v}.embeddings.position_embedding.weight"),
        "img/pos_embedding",
        vec![],
        vec![0, 1, 2],
        vec![d.image_tokens, dv],
    );
    let blk = "img/Transformer/encoderblock";
    for (bv, hf) in [("LayerNorm_0", "layer_norm1"), ("LayerNorm_1", "layer_norm2")] {
        for (p, w) in [("scale", "weight"), ("bias", "bias")] {
            for i in 0..d.vision_layers {
                add(
                    format!("{v}.encoder.layers.{i}.{hf}.{w}"),
                    &format!("{blk}/{bv}/{p}"),
                    vec![i],
                    vec![0],
                    vec![dv],
                );
            }
        }
    }
    let mha = format!("{blk}/MultiHeadDotProductAttention_0");
    for (bv, hf) in [("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj")] {
        for i in 0..d.vision_layers {
            // [D_in, H, hd] -> [H, hd, D_in] -> [H*hd, D_in]
            add(
                format!("{v}.encoder.layers.{i}.self_attn.{hf}.weight"),
                &format!("{mha}/{bv}/kernel"),
                vec![i],
                vec![1, 2, 0],
                vec![dv, dv],
            );
        }
        for i in 0..d.vision_layers {
            add(
                format!("{v}.encoder.layers.{i}.self_attn.{hf}.bias"),
                &format!("{mha}/{bv}/bias"),
                vec![i],
                vec![0, 1],
                vec![hv * hdv],
            );
        }
    }
    for i in 0..d.vision_layers {
        // [H, hd, D_out] -> [D_out, H, hd] -> [D_out, H*hd]
        add(
            format!("{v}.encoder.layers.{i}.self_attn.out_proj.weight"),
            &format!("{mha}/out/kernel"),
            vec![i],
            vec![2, 0, 1],
            vec![dv, dv],
        );
    }
    for i in 0..d.vision_layers {
        add(
            format!("{v}.encoder.layers.{i}.self_attn.out_proj.bias"),
            &format!("{mha}/out/bias"),
            vec![i],
            vec![0],
            vec![dv],
        );
    }
    for (bv, hf, (a, b)) in
        [("Dense_0", "fc1", (d.vision_mlp, dv)), ("Dense_1", "fc2", (dv, d.vision_mlp))]
    {
        for i in 0..d.vision_layers {
            add(
                format!("{v}.encoder.layers.{i}.mlp.{hf}.weight"),
                &format!("{blk}/MlpBlock_0/{bv}/kernel"),
                vec![i],
                vec![1, 0],
                vec![a, b],
            );
        }
        for i in 0..d.vision_layers {
            add(
                format!("{v}.encoder.layers.{i}.mlp.{hf}.bias"),
                &format!("{blk}/MlpBlock_0/{bv}/bias"),
                vec![i],
                vec![0],
                vec![a],
            );
        }
    }
    add(
        format!("{v}.post_layernorm.weight"),
        "img/Transformer/encoder_norm/scale",
        vec![],
        vec![0],
        vec![dv],
    );
    add(
        format!("{v}.post_layernorm.bias"),
        "img/Transformer/encoder_norm/bias",
        vec![],
        vec![0],
        vec![dv],
    );
    add(
        "multi_modal_projector.linear.weight".into(),
        "img/head/kernel",
        vec![],
        vec![1, 0],
        vec![d.text, dv],
    );
    add("multi_modal_projector.linear.bias".into(), "img/head/bias", vec![], vec![0], vec![d.text]);

    let l = "language_model.model";
    let (dt, hd) = (d.text, d.head_dim);
    out.push(Piece {
        name: format!("{l}.embed_tokens.weight"),
        src: "llm/embedder/input_embedding".into(),
        index: vec![],
        perm: vec![0, 1],
        shape: vec![d.vocab, dt],
        pad_rows: d.vocab - d.bv_vocab,
    });
    let mut add =
        |name: String, src: &str, index: Vec<usize>, perm: Vec<usize>, shape: Vec<usize>| {
            out.push(Piece { name, src: src.to_string(), index, perm, shape, pad_rows: 0 });
        };
    for i in 0..d.text_layers {
        // [N, D, hd] -> [N, hd, D] -> [N*hd, D]
        add(
            format!("{l}.layers.{i}.self_attn.q_proj.weight"),
            "llm/layers/attn/q_einsum/w",
            vec![i],
            vec![0, 2, 1],
            vec![d.heads * hd, dt],
        );
    }
    for (slot, hf) in [(0, "k_proj"), (1, "v_proj")] {
        for i in 0..d.text_layers {
            add(
                format!("{l}.layers.{i}.self_attn.{hf}.weight"),
                "llm/layers/attn/kv_einsum/w",
                vec![i, slot],
                vec![0, 2, 1],
                vec![d.kv_heads * hd, dt],
            );
        }
    }
    for i in 0..d.text_layers {
        // [N, hd, D] -> [D, N, hd] -> [D, N*hd]
        add(
            format!("{l}.layers.{i}.self_attn.o_proj.weight"),
            "llm/layers/attn/attn_vec_einsum/w",
            vec![i],
            vec![2, 0, 1],
            vec![dt, d.heads * hd],
        );
    }
    for (slot, hf) in [(0, "gate_proj"), (1, "up_proj")] {
        for i in 0..d.text_layers {
            add(
                format!("{l}.layers.{i}.mlp.{hf}.weight"),
                "llm/layers/mlp/gating_einsum",
                vec![i, slot],
                vec![1, 0],
                vec![d.text_mlp, dt],
            );
        }
    }
    for i in 0..d.text_layers {
        add(
            format!("{l}.layers.{i}.mlp.down_proj.weight"),
            "llm/layers/mlp/linear",
            vec![i],
            vec![1, 0],
            vec![dt, d.text_mlp],
        );
    }
    // Gemma 1's pre-MLP norm is HF's `post_attention_layernorm`; Gemma 2 has its own name for it, and that name for
    // the norm of the attention output.
    let norms: &[(&str, &str)] = if d.pg2 {
        &[
            ("pre_attention_norm", "input_layernorm"),
            ("post_attention_norm", "post_attention_layernorm"),
            ("pre_ffw_norm", "pre_feedforward_layernorm"),
            ("post_ffw_norm", "post_feedforward_layernorm"),
        ]
    } else {
        &[("pre_attention_norm", "input_layernorm"), ("pre_ffw_norm", "post_attention_layernorm")]
    };
    for &(bv, hf) in norms {
        for i in 0..d.text_layers {
            add(
                format!("{l}.layers.{i}.{hf}.weight"),
                &format!("llm/layers/{bv}/scale"),
                vec![i],
                vec![0],
                vec![dt],
            );
        }
    }
    add(format!("{l}.norm.weight"), "llm/final_norm/scale", vec![], vec![0], vec![dt]);
    out
}

fn to_f32(bytes: &[u8], dtype: Dtype) -> Vec<f32> {
    match dtype {
        Dtype::F32 => {
            bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        }
        Dtype::F16 => {
            bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
        }
        Dtype::Bf16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
    }
}

fn from_f32(values: &[f32], dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(),
        Dtype::Bf16 => values.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect(),
    }
}

fn cast(bytes: Vec<u8>, from: Dtype, to: Dtype) -> Vec<u8> {
    if from == to {
        bytes
    } else {
        from_f32(&to_f32(&bytes, from), to)
    }
}

/// The bytes of one piece, in the source dtype.
fn extract(piece: &Piece, info: &ArrayInfo, data: &[u8]) -> Result<Vec<u8>> {
    let elem = info.dtype.size();
    let mut sub_shape = info.shape.clone();
    let mut offset = 0usize;
    for &i in &piece.index {
        let axis = sub_shape.remove(0);
        if i >= axis {
            bail!("`{}`: index {i} out of range for axis of size {axis}", piece.src);
        }
        offset = offset * axis + i;
    }
    let numel: usize = sub_shape.iter().product();
    let chunk = &data[offset * numel * elem..(offset + 1) * numel * elem];
    if piece.perm.len() != sub_shape.len() {
        bail!(
            "`{}` has shape {:?}, expected {} dimensions after indexing",
            piece.src,
            info.shape,
            piece.perm.len()
        );
    }
    let want: usize = piece.shape.iter().product::<usize>()
        - piece.pad_rows * piece.shape.get(1).copied().unwrap_or(1);
    if numel != want {
        bail!(
            "`{}` has shape {:?}, which does not give `{}` of shape {:?}",
            piece.src,
            info.shape,
            piece.name,
            piece.shape
        );
    }
    let identity = piece.perm.iter().enumerate().all(|(k, &p)| k == p);
    let mut bytes =
        if identity { chunk.to_vec() } else { permute(chunk, elem, &sub_shape, &piece.perm) };
    if piece.pad_rows > 0 {
        let cols = piece.shape[1];
        let values = to_f32(&bytes, info.dtype);
        let rows = values.len() / cols;
        let mut mean = vec![0f64; cols];
        for row in values.chunks_exact(cols) {
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += f64::from(x);
            }
        }
        let mean: Vec<f32> = mean.iter().map(|m| (m / rows as f64) as f32).collect();
        let row = from_f32(&mean, info.dtype);
        for _ in 0..piece.pad_rows {
            bytes.extend_from_slice(&row);
        }
    }
    Ok(bytes)
}

/// The files convert writes into `--to`.
const OUTPUTS: [&str; 3] = ["model.safetensors", "config.json", "tokenizer.json"];

/// The temporary name an output is written under before it is renamed into place.
fn temp_name(output: &str) -> String {
    format!("{output}.convert-tmp")
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Checks that writing into `to` destroys nothing the user did not ask to replace; returns whether `tokenizer` is
/// already `<to>/tokenizer.json` (then it is kept as it is, never copied onto itself).
fn check_target(from: &Path, to: &Path, tokenizer: Option<&Path>, overwrite: bool) -> Result<bool> {
    for output in OUTPUTS {
        for name in [output.to_string(), temp_name(output)] {
            if same_file(from, &to.join(&name)) {
                bail!(
                    "--from {} is the {name} that convert writes into --to {}; convert into another directory",
                    from.display(),
                    to.display()
                );
            }
        }
    }
    let meta = match std::fs::metadata(to) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        other => other.with_context(|| format!("--to {}", to.display()))?,
    };
    if !meta.is_dir() {
        bail!("--to {} exists and is not a directory", to.display());
    }
    let temps: Vec<String> = OUTPUTS.iter().map(|o| temp_name(o)).collect();
    let mut present: Vec<String> = std::fs::read_dir(to)
        .with_context(|| format!("listing --to {}", to.display()))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| !temps.contains(n)) // left by a conversion stopped at once: ours
        .collect();
    present.sort();
    if !present.is_empty() && !overwrite {
        let mut listed = present.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        if present.len() > 5 {
            listed.push_str(&format!(" and {} more", present.len() - 5));
        }
        bail!(
            "--to {} is not empty ({listed}); pass --overwrite to replace model.safetensors and config.json{} \
             there (other files are left as they are), or choose an empty or new directory",
            to.display(),
            if tokenizer.is_some() { " and tokenizer.json" } else { "" }
        );
    }
    if present.iter().any(|n| n == "model.safetensors.index.json") {
        eprintln!(
            "note: {} has model.safetensors.index.json: loaders read the shards it lists, not model.safetensors; \
             move it away to use the converted weights",
            to.display()
        );
    }
    Ok(tokenizer.is_some_and(|t| same_file(t, &to.join("tokenizer.json"))))
}

/// Outputs written under temporary names: [`Staged::commit`] renames them into place; dropped before that (an
/// error, a signal), it removes them, and the output directory too if it created it and it is empty again.
struct Staged {
    dir: PathBuf,
    created_dir: bool,
    files: Vec<&'static str>,
}

impl Staged {
    fn new(dir: &Path) -> Result<Self> {
        let created_dir = !dir.exists();
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for output in OUTPUTS {
            // Left by a conversion stopped at once (a second signal): ours.
            let _ = std::fs::remove_file(dir.join(temp_name(output)));
        }
        Ok(Self { dir: dir.to_path_buf(), created_dir, files: vec![] })
    }

    /// Creates (truncates) the temporary file for `output`.
    fn create(&mut self, output: &'static str) -> Result<std::fs::File> {
        let tmp = self.dir.join(temp_name(output));
        self.files.push(output);
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))
    }

    fn write(&mut self, output: &'static str, bytes: &[u8]) -> Result<()> {
        let tmp = self.dir.join(temp_name(output));
        let mut file = self.create(output)?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))
    }

    fn commit(mut self) -> Result<()> {
        while let Some(&output) = self.files.first() {
            let (tmp, path) = (self.dir.join(temp_name(output)), self.dir.join(output));
            // On failure, `drop` removes this temporary file and those not renamed yet.
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
            self.files.remove(0);
        }
        self.created_dir = false;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        for output in &self.files {
            let _ = std::fs::remove_file(self.dir.join(temp_name(output)));
        }
        if self.created_dir {
            let _ = std::fs::remove_dir(&self.dir); // only if empty
        }
    }
}

/// Converts and returns a one-line summary. SIGINT, SIGTERM and SIGHUP (once `interrupt::install`ed) stop it
/// between tensors with nothing written.
pub fn convert(
    from: &Path,
    to: &Path,
    dtype: Option<Dtype>,
    tokenizer: Option<&Path>,
    overwrite: bool,
) -> Result<String> {
    convert_with(from, to, dtype, tokenizer, overwrite, &interrupt::requested)
}

/// [`convert`], polling `stop` between tensors.
fn convert_with(
    from: &Path,
    to: &Path,
    dtype: Option<Dtype>,
    tokenizer: Option<&Path>,
    overwrite: bool,
    stop: &dyn Fn() -> Option<interrupt::Signal>,
) -> Result<String> {
    let mut npz = Npz::open(from)?;
    // Keys may carry big_vision's `params/` prefix.
    let names = npz.names()?;
    let mut infos = HashMap::new();
    let mut stored = HashMap::new();
    for name in &names {
        let key = name.strip_prefix("params/").unwrap_or(name).to_string();
        infos.insert(key.clone(), npz.info(name)?);
        stored.insert(key, name.clone());
    }
    let dims = dims(&infos, from)?;
    let pieces = plan(&dims);
    let used: std::collections::HashSet<&str> = pieces.iter().map(|p| p.src.as_str()).collect();
    if let Some(extra) = infos.keys().filter(|k| !used.contains(k.as_str())).min() {
        bail!(
            "{}: unexpected array `{extra}` (not part of a PaliGemma 1 or 2 checkpoint)",
            from.display()
        );
    }
    let src_dtype = infos[&pieces[0].src].dtype;
    if let Some(k) = infos.iter().find(|(_, i)| i.dtype != src_dtype).map(|(k, _)| k) {
        bail!("{}: arrays are stored in mixed dtypes (`{k}` differs)", from.display());
    }
    let out_dtype = dtype.unwrap_or(src_dtype);

    let tokenizer_in_place = check_target(from, to, tokenizer, overwrite)?;
    // Read before anything is written: a wrong path fails now, and the copy never reads a file it is replacing.
    let tokenizer_bytes = match tokenizer {
        Some(tok) if !tokenizer_in_place => Some(
            std::fs::read(tok).with_context(|| format!("reading --tokenizer {}", tok.display()))?,
        ),
        _ => None,
    };
    let stopped = |sig: interrupt::Signal| {
        anyhow::Error::new(Interrupted(sig))
            .context(format!("conversion stopped, nothing written to {}", to.display()))
    };
    if let Some(sig) = stop() {
        return Err(stopped(sig));
    }

    // Header first: every shape is known from the plan.
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for p in &pieces {
        let bytes = p.shape.iter().product::<usize>() * out_dtype.size();
        header.insert(
            p.name.clone(),
            serde_json::json!({"dtype": out_dtype.st_name(), "shape": p.shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    header.insert(
        "__metadata__".into(),
        serde_json::json!({"format": "pt", "converted_from": "big_vision"}),
    );
    let mut header = serde_json::to_vec(&header)?;
    while header.len() % 8 != 0 {
        header.push(b' ');
    }

    let mut staged = Staged::new(to)?;
    let tmp = to.join(temp_name("model.safetensors"));
    let file = staged.create("model.safetensors")?;
    let mut w = std::io::BufWriter::with_capacity(1 << 22, file);
    let writing =
        |e: std::io::Error| anyhow::Error::new(e).context(format!("writing {}", tmp.display()));
    w.write_all(&(header.len() as u64).to_le_bytes()).map_err(writing)?;
    w.write_all(&header).map_err(writing)?;
    let bar = indicatif::ProgressBar::new(offset as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("converting {bar:40} {bytes}/{total_bytes} {eta}")
            .expect("valid template"),
    );
    // Pieces are written in plan order; group reads so each source array is read once, keeping its pieces' bytes
    // until their turn (plan order already groups them by source).
    let mut cache: Option<(String, ArrayInfo, Vec<u8>)> = None;
    for p in &pieces {
        if let Some(sig) = stop() {
            bar.abandon();
            return Err(stopped(sig));
        }
        if cache.as_ref().map(|c| c.0.as_str()) != Some(p.src.as_str()) {
            let (info, data) = npz.read(&stored[&p.src])?;
            cache = Some((p.src.clone(), info, data));
        }
        let (_, info, data) = cache.as_ref().expect("just filled");
        let bytes = cast(extract(p, info, data)?, info.dtype, out_dtype);
        w.write_all(&bytes).map_err(writing)?;
        bar.inc(bytes.len() as u64);
    }
    bar.finish_and_clear();
    let file = w.into_inner().map_err(|e| writing(e.into_error()))?;
    file.sync_all().map_err(writing)?;
    drop(file);

    staged.write("config.json", config_json(&dims, out_dtype).as_bytes())?;
    if let Some(bytes) = &tokenizer_bytes {
        staged.write("tokenizer.json", bytes)?;
    }
    if let Some(sig) = stop() {
        return Err(stopped(sig));
    }
    staged.commit()?;
    let tokenizer_note = match (tokenizer, tokenizer_in_place) {
        (Some(_), true) => ", tokenizer.json already in place (kept)",
        (Some(_), false) => ", tokenizer.json",
        (None, _) => "",
    };
    Ok(format!(
        "wrote {} ({} tensors, {:.1} MB, {}) and config.json{tokenizer_note}: SigLIP {}px/{} ({} image tokens, {} layers), {} {} layers, vocab {}",
        to.join("model.safetensors").display(),
        pieces.len(),
        offset as f64 / 1e6,
        out_dtype.st_name(),
        dims.image_size,
        dims.patch,
        dims.image_tokens,
        dims.vision_layers,
        if dims.pg2 { "Gemma 2" } else { "Gemma" },
        dims.text_layers,
        dims.vocab
    ))
}

fn config_json(d: &Dims, dtype: Dtype) -> String {
    let torch_dtype = match dtype {
        Dtype::F32 => "float32",
        Dtype::F16 => "float16",
        Dtype::Bf16 => "bfloat16",
    };
    let mut cfg = serde_json::json!({
        "architectures": ["PaliGemmaForConditionalGeneration"],
        "model_type": "paligemma",
        "bos_token_id": 2,
        "eos_token_id": 1,
        "pad_token_id": 0,
        "hidden_size": d.text,
        "projection_dim": d.text,
        "image_token_index": d.bv_vocab,
        "vocab_size": d.vocab,
        "torch_dtype": torch_dtype,
        "text_config": {
            "model_type": "gemma",
            "hidden_size": d.text,
            "intermediate_size": d.text_mlp,
            "num_hidden_layers": d.text_layers,
            "num_attention_heads": d.heads,
            "num_key_value_heads": d.kv_heads,
            "head_dim": d.head_dim,
            "vocab_size": d.vocab,
            "hidden_act": "gelu_pytorch_tanh",
            "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0,
            "max_position_embeddings": 8192,
            "num_image_tokens": d.image_tokens,
        },
        "vision_config": {
            "model_type": "siglip_vision_model",
            "hidden_size": d.vision,
            "intermediate_size": d.vision_mlp,
            "num_hidden_layers": d.vision_layers,
            "num_attention_heads": d.vision_heads,
            "image_size": d.image_size,
            "patch_size": d.patch,
            "hidden_act": "gelu_pytorch_tanh",
            "layer_norm_eps": 1e-6,
            "projection_dim": d.text,
            "num_image_tokens": d.image_tokens,
            "vision_use_head": false,
        },
    });
    if d.pg2 {
        // As transformers' PaliGemma 2 converter writes it (Gemma-2 2B's config with the shapes), and the layer
        // pattern its Gemma2Config fills in: sliding on even layers.
        let layer_types: Vec<&str> = (0..d.text_layers)
            .map(|i| if i % 2 == 0 { "sliding_attention" } else { "full_attention" })
            .collect();
        let text = cfg["text_config"].as_object_mut().expect("object");
        text.remove("hidden_act");
        text.extend([
            ("model_type".to_string(), "gemma2".into()),
            ("hidden_activation".to_string(), "gelu_pytorch_tanh".into()),
            ("query_pre_attn_scalar".to_string(), d.query_pre_attn_scalar().into()),
            ("sliding_window".to_string(), 4096.into()),
            ("attn_logit_softcapping".to_string(), 50.0.into()),
            ("final_logit_softcapping".to_string(), 30.0.into()),
            ("layer_types".to_string(), layer_types.into()),
        ]);
    }
    serde_json::to_string_pretty(&cfg).expect("json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::SafeTensors;

    fn fixtures() -> PathBuf {
        crate::setup::repo_root().join("data/fixtures")
    }

    fn tensors(path: &Path) -> HashMap<String, (String, Vec<usize>, Vec<u8>)> {
        let bytes = std::fs::read(path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        st.tensors()
            .into_iter()
            .map(|(k, v)| (k, (format!("{:?}", v.dtype()), v.shape().to_vec(), v.data().to_vec())))
            .collect()
    }

    fn read_json(path: &Path) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// A tiny big_vision checkpoint the generators wrote (`<stem>.npz`, `<stem>.bf16.npz`, described by
    /// `<stem>.json`) converts back to exactly the weights transformers saved for its model (`<model>-hub`, hub names),
    /// except the vocabulary rows HF made up (here: the mean row), with that model's shapes in config.json. Returns
    /// the config written.
    fn round_trip(npz: &str, out_dtype: Option<Dtype>, expect: Dtype) -> serde_json::Value {
        let tag = out_dtype.map_or("stored", Dtype::st_name);
        let out =
            std::env::temp_dir().join(format!("pg-convert-{npz}-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        convert(&fixtures().join(npz), &out, out_dtype, None, false).unwrap();
        let stem = npz.split('.').next().unwrap();
        let meta = read_json(&fixtures().join(format!("{stem}.json")));
        let model = meta["hf_reference"].as_str().unwrap();
        let got = tensors(&out.join("model.safetensors"));
        let want = tensors(&fixtures().join(format!("{model}-hub/model.safetensors")));
        let bv_vocab = meta["bv_vocab"].as_u64().unwrap() as usize;
        assert_eq!(got.len(), want.len(), "same number of tensors");
        for (name, (_, shape, data)) in &want {
            let (dtype, gshape, gdata) = got.get(name).unwrap_or_else(|| panic!("missing {name}"));
            assert_eq!(dtype, expect.st_name(), "{name}");
            assert_eq!(gshape, shape, "{name}");
            let reference = cast(data.clone(), Dtype::F32, expect);
            if name.ends_with("embed_tokens.weight") {
                let cols = shape[1];
                let row_bytes = cols * expect.size();
                assert_eq!(
                    gdata[..bv_vocab * row_bytes],
                    reference[..bv_vocab * row_bytes],
                    "{name}: real rows"
                );
                let vals = to_f32(&gdata[..bv_vocab * row_bytes], expect);
                let pad = to_f32(&gdata[bv_vocab * row_bytes..(bv_vocab + 1) * row_bytes], expect);
                for c in 0..cols {
                    let mean = (0..bv_vocab).map(|r| f64::from(vals[r * cols + c])).sum::<f64>()
                        / bv_vocab as f64;
                    assert!(
                        (f64::from(pad[c]) - mean).abs() < 1e-2 * (1.0 + mean.abs()),
                        "{name}: pad row is the mean"
                    );
                }
            } else {
                assert!(gdata == &reference, "{name}: differs from the transformers weights");
            }
        }
        let cfg = read_json(&out.join("config.json"));
        let hf = read_json(&fixtures().join(format!("{model}/config.json")));
        for key in ["image_token_index", "vocab_size"] {
            assert_eq!(cfg[key], hf[key], "{key}");
        }
        // Not stored in the npz: what big_vision runs, not the tiny fixtures' values (checked by the callers).
        let not_stored = [
            "rope_theta",
            "query_pre_attn_scalar",
            "sliding_window",
            "attn_logit_softcapping",
            "final_logit_softcapping",
        ];
        for sub in ["text_config", "vision_config"] {
            for (k, v) in cfg[sub].as_object().unwrap() {
                if hf[sub].get(k).is_some() && !not_stored.contains(&k.as_str()) {
                    assert_eq!(v, &hf[sub][k], "{sub}.{k}");
                }
            }
        }
        std::fs::remove_dir_all(&out).unwrap();
        cfg
    }

    #[test]
    fn f32_npz_round_trips_to_the_hf_weights() {
        let cfg = round_trip("mqa-bv.npz", None, Dtype::F32);
        let text = &cfg["text_config"];
        assert_eq!(text["model_type"], "gemma");
        assert!(text.get("query_pre_attn_scalar").is_none(), "{text}");
    }

    /// PaliGemma 2: the post-norm stacks, `pre_ffw_norm` as `pre_feedforward_layernorm`, a Gemma-2 config with the
    /// fixture's shapes (model_type and layer pattern compared by `round_trip`) and big_vision's scale and caps.
    #[test]
    fn pg2_npz_round_trips_to_the_hf_weights() {
        let cfg = round_trip("pg2-gqa-bv.npz", None, Dtype::F32);
        let text = &cfg["text_config"];
        assert_eq!(text["model_type"], "gemma2");
        assert_eq!(text["num_hidden_layers"], 3);
        assert_eq!(
            (&text["num_attention_heads"], &text["num_key_value_heads"]),
            (&4.into(), &2.into())
        );
        assert_eq!(text["head_dim"], 16);
        assert_eq!(text["query_pre_attn_scalar"], 16, "head_dim: not the 27B decoder");
        assert_eq!(text["sliding_window"], 4096);
        assert_eq!(text["attn_logit_softcapping"], 50.0);
        assert_eq!(text["final_logit_softcapping"], 30.0);
        assert_eq!(text["hidden_activation"], "gelu_pytorch_tanh");
        assert!(text.get("hidden_act").is_none(), "{text}");
    }

    #[test]
    fn query_pre_attn_scalar_follows_big_vision() {
        let mut d = dims(&fixture_infos("pg2-gqa-bv.npz"), Path::new("ckpt.npz")).unwrap();
        assert!(d.pg2);
        // (width, heads, head_dim) of PaliGemma 2 3B, 10B, 28B -> the released configs' scalars.
        for (shape, want) in [((2304, 8, 256), 256), ((3584, 16, 256), 256), ((4608, 32, 128), 144)]
        {
            (d.text, d.heads, d.head_dim) = shape;
            assert_eq!(d.query_pre_attn_scalar(), want, "{shape:?}");
        }
    }

    #[test]
    fn bf16_void_npz_converts() {
        round_trip("mqa-bv.bf16.npz", None, Dtype::Bf16);
    }

    #[test]
    fn dtype_request_casts() {
        round_trip("mqa-bv.npz", Some(Dtype::Bf16), Dtype::Bf16);
    }

    #[test]
    fn bad_inputs_give_clear_errors() {
        let out = std::env::temp_dir().join(format!("pg-convert-bad-{}", std::process::id()));
        let err =
            convert(&fixtures().join("mqa/config.json"), &out, None, None, false).unwrap_err();
        assert!(format!("{err:#}").contains("not an .npz"), "{err:#}");
        assert!(parse_dtype("int8").unwrap_err().to_string().contains("expected f32, bf16 or f16"));
        assert!(!out.join("model.safetensors").exists());
    }

    fn fixture_infos(npz: &str) -> HashMap<String, ArrayInfo> {
        let mut npz = Npz::open(&fixtures().join(npz)).unwrap();
        let names = npz.names().unwrap();
        names
            .iter()
            .map(|n| (n.strip_prefix("params/").unwrap().to_string(), npz.info(n).unwrap()))
            .collect()
    }

    fn dims_error(edit: impl FnOnce(&mut HashMap<String, ArrayInfo>)) -> String {
        dims_error_in("mqa-bv.npz", edit)
    }

    fn dims_error_in(npz: &str, edit: impl FnOnce(&mut HashMap<String, ArrayInfo>)) -> String {
        let mut infos = fixture_infos(npz);
        edit(&mut infos);
        format!("{:#}", dims(&infos, Path::new("ckpt.npz")).unwrap_err())
    }

    fn reshape(infos: &mut HashMap<String, ArrayInfo>, name: &str, shape: &[usize]) {
        infos.get_mut(name).unwrap().shape = shape.to_vec();
    }

    #[test]
    fn missing_and_misshaped_arrays_are_named_with_their_expected_shape() {
        assert!(dims(&fixture_infos("mqa-bv.npz"), Path::new("ckpt.npz")).is_ok());
        // Once a panic (an array only the plan reads), once a bare "missing array".
        for (name, shape) in [
            ("img/embedding/bias", "[32]"),
            ("llm/layers/mlp/linear", "[2, 64, 48]"),
            ("llm/embedder/input_embedding", "[vocab, 48]"),
        ] {
            let err = dims_error(|i| {
                i.remove(name);
            });
            assert_eq!(err, format!("ckpt.npz: missing array `{name}` (expected shape {shape})"));
        }
        // Once blamed on kv_einsum (the head size was read off q_einsum).
        let q = "llm/layers/attn/q_einsum/w";
        let err = dims_error(|i| reshape(i, q, &[2, 4, 48, 16]));
        assert_eq!(
            err,
            format!("ckpt.npz: array `{q}` has shape [2, 4, 48, 16], expected [2, 4, 48, 12]")
        );
        let err = dims_error(|i| reshape(i, q, &[2, 48, 4, 12]));
        assert_eq!(
            err,
            format!("ckpt.npz: array `{q}` has shape [2, 48, 4, 12], expected [2, 4, 48, 12]")
        );
        let err = dims_error(|i| reshape(i, q, &[2, 4, 48]));
        assert_eq!(
            err,
            format!("ckpt.npz: array `{q}` has shape [2, 4, 48], expected [2, 4, 48, 12]")
        );
        // Once an index panic (rank 1 embedding).
        let err = dims_error(|i| reshape(i, "llm/embedder/input_embedding", &[206]));
        assert_eq!(
            err,
            "ckpt.npz: array `llm/embedder/input_embedding` has shape [206], expected [vocab, 48]"
        );
        // Two arrays alone on a dimension and at odds: both named, neither guessed.
        let err = dims_error(|i| reshape(i, "llm/layers/attn/attn_vec_einsum/w", &[2, 8, 12, 48]));
        assert!(
            err.contains("arrays disagree on heads: heads = 4 in `llm/layers/attn/q_einsum/w`; heads = 8 in `llm/layers/attn/attn_vec_einsum/w`"),
            "{err}"
        );
        // Several problems are listed together.
        let err = dims_error(|i| {
            i.remove("img/head/bias");
            reshape(i, "llm/final_norm/scale", &[47]);
        });
        assert!(err.starts_with("ckpt.npz: 2 problems"), "{err}");
        assert!(err.contains("missing array `img/head/bias` (expected shape [48])"), "{err}");
        assert!(
            err.contains("array `llm/final_norm/scale` has shape [47], expected [48]"),
            "{err}"
        );
    }

    /// Either post-norm stack makes a checkpoint PaliGemma 2, which then needs the other one too.
    #[test]
    fn a_pg2_checkpoint_needs_both_post_norm_stacks() {
        for (kept, missing) in [(PG2_ONLY[0], PG2_ONLY[1]), (PG2_ONLY[1], PG2_ONLY[0])] {
            let err = dims_error_in("pg2-gqa-bv.npz", |i| {
                i.remove(missing);
            });
            assert_eq!(
                err,
                format!("ckpt.npz: missing array `{missing}` (expected shape [3, 48])")
            );
            // The same stack added to a PaliGemma 1 checkpoint.
            let err = dims_error(|i| {
                let info = i["llm/layers/pre_ffw_norm/scale"].clone();
                i.insert(kept.to_string(), info);
            });
            assert_eq!(
                err,
                format!("ckpt.npz: missing array `{missing}` (expected shape [2, 48])")
            );
        }
        let err = dims_error_in("pg2-gqa-bv.npz", |i| reshape(i, PG2_ONLY[1], &[2, 48]));
        assert_eq!(
            err,
            format!("ckpt.npz: array `{}` has shape [2, 48], expected [3, 48]", PG2_ONLY[1])
        );
    }

    fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
            })
            .collect();
        files.sort();
        files
    }

    /// A signal between tensors (here: after the fifth) removes the partial file and leaves what was there.
    #[test]
    fn a_signal_mid_conversion_leaves_nothing_behind() {
        let out = std::env::temp_dir().join(format!("pg-convert-stop-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("model.safetensors"), b"the user's weights").unwrap();
        std::fs::write(out.join("config.json"), b"{}").unwrap();
        let before = snapshot(&out);
        let polls = std::cell::Cell::new(0);
        let stop = || {
            polls.set(polls.get() + 1);
            (polls.get() > 5).then_some(interrupt::Signal(15))
        };
        let from = fixtures().join("mqa-bv.npz");
        let err = convert_with(&from, &out, None, None, true, &stop).unwrap_err();
        let interrupted =
            err.chain().find_map(|e| e.downcast_ref::<Interrupted>()).expect("Interrupted");
        assert_eq!(interrupted.0.exit_code(), 143);
        assert!(format!("{err:#}").contains("nothing written"), "{err:#}");
        assert!(polls.get() > 5, "stopped between tensors, not before the first");
        assert_eq!(snapshot(&out), before, "the directory is as it was, no temporary file");
        std::fs::remove_dir_all(&out).unwrap();
        // A directory convert created is removed again.
        let fresh = out.join("new");
        polls.set(0);
        let _ = std::fs::create_dir_all(&out);
        convert_with(&from, &fresh, None, None, false, &stop).unwrap_err();
        assert!(!fresh.exists());
        std::fs::remove_dir_all(&out).unwrap();
    }
}
