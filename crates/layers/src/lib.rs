//! The linear layer every model crate uses, with an optional LoRA adapter, plus the activations they share.
//!
//! LoRA follows peft's `tuners/lora/layer.py` (peft 0.21): `y = base(x) + B(A(dropout(x))) * alpha / r`
//! (`alpha / sqrt(r)` with rsLoRA), A initialised Kaiming-uniform (a = sqrt(5)), B zeros, so an adapter at
//! initialisation leaves the layer unchanged. The frozen base may be bf16 while the adapter stays f32: inputs are cast
//! to the adapter dtype and the update back to the activation dtype, as peft does.
mod activation;
mod linear;
mod lora;

pub use activation::Activation;
pub use linear::Linear;
pub use lora::LoraConfig;

#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    #[error("invalid LoRA config: {0}")]
    Config(String),
    #[error("layer `{0}` already has a LoRA adapter")]
    AlreadyAdapted(String),
    #[error("layer has no LoRA adapter to {0}")]
    NoAdapter(&'static str),
    #[error("libtorch: {0}")]
    Torch(tch::TchError),
}

weights::torch_error_from!(LoraError);
