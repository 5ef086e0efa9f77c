//! The vision tower (`SiglipVisionTransformer` without head) and standalone SigLIP checkpoint loading.
use crate::{Embeddings, Encoder, LayerNorm, SiglipConfig, SiglipError, SiglipVisionConfig};
use std::path::Path;
use tch::{nn, Device, Tensor};
use weights::{Checkpoint, DType, KeyMapping, ParamInit};

#[derive(Debug)]
pub struct SiglipVisionModel {
    pub embeddings: Embeddings,
    pub encoder: Encoder,
    pub post_layernorm: LayerNorm,
    pub config: SiglipVisionConfig,
}

impl SiglipVisionModel {
    /// Builds the tower under `path` with the variables `embeddings.*`, `encoder.layers.N.*`, `post_layernorm.*`.
    pub fn new(
        path: nn::Path,
        cfg: &SiglipVisionConfig,
        init: ParamInit,
    ) -> Result<Self, SiglipError> {
        cfg.validate()?;
        Ok(Self {
            embeddings: Embeddings::new(path.sub("embeddings"), cfg, init),
            encoder: Encoder::new(path.sub("encoder"), cfg, init),
            post_layernorm: LayerNorm::new(
                path.sub("post_layernorm"),
                cfg.hidden_size,
                cfg.layer_norm_eps,
                init,
            ),
            config: cfg.clone(),
        })
    }

    /// `pixel_values [B, 3, H, W]` in [-1, 1] -> `last_hidden_state [B, num_patches, hidden]`.
    pub fn forward(&self, pixel_values: &Tensor) -> Tensor {
        self.forward_t(pixel_values, false)
    }

    pub fn forward_t(&self, pixel_values: &Tensor, train: bool) -> Tensor {
        let xs = self.embeddings.forward(pixel_values);
        self.post_layernorm.forward(&self.encoder.forward_t(&xs, train))
    }

    /// Loads a standalone SigLIP directory (`config.json` + safetensors) saved from `SiglipModel` (its text tower,
    /// logit scale/bias and pooling head are ignored) or `SiglipVisionModel`. `dtype: None` keeps the stored one.
    pub fn load(
        dir: &Path,
        dtype: Option<DType>,
        device: Device,
    ) -> Result<(nn::VarStore, Self), SiglipError> {
        let cfg = SiglipConfig::vision_from_file(&dir.join("config.json"))?;
        let ckpt = Checkpoint::open(dir)?;
        let kind = match dtype {
            Some(d) => d.kind(),
            None => ckpt.float_kind()?,
        };
        let mut vs = nn::VarStore::new(device);
        vs.set_kind(kind);
        let model = Self::new(vs.root(), &cfg, ParamInit::Empty)?;
        weights::load_into(&vs, &ckpt, standalone_key)?;
        Ok((vs, model))
    }
}

/// Maps a key of a standalone SigLIP checkpoint to the tower's variable names.
pub fn standalone_key(key: &str) -> KeyMapping {
    let inner = key.strip_prefix("vision_model.").unwrap_or(key);
    let ignored = key.starts_with("text_model.")
        || key == "logit_scale"
        || key == "logit_bias"
        || inner.starts_with("head.")
        || inner.ends_with("position_ids");
    if ignored {
        KeyMapping::Ignore
    } else {
        KeyMapping::Var(inner.to_string())
    }
}
