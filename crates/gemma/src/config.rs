//! `GemmaConfig` with HF `config.json` names. Serde defaults are transformers' `GemmaConfig` defaults (Gemma-7B),
//! so a config that omits a field means what it means to transformers; `paligemma_2b()` gives PaliGemma's LM.
use crate::GemmaError;
use layers::Activation;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeParameters {
    #[serde(default = "d_rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "d_rope_type")]
    pub rope_type: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GemmaConfig {
    #[serde(default = "d_vocab_size")]
    pub vocab_size: i64,
    #[serde(default = "d_hidden_size")]
    pub hidden_size: i64,
    #[serde(default = "d_intermediate_size")]
    pub intermediate_size: i64,
    #[serde(default = "d_num_hidden_layers")]
    pub num_hidden_layers: i64,
    #[serde(default = "d_num_attention_heads")]
    pub num_attention_heads: i64,
    #[serde(default = "d_num_key_value_heads")]
    pub num_key_value_heads: i64,
    #[serde(default = "d_head_dim")]
    pub head_dim: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_act: Option<Activation>,
    /// Older Gemma configs: takes precedence over `hidden_act` when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_activation: Option<Activation>,
    #[serde(default = "d_max_position_embeddings")]
    pub max_position_embeddings: i64,
    #[serde(default = "d_rms_norm_eps")]
    pub rms_norm_eps: f64,
    /// transformers <= 4.x writes `rope_theta`; 5.x writes `rope_parameters.rope_theta`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<RopeParameters>,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default = "d_true")]
    pub tie_word_embeddings: bool,
    #[serde(default = "d_initializer_range")]
    pub initializer_range: f64,
    #[serde(default)]
    pub pad_token_id: Option<i64>,
    #[serde(default)]
    pub bos_token_id: Option<i64>,
    #[serde(default)]
    pub eos_token_id: Option<i64>,
    /// Gemma-2/3 fields. Present and non-null means a different architecture, which this crate refuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_logit_softcapping: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attn_logit_softcapping: Option<f64>,
}

fn d_vocab_size() -> i64 {
    256000
}
fn d_hidden_size() -> i64 {
    3072
}
fn d_intermediate_size() -> i64 {
    24576
}
fn d_num_hidden_layers() -> i64 {
    28
}
fn d_num_attention_heads() -> i64 {
    16
}
fn d_num_key_value_heads() -> i64 {
    16
}
fn d_head_dim() -> i64 {
    256
}
fn d_max_position_embeddings() -> i64 {
    8192
}
fn d_rms_norm_eps() -> f64 {
    1e-6
}
fn d_rope_theta() -> f64 {
    10000.0
}
fn d_rope_type() -> String {
    "default".into()
}
fn d_true() -> bool {
    true
}
fn d_initializer_range() -> f64 {
    0.02
}

impl GemmaConfig {
    /// PaliGemma's language model (Gemma-2B): 18 layers, width 2048, 8 query heads over 1 KV head of 256, MLP 16384,
    /// and the 257,216-token vocabulary of the HF checkpoints (257,152 real tokens + `<image>`, padded to 64).
    pub fn paligemma_2b() -> Self {
        Self {
            vocab_size: 257216,
            hidden_size: 2048,
            intermediate_size: 16384,
            num_hidden_layers: 18,
            num_attention_heads: 8,
            num_key_value_heads: 1,
            head_dim: 256,
            hidden_act: Some(Activation::GeluTanh),
            hidden_activation: None,
            max_position_embeddings: 8192,
            rms_norm_eps: 1e-6,
            rope_theta: Some(10000.0),
            rope_parameters: None,
            attention_bias: false,
            tie_word_embeddings: true,
            initializer_range: 0.02,
            pad_token_id: Some(0),
            bos_token_id: Some(2),
            eos_token_id: Some(1),
            final_logit_softcapping: None,
            attn_logit_softcapping: None,
        }
    }

    /// A tiny decoder for tests: width 48, 2 layers, 4 query heads over 1 KV head of 12.
    pub fn tiny(vocab_size: i64) -> Self {
        Self {
            vocab_size,
            hidden_size: 48,
            intermediate_size: 64,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 1,
            head_dim: 12,
            ..Self::paligemma_2b()
        }
    }

    pub fn from_file(path: &Path) -> Result<Self, GemmaError> {
        let err = |msg: String| GemmaError::ConfigFile { path: path.to_path_buf(), msg };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let cfg: Self = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn rope_theta(&self) -> f64 {
        self.rope_parameters.as_ref().map(|r| r.rope_theta).or(self.rope_theta).unwrap_or(10000.0)
    }

    /// The MLP activation. Gemma 1 is defined with tanh-approximate GELU; early hub configs say `"gelu"`, which
    /// transformers (>= 4.38) and big_vision both run as the tanh approximation, and so do we.
    pub fn activation(&self) -> Activation {
        match self.hidden_activation.or(self.hidden_act) {
            None | Some(Activation::Gelu) => Activation::GeluTanh,
            Some(a) => a,
        }
    }

    pub fn validate(&self) -> Result<(), GemmaError> {
        let bad = |m: String| Err(GemmaError::Config(m));
        if self.num_key_value_heads <= 0 || self.num_attention_heads % self.num_key_value_heads != 0
        {
            return bad(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if self.head_dim % 2 != 0 {
            return bad(format!("head_dim {} must be even for rotary embeddings", self.head_dim));
        }
        if let Some(rp) = &self.rope_parameters {
            if rp.rope_type != "default" {
                return bad(format!(
                    "rope_type `{}` is not supported (Gemma 1 uses `default`)",
                    rp.rope_type
                ));
            }
        }
        if self.final_logit_softcapping.is_some() || self.attn_logit_softcapping.is_some() {
            return bad(
                "logit soft-capping is a Gemma-2 feature; this is a Gemma-1 (PaliGemma v1) model"
                    .into(),
            );
        }
        if !self.tie_word_embeddings {
            return bad(
                "Gemma 1 ties the output head to the embeddings (tie_word_embeddings must be true)"
                    .into(),
            );
        }
        Ok(())
    }
}
