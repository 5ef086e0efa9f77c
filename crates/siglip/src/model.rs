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
        let d = cfg.hidden_size;
        Ok(Self {
            embeddings: Embeddings::new(path.sub("embeddings"), cfg, init),
            encoder: Encoder::new(path.sub("encoder"), cfg, init),
            post_layernorm: LayerNorm::new(path.sub("post_layernorm"), d, cfg.layer_norm_eps, init),
            config: cfg.clone(),
        })
    }

    /// `pixel_values [B, 3, H, W]` in [-1, 1] -> `last_hidden_state [B, num_patches, hidden]`.
    pub fn forward(&self, pixel_values: &Tensor) -> Tensor {
        self.forward_t(pixel_values, false)
    }

    pub fn forward_t(&self, pixel_values: &Tensor, train: bool) -> Tensor {
        self.finish(&self.encoder.forward_t(&self.embed(pixel_values), train))
    }

    /// The patch + position embeddings, the input of the first layer.
    pub fn embed(&self, pixel_values: &Tensor) -> Tensor {
        self.embeddings.forward(pixel_values)
    }

    /// The post LayerNorm, applied to the last layer's output.
    pub fn finish(&self, hidden: &Tensor) -> Tensor {
        self.post_layernorm.forward(hidden)
    }

    /// The linear modules of each layer, relative to `encoder.layers.N` (LoRA targets), in
    /// `EncoderLayer::linears_mut` order.
    #[rustfmt::skip]
    pub const LINEAR_MODULES: [&str; 6] = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
        "self_attn.out_proj", "mlp.fc1", "mlp.fc2"];

    /// Loads a standalone SigLIP directory (`config.json` + safetensors) saved from `SiglipModel` (its text tower,
    /// logit scale/bias and pooling head are ignored) or `SiglipVisionModel`. `dtype: None` keeps the stored one.
    pub fn load(
        dir: &Path,
        dtype: Option<DType>,
        device: Device,
    ) -> Result<(nn::VarStore, Self), SiglipError> {
        let cfg = SiglipConfig::vision_from_file(&dir.join("config.json"))?;
        let ckpt = Checkpoint::open(dir)?;
        let kind = dtype.map_or_else(|| ckpt.float_kind(), |d| Ok(d.kind()))?;
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
