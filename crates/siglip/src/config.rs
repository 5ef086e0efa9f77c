//! `SiglipVisionConfig` with HF `config.json` field names; serde defaults are transformers' own defaults (the
//! SigLIP-base values), so a config that omits a field means what it means to transformers.
use crate::SiglipError;
use layers::Activation;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiglipVisionConfig {
    #[serde(default = "d_hidden_size")]
    pub hidden_size: i64,
    #[serde(default = "d_intermediate_size")]
    pub intermediate_size: i64,
    #[serde(default = "d_num_hidden_layers")]
    pub num_hidden_layers: i64,
    #[serde(default = "d_num_attention_heads")]
    pub num_attention_heads: i64,
    #[serde(default = "d_num_channels")]
    pub num_channels: i64,
    #[serde(default = "d_image_size")]
    pub image_size: i64,
    #[serde(default = "d_patch_size")]
    pub patch_size: i64,
    #[serde(default = "d_hidden_act")]
    pub hidden_act: Activation,
    #[serde(default = "d_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub attention_dropout: f64,
    /// PaliGemma's converter writes the projector width here; the projector reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection_dim: Option<i64>,
    /// The MAP pooling head. PaliGemma has none; standalone SigLIP checkpoints do, and it is ignored on load.
    #[serde(default = "d_vision_use_head")]
    pub vision_use_head: bool,
}

fn d_hidden_size() -> i64 {
    768
}
fn d_intermediate_size() -> i64 {
    3072
}
fn d_num_hidden_layers() -> i64 {
    12
}
fn d_num_attention_heads() -> i64 {
    12
}
fn d_num_channels() -> i64 {
    3
}
fn d_image_size() -> i64 {
    224
}
fn d_patch_size() -> i64 {
    16
}
fn d_hidden_act() -> Activation {
    Activation::GeluTanh
}
fn d_layer_norm_eps() -> f64 {
    1e-6
}
fn d_vision_use_head() -> bool {
    true
}

impl SiglipVisionConfig {
    /// SigLIP So400m/14 at 224 px as used by `google/paligemma-3b-pt-224` (27 layers, width 1152, MLP 4304).
    /// transformers' `PaliGemmaConfig()` default says MLP 4096, which does not match the real weights.
    pub fn so400m_patch14(image_size: i64) -> Self {
        Self {
            hidden_size: 1152,
            intermediate_size: 4304,
            num_hidden_layers: 27,
            num_attention_heads: 16,
            num_channels: 3,
            image_size,
            patch_size: 14,
            hidden_act: Activation::GeluTanh,
            layer_norm_eps: 1e-6,
            attention_dropout: 0.0,
            projection_dim: Some(2048),
            vision_use_head: false,
        }
    }

    /// A tiny tower for tests: 32 px images, patch 8 (16 tokens), width 32, 2 layers.
    pub fn tiny() -> Self {
        Self {
            hidden_size: 32,
            intermediate_size: 37,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_channels: 3,
            image_size: 32,
            patch_size: 8,
            hidden_act: Activation::GeluTanh,
            layer_norm_eps: 1e-6,
            attention_dropout: 0.0,
            projection_dim: None,
            vision_use_head: false,
        }
    }

    /// Patches per side.
    pub fn grid(&self) -> i64 {
        self.image_size / self.patch_size
    }

    /// Number of output tokens, `(image_size / patch_size)^2`: 256 at 224 px, 1024 at 448, 4096 at 896.
    pub fn num_patches(&self) -> i64 {
        self.grid() * self.grid()
    }

    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }

    pub fn validate(&self) -> Result<(), SiglipError> {
        let bad = |m: String| Err(SiglipError::Config(m));
        if self.patch_size <= 0 || self.image_size % self.patch_size != 0 {
            return bad(format!(
                "image_size {} is not a multiple of patch_size {}",
                self.image_size, self.patch_size
            ));
        }
        if self.num_attention_heads <= 0 || self.hidden_size % self.num_attention_heads != 0 {
            return bad(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.num_channels != 3 {
            return bad(format!("num_channels {} is not supported (RGB only)", self.num_channels));
        }
        Ok(())
    }
}

/// A standalone SigLIP `config.json`: either `SiglipConfig` (`model_type: "siglip"`, with `vision_config` and a text
/// tower that is ignored) or `SiglipVisionConfig` itself (`model_type: "siglip_vision_model"`).
#[derive(Debug, Clone, Deserialize)]
pub struct SiglipConfig {
    pub vision_config: SiglipVisionConfig,
}

impl SiglipConfig {
    pub fn vision_from_file(path: &Path) -> Result<SiglipVisionConfig, SiglipError> {
        let err = |msg: String| SiglipError::ConfigFile { path: path.to_path_buf(), msg };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| err(format!("invalid JSON: {e}")))?;
        let cfg: SiglipVisionConfig = if value.get("vision_config").is_some() {
            serde_json::from_value::<SiglipConfig>(value).map(|c| c.vision_config)
        } else {
            serde_json::from_value(value)
        }
        .map_err(|e| err(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }
}
