//! PaliGemma 1 and 2: SigLIP vision tower -> linear projector -> Gemma (1) or Gemma-2 (2) decoder, with the prefix-LM
//! attention pattern.
//!
//! - `config`: `PaliGemmaConfig` from HF `config.json`, named constructors for paligemma-3b-pt-224/448/896 and
//!   paligemma2-{3b,10b,28b}-pt-{224,448,896} (`named` takes hub ids), `tiny()`.
//! - `segment` / `sequence`: the one sequence builder `[image x N][bos][prefix]["\n"][suffix][eos]` with explicit
//!   segment ids (image, soft prompt, prefix, suffix, pad) from which masks, positions and labels all derive.
//! - `model`: the composition, a training forward that computes logits only at supervised positions, and the loss.
//! - `generate`: greedy and beam search with a KV cache, batched with left padding.
//! - `names` / `load`: HF checkpoints under the hub names and the transformers 5.x names, strict loading.
//! - `tokenizer`: the HF `tokenizer.json`, checked against the config.
//! - `allocator`: glibc's allocator set to keep large freed blocks, for processes that caption on the CPU.
//!
//! Follows transformers 5.23 `models/paligemma/modeling_paligemma.py` and `processing_paligemma.py`, and big_vision
//! `models/proj/paligemma/paligemma.py`; docs/architecture.md has the attention and precision rules.
pub mod allocator;
mod config;
mod error;
pub mod generate;
mod load;
mod model;
pub mod names;
mod segment;
mod select;
mod sequence;
mod shapes;
mod tokenizer;

pub use config::PaliGemmaConfig;
pub use error::PaliGemmaError;
pub use generate::{generate, generate_profiled, GenerationConfig};
pub use load::{load, LoadOptions, Loaded};
pub use model::{LossOutput, LossReduction, PaliGemma};
pub use segment::{ar_valid, Segment};
pub use sequence::{
    collate, Batch, PadSide, Sequence, SequenceLayout, SoftPromptPlacement, IGNORE,
};
pub use tokenizer::PaliGemmaTokenizer;

pub use weights::DType;

pub type Result<T> = std::result::Result<T, PaliGemmaError>;
