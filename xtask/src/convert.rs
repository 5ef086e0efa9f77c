//! `cargo xtask convert --from <big_vision .npz> --to <dir>`: a big_vision PaliGemma checkpoint (Kaggle / GCS
//! `paligemma-3b-pt-224.npz`, `.bf16.npz`, `.f16.npz`) to an HF-layout directory (`model.safetensors` with the hub key
//! names, `config.json`, optionally `tokenizer.json`).
//!
//! The mapping and reshapes follow `paligemma-architecture.md` section 5.3 (transformers'
//! `convert_paligemma_weights_to_hf.py`): scanned layer stacks are split per layer, Flax kernels transposed to
//! PyTorch's `[out, in]`, attention `DenseGeneral` kernels flattened head-major. The architecture is read off the
//! array shapes, so 224/448/896 checkpoints (and tiny test ones) need no flags. The vocabulary is extended as HF's
//! converter does: `<image>` gets id `V_bv` and the table is padded to a multiple of 64 rows; the new rows (never
//! looked up as text) are set to the mean embedding instead of HF's random draws, so conversion is deterministic.
//!
//! Memory: one source array at a time (the largest is `gating_einsum`, 4.8 GB in f32); the output is streamed to
//! `model.safetensors.tmp` and renamed when complete.
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
    /// Output directory (created).
    #[arg(long)]
    pub to: PathBuf,
    /// Output dtype: f32, bf16 or f16 (default: as stored).
    #[arg(long)]
    pub dtype: Option<String>,
    /// A PaliGemma `tokenizer.json` to copy into the output, so it is ready for `cargo xtask caption`.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

pub fn run(args: &Args) -> Result<i32> {
    let dtype = args.dtype.as_deref().map(parse_dtype).transpose()?;
    let summary = convert(&args.from, &args.to, dtype, args.tokenizer.as_deref())?;
    println!("{summary}");
    if args.tokenizer.is_none() {
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
}

fn shape<'a>(infos: &'a HashMap<String, ArrayInfo>, name: &str) -> Result<&'a [usize]> {
    infos.get(name).map(|i| i.shape.as_slice()).with_context(|| {
        format!("missing array `{name}`: is this a PaliGemma big_vision checkpoint?")
    })
}

fn dims(infos: &HashMap<String, ArrayInfo>) -> Result<Dims> {
    let kernel = shape(infos, "img/embedding/kernel")?; // [P, P, 3, D]
    let pos = shape(infos, "img/pos_embedding")?; // [1, N, D]
    let query =
        shape(infos, "img/Transformer/encoderblock/MultiHeadDotProductAttention_0/query/kernel")?; // [L, D, H, hd]
    let fc1 = shape(infos, "img/Transformer/encoderblock/MlpBlock_0/Dense_0/kernel")?; // [L, D, F]
    let q = shape(infos, "llm/layers/attn/q_einsum/w")?; // [L, N, D, hd]
    let kv = shape(infos, "llm/layers/attn/kv_einsum/w")?; // [L, 2, K, D, hd]
    let gating = shape(infos, "llm/layers/mlp/gating_einsum")?; // [L, 2, D, F]
    let embed = shape(infos, "llm/embedder/input_embedding")?; // [V, D]
    let (bad_rank, n) = (
        |name: &str| format!("array `{name}` has an unexpected rank"),
        pos.get(1).copied().unwrap_or(0),
    );
    if kernel.len() != 4
        || pos.len() != 3
        || query.len() != 4
        || q.len() != 4
        || kv.len() != 5
        || gating.len() != 4
    {
        bail!(bad_rank("img/embedding/kernel, img/pos_embedding or llm/layers/*"));
    }
    let grid = (n as f64).sqrt() as usize;
    if grid * grid != n {
        bail!("img/pos_embedding has {n} positions, not a square grid");
    }
    let bv_vocab = embed[0];
    Ok(Dims {
        vision: kernel[3],
        vision_mlp: fc1[2],
        vision_layers: query[0],
        vision_heads: query[2],
        patch: kernel[0],
        image_size: grid * kernel[0],
        image_tokens: n,
        text: embed[1],
        text_mlp: gating[3],
        text_layers: q[0],
        heads: q[1],
        kv_heads: kv[2],
        head_dim: q[3],
        bv_vocab,
        vocab: (bv_vocab + 1).div_ceil(64) * 64,
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
    for (bv, hf) in
        [("pre_attention_norm", "input_layernorm"), ("pre_ffw_norm", "post_attention_layernorm")]
    {
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

/// Converts and returns a one-line summary.
pub fn convert(
    from: &Path,
    to: &Path,
    dtype: Option<Dtype>,
    tokenizer: Option<&Path>,
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
    let dims = dims(&infos)?;
    let pieces = plan(&dims);
    let used: std::collections::HashSet<&str> = pieces.iter().map(|p| p.src.as_str()).collect();
    if let Some(extra) = infos.keys().filter(|k| !used.contains(k.as_str())).min() {
        bail!(
            "{}: unexpected array `{extra}` (not part of PaliGemma v1; a PaliGemma 2 checkpoint?)",
            from.display()
        );
    }
    let src_dtype = infos[&pieces[0].src].dtype;
    if let Some(k) = infos.iter().find(|(_, i)| i.dtype != src_dtype).map(|(k, _)| k) {
        bail!("{}: arrays are stored in mixed dtypes (`{k}` differs)", from.display());
    }
    let out_dtype = dtype.unwrap_or(src_dtype);

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

    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    let final_path = to.join("model.safetensors");
    let tmp = to.join("model.safetensors.tmp");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 22, file);
    w.write_all(&(header.len() as u64).to_le_bytes())?;
    w.write_all(&header)?;
    let bar = indicatif::ProgressBar::new(offset as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("converting {bar:40} {bytes}/{total_bytes} {eta}")
            .expect("valid template"),
    );
    let mut order: Vec<&str> = vec![];
    for p in &pieces {
        if !order.contains(&p.src.as_str()) {
            order.push(&p.src);
        }
    }
    // Pieces are written in plan order; group reads so each source array is read once, keeping its pieces' bytes
    // until their turn (plan order already groups them by source).
    let mut cache: Option<(String, ArrayInfo, Vec<u8>)> = None;
    for p in &pieces {
        if cache.as_ref().map(|c| c.0.as_str()) != Some(p.src.as_str()) {
            let (info, data) = npz.read(&stored[&p.src])?;
            cache = Some((p.src.clone(), info, data));
        }
        let (_, info, data) = cache.as_ref().expect("just filled");
        let bytes = cast(extract(p, info, data)?, info.dtype, out_dtype);
        w.write_all(&bytes)?;
        bar.inc(bytes.len() as u64);
    }
    bar.finish_and_clear();
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &final_path)?;

    write_atomic(&to.join("config.json"), config_json(&dims, out_dtype).as_bytes())?;
    if let Some(tok) = tokenizer {
        let text = std::fs::read(tok).with_context(|| format!("reading {}", tok.display()))?;
        write_atomic(&to.join("tokenizer.json"), &text)?;
    }
    Ok(format!(
        "wrote {} ({} tensors, {:.1} MB, {}) and config.json: SigLIP {}px/{} ({} image tokens, {} layers), Gemma {} layers, vocab {}",
        final_path.display(),
        pieces.len(),
        offset as f64 / 1e6,
        out_dtype.st_name(),
        dims.image_size,
        dims.patch,
        dims.image_tokens,
        dims.vision_layers,
        dims.text_layers,
        dims.vocab
    ))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

fn config_json(d: &Dims, dtype: Dtype) -> String {
    let torch_dtype = match dtype {
        Dtype::F32 => "float32",
        Dtype::F16 => "float16",
        Dtype::Bf16 => "bfloat16",
    };
    let cfg = serde_json::json!({
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

    /// The tiny big_vision checkpoint the generator wrote from the `mqa` model converts back to exactly the weights
    /// transformers saved (hub names), except the vocabulary rows HF made up (here: the mean row).
    fn round_trip(npz: &str, out_dtype: Option<Dtype>, expect: Dtype) {
        let tag = out_dtype.map_or("stored", Dtype::st_name);
        let out =
            std::env::temp_dir().join(format!("pg-convert-{npz}-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        convert(&fixtures().join(npz), &out, out_dtype, None).unwrap();
        let got = tensors(&out.join("model.safetensors"));
        let want = tensors(&fixtures().join("mqa-hub/model.safetensors"));
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixtures().join("mqa-bv.json")).unwrap())
                .unwrap();
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
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        let hf: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures().join("mqa/config.json")).unwrap(),
        )
        .unwrap();
        for key in ["image_token_index", "vocab_size"] {
            assert_eq!(cfg[key], hf[key], "{key}");
        }
        for sub in ["text_config", "vision_config"] {
            for (k, v) in cfg[sub].as_object().unwrap() {
                if hf[sub].get(k).is_some() && k != "rope_theta" && k != "model_type" {
                    assert_eq!(v, &hf[sub][k], "{sub}.{k}");
                }
            }
        }
        std::fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn f32_npz_round_trips_to_the_hf_weights() {
        round_trip("mqa-bv.npz", None, Dtype::F32);
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
        let err = convert(&fixtures().join("mqa/config.json"), &out, None, None).unwrap_err();
        assert!(format!("{err:#}").contains("not an .npz"), "{err:#}");
        assert!(parse_dtype("int8").unwrap_err().to_string().contains("expected f32, bf16 or f16"));
        assert!(!out.join("model.safetensors").exists());
    }
}
