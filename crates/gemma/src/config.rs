//! `GemmaConfig` with HF `config.json` names, for Gemma 1 (`model_type: "gemma"`) and Gemma 2 (`"gemma2"`). A field a
//! config omits means what it means to transformers 5.23: serde defaults are `GemmaConfig`'s (Gemma-7B), and
//! `from_value` first fills a Gemma-2 config's omitted fields with `Gemma2Config`'s defaults (Gemma-2 2B, soft-capping
//! 50 / 30, window 4096). `paligemma_2b()` and `paligemma2(..)` give the language models of PaliGemma 1 and 2.
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
    /// `"gemma"` (absent in old configs) or `"gemma2"`; anything else is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    /// Gemma 2: `tanh(logits / c) * c` on the output logits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_logit_softcapping: Option<f64>,
    /// Gemma 2: `tanh(scores / c) * c` on the attention scores, before the mask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attn_logit_softcapping: Option<f64>,
    /// Gemma 2: the attention scale is `query_pre_attn_scalar^-0.5` (Gemma 1: `head_dim^-0.5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_pre_attn_scalar: Option<f64>,
    /// Gemma 2: the window of the `sliding_attention` layers (a query sees the keys less than this many positions
    /// back, plus its own bidirectional block).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window: Option<i64>,
    /// Gemma 2: each layer's attention; absent means transformers' default, sliding on even layers (0, 2, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_types: Option<Vec<LayerType>>,
}

/// Which attention a Gemma-2 layer runs (HF `layer_types` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerType {
    FullAttention,
    SlidingAttention,
}

/// The decoder generations this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Gemma1,
    Gemma2,
}

/// `Gemma2Config`'s defaults (transformers 5.23) for the fields where they differ from `GemmaConfig`'s.
fn gemma2_defaults() -> serde_json::Value {
    serde_json::json!({
        "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26, "num_attention_heads": 8,
        "num_key_value_heads": 4, "head_dim": 256, "query_pre_attn_scalar": 256.0, "sliding_window": 4096,
        "final_logit_softcapping": 30.0, "attn_logit_softcapping": 50.0, "vocab_size": 256000,
    })
}

/// Fields of later Gemma generations (or of RoPE variants) that change the computation and that this crate does not
/// implement: a config that sets one is refused rather than run wrongly.
const UNSUPPORTED_FIELDS: [&str; 6] = [
    "rope_scaling",
    "rope_local_base_freq",
    "sliding_window_pattern",
    "use_qk_norm",
    "altup_num_inputs",
    "hidden_size_per_layer_input",
];

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
            model_type: Some("gemma".into()),
            final_logit_softcapping: None,
            attn_logit_softcapping: None,
            query_pre_attn_scalar: None,
            sliding_window: None,
            layer_types: None,
        }
    }

    /// PaliGemma 2's language models (transformers `convert_paligemma2_weights_to_hf.py`, on Gemma-2 2B's config):
    /// `size` is 3 (Gemma-2 2B), 10 (9B) or 28 (27B); the 257,216-token vocabulary of the HF checkpoints.
    pub fn paligemma2(size: u32) -> Option<Self> {
        // (hidden, layers, mlp, kv heads, heads, head_dim)
        let (d, n, f, kv, h, hd) = match size {
            3 => (2304, 26, 9216, 4, 8, 256),
            10 => (3584, 42, 14336, 8, 16, 256),
            28 => (4608, 46, 36864, 16, 32, 128),
            _ => return None,
        };
        let shapes = Self {
            hidden_size: d,
            num_hidden_layers: n,
            intermediate_size: f,
            num_key_value_heads: kv,
            num_attention_heads: h,
            head_dim: hd,
            ..Self::paligemma_2b()
        };
        let mut cfg = shapes.into_gemma2(4096);
        if size == 28 {
            // the 27B scales by hidden / heads (4608 / 32 = 144), not head_dim
            cfg.query_pre_attn_scalar = Some((d / h) as f64);
        }
        Some(cfg)
    }

    /// These shapes as a Gemma-2 decoder with PaliGemma 2's settings: soft-capping 50 (attention) and 30 (logits),
    /// the attention scaled by `head_dim`, global and `window`-wide layers alternating, `hidden_activation` tanh GELU.
    pub fn into_gemma2(self, window: i64) -> Self {
        Self {
            model_type: Some("gemma2".into()),
            hidden_act: None,
            hidden_activation: Some(Activation::GeluTanh),
            final_logit_softcapping: Some(30.0),
            attn_logit_softcapping: Some(50.0),
            query_pre_attn_scalar: Some(self.head_dim as f64),
            sliding_window: Some(window),
            ..self
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
        let value = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        let cfg = Self::from_value(value).map_err(err)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a `config.json` object as transformers reads it (`prepare_value`, then the fields). Errors name the key.
    pub fn from_value(mut value: serde_json::Value) -> Result<Self, String> {
        Self::prepare_value(&mut value)?;
        serde_path_to_error::deserialize(value)
            .map_err(|e| format!("key `{}`: {}", e.path(), e.inner()))
    }

    /// What transformers does before reading the fields: a Gemma-2 config's omitted fields take `Gemma2Config`'s
    /// defaults. A field that changes the computation and is not implemented here is refused, named.
    pub fn prepare_value(value: &mut serde_json::Value) -> Result<(), String> {
        let Some(map) = value.as_object_mut() else { return Ok(()) };
        if let Some(key) =
            UNSUPPORTED_FIELDS.iter().find(|k| map.get(**k).is_some_and(|v| !v.is_null()))
        {
            return Err(format!(
                "key `{key}`: not supported (this crate implements Gemma 1 and Gemma 2 with default RoPE)"
            ));
        }
        if map.get("model_type").and_then(|t| t.as_str()) == Some("gemma2") {
            if let serde_json::Value::Object(defaults) = gemma2_defaults() {
                for (k, v) in defaults {
                    map.entry(k).or_insert(v);
                }
            }
        }
        Ok(())
    }

    pub fn architecture(&self) -> Architecture {
        match self.model_type.as_deref() {
            Some("gemma2") => Architecture::Gemma2,
            _ => Architecture::Gemma1,
        }
    }

    /// The attention scale: `query_pre_attn_scalar^-0.5`, or `head_dim^-0.5` when it is not set (Gemma 1).
    pub fn attention_scale(&self) -> f64 {
        self.query_pre_attn_scalar.unwrap_or(self.head_dim as f64).powf(-0.5)
    }

    /// The window of layer `i` when it is a sliding-window layer (Gemma 2), `None` for global attention.
    pub fn layer_window(&self, i: usize) -> Option<i64> {
        if self.architecture() != Architecture::Gemma2 {
            return None;
        }
        let sliding = match &self.layer_types {
            Some(types) => types.get(i) == Some(&LayerType::SlidingAttention),
            None => i % 2 == 0,
        };
        self.sliding_window.filter(|_| sliding)
    }

    pub fn rope_theta(&self) -> f64 {
        self.rope_parameters.as_ref().map(|r| r.rope_theta).or(self.rope_theta).unwrap_or(10000.0)
    }

    /// The MLP activation. Gemma 1 is defined with tanh-approximate GELU; early hub configs say `"gelu"`, which
    /// transformers (>= 4.38) and big_vision both run as the tanh approximation, and so do we.
    pub fn activation(&self) -> Activation {
        if self.architecture() == Architecture::Gemma2 {
            // Gemma2MLP reads `hidden_activation` only, as it is written.
            return self.hidden_activation.unwrap_or(Activation::GeluTanh);
        }
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
        match self.model_type.as_deref() {
            None | Some("gemma") | Some("gemma2") => {}
            Some(other) => {
                return bad(format!(
                    "model_type `{other}` is not supported (this crate implements `gemma` and `gemma2`)"
                ))
            }
        }
        let gemma2 = self.architecture() == Architecture::Gemma2;
        if !gemma2 {
            let g2 = [
                ("final_logit_softcapping", self.final_logit_softcapping.is_some()),
                ("attn_logit_softcapping", self.attn_logit_softcapping.is_some()),
                ("query_pre_attn_scalar", self.query_pre_attn_scalar.is_some()),
                ("sliding_window", self.sliding_window.is_some()),
                ("layer_types", self.layer_types.is_some()),
            ];
            if let Some((key, _)) = g2.iter().find(|(_, set)| *set) {
                return bad(format!(
                    "`{key}` is a Gemma-2 field, but model_type is `gemma` (Gemma 1, PaliGemma 1): a Gemma-2 \
                     (PaliGemma 2) config says `\"model_type\": \"gemma2\"`"
                ));
            }
        }
        for (key, v) in [
            ("final_logit_softcapping", self.final_logit_softcapping),
            ("attn_logit_softcapping", self.attn_logit_softcapping),
            ("query_pre_attn_scalar", self.query_pre_attn_scalar),
            ("sliding_window", self.sliding_window.map(|w| w as f64)),
        ] {
            if v.is_some_and(|v| v.is_nan() || v <= 0.0) {
                return bad(format!("{key} must be positive, got {}", v.unwrap_or_default()));
            }
        }
        if let Some(types) = &self.layer_types {
            if types.len() as i64 != self.num_hidden_layers {
                return bad(format!(
                    "layer_types has {} entries for {} layers",
                    types.len(),
                    self.num_hidden_layers
                ));
            }
        }
        if !self.tie_word_embeddings {
            return bad(
                "Gemma ties the output head to the embeddings (tie_word_embeddings must be true)"
                    .into(),
            );
        }
        Ok(())
    }
}
