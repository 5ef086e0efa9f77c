//! Weight handling shared by the model crates: the dtype policy, parameter initialisation, and strict,
//! memory-mapped loading of Hugging Face safetensors checkpoints (single file or sharded with
//! `model.safetensors.index.json`) into tch `VarStore`s.
//!
//! Loading follows the reference loaders' contract (candle's `VarBuilder::get`, nanoGPT's `from_pretrained`
//! asserts) and not tch's `VarStore::load`, which silently ignores extra keys: every key of the checkpoint must map
//! to a variable or be explicitly ignored, every variable must be filled, shapes must match, and each error names
//! the key and the file.
mod checkpoint;
mod dtype;
mod error;
mod init;
mod load;

pub use checkpoint::{Checkpoint, TensorInfo};
pub use dtype::DType;
pub use error::WeightsError;
pub use init::ParamInit;
pub use load::{load_into, load_into_scope, KeyMapping, LoadReport};

pub type Result<T> = std::result::Result<T, WeightsError>;
