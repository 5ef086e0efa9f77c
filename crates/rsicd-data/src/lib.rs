//! `rsicd-data`: the data layer of paligemma-rs, without libtorch.
//!
//! It hands the trainer plain buffers (CHW `f32` pixels, caption strings, ids). Image preprocessing follows
//! the Hugging Face `SiglipImageProcessor` used by PaliGemma (PIL bicubic, `x/127.5 - 1`), with big_vision's
//! bilinear+antialias as an option; see `docs/data.md`.
pub mod checksum;
pub mod decode;
pub mod error;
pub mod preprocess;
pub mod resize;

pub use error::DataError;
pub use preprocess::{ImagePreprocessor, Resample};
