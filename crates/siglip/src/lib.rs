//! SigLIP vision tower without the pooling head, as PaliGemma uses it: patch embedding (a stride-`patch` conv),
//! learned position embeddings, pre-LN transformer encoder, post LayerNorm; the output is `last_hidden_state`
//! `[batch, num_patches, hidden]`.
//!
//! Follows transformers 5.23 `models/siglip/modeling_siglip.py` (`SiglipVisionTransformer`) and big_vision
//! `models/vit.py` (`pool_type="none"`); the SigLIP paper (arXiv:2303.15343) for the model.
mod attention;
mod config;
mod embeddings;
mod encoder;
mod layer_norm;
mod mlp;
mod model;

pub use attention::Attention;
pub use config::{SiglipConfig, SiglipVisionConfig};
pub use embeddings::Embeddings;
pub use encoder::{Encoder, EncoderLayer};
pub use layer_norm::LayerNorm;
pub use mlp::Mlp;
pub use model::{standalone_key, SiglipVisionModel};

#[derive(Debug, thiserror::Error)]
pub enum SiglipError {
    #[error("invalid SigLIP config: {0}")]
    Config(String),
    #[error("{path}: {msg}")]
    ConfigFile { path: std::path::PathBuf, msg: String },
    #[error(transparent)]
    Weights(#[from] weights::WeightsError),
}
