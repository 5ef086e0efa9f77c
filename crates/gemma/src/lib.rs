//! Gemma-1 and Gemma-2 decoders (the language models of PaliGemma 1 and 2): scaled token embeddings, rotate-half RoPE
//! with f32 tables, multi-query / grouped-query attention, RMSNorm with the `(1 + w)` scale in f32, GeGLU with tanh
//! GELU, and the output head tied to the embedding table. Gemma 2 adds, from its config: norms on the attention and
//! MLP outputs, `query_pre_attn_scalar`, attention-logit and final-logit soft-capping, and sliding-window attention on
//! alternating layers. Both run through the same layers, masks, cache and head; the config decides what is on.
//!
//! Follows transformers 5.23 `models/gemma/modeling_gemma.py` and `models/gemma2/modeling_gemma2.py`, and big_vision
//! `models/ppp/gemma.py`; see the Gemma reports (arXiv:2403.08295, arXiv:2408.00118).
mod attention;
mod cache;
mod config;
mod decode_attention;
mod decoder;
mod mask;
mod mlp;
mod model;
mod pass;
mod rms_norm;
mod rope;
mod row_moves;

pub use attention::{capped_attention, Attention};
pub use cache::{KvCache, LayerKv};
pub use config::{Architecture, GemmaConfig, LayerType};
pub use decode_attention::decode_attention;
pub use decoder::DecoderLayer;
pub use mask::{attention_mask, positions, sliding_window_mask};
pub use mlp::Mlp;
pub use model::{causal_lm_key, Gemma, GemmaForCausalLM};
pub use pass::Pass;
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
