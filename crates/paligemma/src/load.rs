//! Loading an HF-format PaliGemma directory: `config.json`, safetensors (single or sharded, either naming scheme),
//! `tokenizer.json`. Everything is cross-checked before any weight is copied: the number of image tokens the vision
//! config implies against the checkpoint's position table, and the tokenizer's special ids against the config.
use crate::{names, PaliGemma, PaliGemmaConfig, PaliGemmaError, PaliGemmaTokenizer, Result};
use std::path::Path;
use tch::{nn, Device};
use weights::{Checkpoint, DType, KeyMapping, ParamInit};

#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// `None` keeps the stored dtype.
    pub dtype: Option<DType>,
    pub device: Device,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { dtype: None, device: Device::Cpu }
    }
}

pub struct Loaded {
    pub vs: nn::VarStore,
    pub model: PaliGemma,
    pub tokenizer: PaliGemmaTokenizer,
}

pub fn load(dir: &Path, opts: LoadOptions) -> Result<Loaded> {
    let cfg = PaliGemmaConfig::from_file(&dir.join("config.json"))?;
    let tokenizer = PaliGemmaTokenizer::from_file(&dir.join("tokenizer.json"), &cfg)?;
    let ckpt = Checkpoint::open(dir)?;
    check_image_tokens(&cfg, &ckpt)?;
    let kind = match opts.dtype {
        Some(d) => d.kind(),
        None => ckpt.float_kind()?,
    };
    let mut vs = nn::VarStore::new(opts.device);
    vs.set_kind(kind);
    let model = PaliGemma::new(vs.root(), &cfg, ParamInit::Empty)?;
    let report = weights::load_into(&vs, &ckpt, names::paligemma_key)?;
    tracing::info!(
        dir = %dir.display(),
        tensors = report.loaded,
        ignored = ?report.ignored,
        kind = ?kind,
        image_tokens = cfg.num_image_tokens(),
        "loaded PaliGemma"
    );
    Ok(Loaded { vs, model, tokenizer })
}

/// The checkpoint's position table must have one row per image token the config implies (a 448 px config with
/// 224 px weights would otherwise fail later, or worse, silently run with the wrong sequence length).
fn check_image_tokens(cfg: &PaliGemmaConfig, ckpt: &Checkpoint) -> Result<()> {
    let want = "vision_tower.vision_model.embeddings.position_embedding.weight";
    let key = ckpt.names().find(|k| names::paligemma_key(k) == KeyMapping::Var(want.into()));
    if let Some(key) = key {
        let rows = ckpt.info(key).map_or(0, |i| i.shape[0]);
        if rows != cfg.num_image_tokens() {
            return Err(PaliGemmaError::File {
                path: ckpt.file_of(key).to_path_buf(),
                msg: format!(
                    "the checkpoint has {rows} image positions (`{key}`), but config.json implies {} image tokens \
                     (image_size {} / patch_size {}): config and weights are for different resolutions",
                    cfg.num_image_tokens(),
                    cfg.vision_config.image_size,
                    cfg.vision_config.patch_size
                ),
            });
        }
    }
    Ok(())
}
