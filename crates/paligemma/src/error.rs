//! Errors of the composition crate.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PaliGemmaError {
    #[error("invalid PaliGemma config: {0}")]
    Config(String),
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error("tokenizer {path}: {msg}")]
    Tokenizer { path: PathBuf, msg: String },
    #[error("{0}")]
    Sequence(String),
    #[error("the batch has no supervised token (every label is ignored): check that each example has a suffix")]
    NoSupervisedTokens,
    #[error(transparent)]
    Weights(#[from] weights::WeightsError),
    #[error(transparent)]
    Siglip(#[from] siglip::SiglipError),
    #[error(transparent)]
    Gemma(#[from] gemma::GemmaError),
    #[error("libtorch: {0}")]
    Torch(tch::TchError),
}

weights::torch_error_from!(PaliGemmaError);
