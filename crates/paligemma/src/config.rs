//! `PaliGemmaConfig` with HF `config.json` names.
//!
//! Missing sub-config fields take transformers' defaults for that sub-config (as `PaliGemmaConfig.__init__` does);
//! a missing `vision_config`/`text_config` takes transformers' PaliGemma defaults, which are known to be wrong for
//! the released weights (vision MLP 4096 instead of 4304, `image_token_index` 256000 instead of 257152): the load-time
//! checks against the checkpoint and the tokenizer catch such a config. The named constructors are the real models.
use crate::{PaliGemmaError, Result};
use gemma::GemmaConfig;
use serde::{Deserialize, Serialize};
use siglip::SiglipVisionConfig;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaliGemmaConfig {
    #[serde(default = "d_vision_config")]
    pub vision_config: SiglipVisionConfig,
    #[serde(default = "d_text_config")]
    pub text_config: GemmaConfig,
    /// transformers 5.x reads it as `image_token_id` too.
    #[serde(default = "d_image_token_index", alias = "image_token_id")]
    pub image_token_index: i64,
    #[serde(default = "d_projection_dim")]
    pub projection_dim: i64,
    #[serde(default = "d_hidden_size")]
    pub hidden_size: i64,
    #[serde(default = "d_pad")]
    pub pad_token_id: i64,
    #[serde(default = "d_bos")]
    pub bos_token_id: i64,
    #[serde(default = "d_eos")]
    pub eos_token_id: i64,
    #[serde(default = "d_model_type")]
    pub model_type: String,
}

fn d_vision_config() -> SiglipVisionConfig {
    SiglipVisionConfig { intermediate_size: 4096, ..SiglipVisionConfig::so400m_patch14(224) }
}
fn d_text_config() -> GemmaConfig {
    GemmaConfig { vocab_size: 257152, ..GemmaConfig::paligemma_2b() }
}
fn d_image_token_index() -> i64 {
    256000
}
fn d_projection_dim() -> i64 {
    2048
}
fn d_hidden_size() -> i64 {
    2048
}
fn d_pad() -> i64 {
    0
}
fn d_bos() -> i64 {
    2
}
fn d_eos() -> i64 {
    1
}
fn d_model_type() -> String {
    "paligemma".into()
}

impl PaliGemmaConfig {
    fn pt(image_size: i64) -> Self {
        Self {
            vision_config: SiglipVisionConfig::so400m_patch14(image_size),
            text_config: GemmaConfig::paligemma_2b(),
            image_token_index: 257152,
            projection_dim: 2048,
            hidden_size: 2048,
            pad_token_id: 0,
            bos_token_id: 2,
            eos_token_id: 1,
            model_type: "paligemma".into(),
        }
    }

    /// `google/paligemma-3b-pt-224`: 256 image tokens.
    pub fn paligemma_3b_pt_224() -> Self {
        Self::pt(224)
    }

    /// `google/paligemma-3b-pt-448`: 1024 image tokens.
    pub fn paligemma_3b_pt_448() -> Self {
        Self::pt(448)
    }

    /// `google/paligemma-3b-pt-896`: 4096 image tokens.
    pub fn paligemma_3b_pt_896() -> Self {
        Self::pt(896)
    }

    /// A tiny model for tests: 32 px images, 16 image tokens, width 32 / 48, vocabulary `vocab_size` whose last
    /// real id `image_token_index` is `<image>`.
    pub fn tiny(vocab_size: i64, image_token_index: i64) -> Self {
        let mut vision = SiglipVisionConfig::tiny();
        vision.projection_dim = Some(48);
        Self {
            vision_config: vision,
            text_config: GemmaConfig::tiny(vocab_size),
            image_token_index,
            projection_dim: 48,
            hidden_size: 48,
            ..Self::pt(224)
        }
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let err = |msg: String| PaliGemmaError::File { path: path.to_path_buf(), msg };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let de = &mut serde_json::Deserializer::from_str(&text);
        let cfg: Self = serde_path_to_error::deserialize(de)
            .map_err(|e| err(format!("key `{}`: {}", e.path(), e.inner())))?;
        cfg.validate().map_err(|e| err(e.to_string()))?;
        Ok(cfg)
    }

    /// Image tokens per image, derived from the vision config: `(image_size / patch_size)^2`.
    pub fn num_image_tokens(&self) -> i64 {
        self.vision_config.num_patches()
    }

    /// The projector's output width (transformers 5.x reads `vision_config.projection_dim`).
    pub fn projector_dim(&self) -> i64 {
        self.vision_config.projection_dim.unwrap_or(self.projection_dim)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(PaliGemmaError::Config(m));
        if self.model_type != "paligemma" {
            return bad(format!(
                "model_type is `{}`; this crate implements PaliGemma v1 (`paligemma`)",
                self.model_type
            ));
        }
        self.vision_config.validate()?;
        self.text_config.validate()?;
        if self.projector_dim() != self.text_config.hidden_size {
            return bad(format!(
                "projection_dim {} must equal the text hidden_size {}",
                self.projector_dim(),
                self.text_config.hidden_size
            ));
        }
        let v = self.text_config.vocab_size;
        for (name, id) in [
            ("image_token_index", self.image_token_index),
            ("pad_token_id", self.pad_token_id),
            ("bos_token_id", self.bos_token_id),
            ("eos_token_id", self.eos_token_id),
        ] {
            if !(0..v).contains(&id) {
                return bad(format!(
                    "{name} {id} is outside the vocabulary (text_config.vocab_size {v})"
                ));
            }
        }
        Ok(())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serializes")
    }
}
