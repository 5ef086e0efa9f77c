//! `rsicd-data`: the data layer of paligemma-rs, without libtorch.
//!
//! It hands the trainer plain buffers (CHW `f32` pixels, caption strings, ids). Image preprocessing follows
//! the Hugging Face `SiglipImageProcessor` used by PaliGemma (PIL bicubic, `x/127.5 - 1`), with big_vision's
//! bilinear+antialias as an option; see `docs/data.md`.
pub mod cache;
pub mod checksum;
pub mod dataset;
pub mod decode;
pub mod download;
pub mod eda;
pub mod error;
pub mod formats;
pub mod preprocess;
pub mod resize;
pub mod sampler;
pub mod split;
pub mod synth;
pub mod validate;

pub use dataset::{probe_split_images, Counts, Dataset, Format, Item, LoadOptions};
pub use decode::{probe_bytes, probe_file};
pub use error::DataError;
pub use preprocess::{ImagePreprocessor, Resample};
pub use sampler::{Cursor, EvalSet, Sample, TrainSampler};
pub use split::Split;
