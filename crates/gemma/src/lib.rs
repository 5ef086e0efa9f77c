//! Gemma-1 decoder (the language model of PaliGemma v1): scaled token embeddings, rotate-half RoPE with f32 tables,
//! multi-query / grouped-query attention, RMSNorm with the `(1 + w)` scale in f32, GeGLU with tanh GELU, and the
//! output head tied to the embedding table (no soft-capping in Gemma 1).
//!
//! Follows transformers 5.23 `models/gemma/modeling_gemma.py` and big_vision `models/ppp/gemma.py`; see
//! the Gemma report (arXiv:2403.08295).
mod attention;
mod cache;
mod config;
mod decoder;
mod mask;
mod mlp;
mod model;
mod rms_norm;
mod rope;

pub use attention::Attention;
pub use cache::{KvCache, LayerKv};
pub use config::GemmaConfig;
pub use decoder::DecoderLayer;
pub use mask::{attention_mask, positions};
pub use mlp::Mlp;
pub use model::{causal_lm_key, Gemma, GemmaForCausalLM};
pub use rms_norm::RmsNorm;
pub use rope::Rope;

#[derive(Debug, thiserror::Error)]
pub enum GemmaError {
    #[error("invalid Gemma config: {0}")]
    Config(String),
    #[error("{path}: {msg}")]
    ConfigFile { path: std::path::PathBuf, msg: String },
    #[error(transparent)]
    Weights(#[from] weights::WeightsError),
}
