//! `PaliGemmaConfig` with HF `config.json` names, for PaliGemma 1 (Gemma-1 decoder) and PaliGemma 2 (Gemma-2 decoder,
//! `text_config.model_type: "gemma2"`).
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
    /// Gemma 1 (PaliGemma 1) or Gemma 2 (PaliGemma 2), by its `model_type`.
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

    /// `google/paligemma2-{3b,10b,28b}-pt-{224,448,896}` (and the `mix` checkpoints, which share the shapes):
    /// SigLIP so400m + the Gemma-2 2B / 9B / 27B decoder, the projector mapping to the decoder's width.
    pub fn paligemma2(size: u32, image_size: i64) -> Option<Self> {
        let text = GemmaConfig::paligemma2(size)?;
        if ![224, 448, 896].contains(&image_size) {
            return None;
        }
        let mut vision = SiglipVisionConfig::so400m_patch14(image_size);
        vision.projection_dim = Some(text.hidden_size);
        Some(Self {
            vision_config: vision,
            projection_dim: text.hidden_size,
            hidden_size: text.hidden_size,
            text_config: text,
            ..Self::pt(224)
        })
    }

    /// A released checkpoint by its hub id, with or without `google/`: `paligemma-3b-{pt,mix}-{224,448,896}` and
    /// `paligemma2-{3b,10b,28b}-{pt,mix}-{224,448,896}` (the `mix` checkpoints have the `pt` shapes).
    pub fn named(id: &str) -> Option<Self> {
        let name = id.strip_prefix("google/").unwrap_or(id);
        let parts: Vec<&str> = name.split('-').collect();
        let [family, size, kind, res] = parts[..] else { return None };
        let res: i64 = res.parse().ok()?;
        if !["pt", "mix"].contains(&kind) || ![224, 448, 896].contains(&res) {
            return None;
        }
        match (family, size) {
            ("paligemma", "3b") => Some(Self::pt(res)),
            ("paligemma2", s) => Self::paligemma2(s.strip_suffix('b')?.parse().ok()?, res),
            _ => None,
        }
    }

    /// `"PaliGemma 1"` or `"PaliGemma 2"`, by the decoder.
    pub fn generation(&self) -> &'static str {
        match self.text_config.architecture() {
            gemma::Architecture::Gemma1 => "PaliGemma 1",
            gemma::Architecture::Gemma2 => "PaliGemma 2",
        }
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
        let mut value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        if let Some(text_config) = value.get_mut("text_config") {
            GemmaConfig::prepare_value(text_config)
                .map_err(|m| err(format!("text_config: {m}")))?;
        }
        let cfg: Self = serde_path_to_error::deserialize(value)
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
                "model_type is `{}`; this crate implements PaliGemma 1 and 2 (`paligemma`, with a `gemma` or \
                 `gemma2` text_config)",
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
