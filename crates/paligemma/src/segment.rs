//! Segment ids: what each position of a sequence is. Masks, RoPE positions and labels all derive from them.
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i64)]
pub enum Segment {
    /// Padding: never attended, never supervised.
    Pad = 0,
    /// An image-feature slot.
    Image = 1,
    /// A learnable soft-prompt vector slot (inside the bidirectional prefix).
    SoftPrompt = 2,
    /// `<bos>`, the text prefix and the `"\n"` separator.
    Prefix = 3,
    /// The caption and its `<eos>` (causal, supervised); also generated tokens.
    Suffix = 4,
}

impl Segment {
    pub fn id(self) -> i64 {
        self as i64
    }

    /// Tokens of the bidirectional block (image, soft prompt, prefix) are 0, causal ones 1 (big_vision `mask_ar`).
    pub fn ar(self) -> i64 {
        i64::from(self == Self::Suffix)
    }
}

/// `segments [B, T]` (segment ids) -> `(ar [B, T] int64, valid [B, T] bool)` for `gemma::attention_mask`.
pub fn ar_valid(segments: &Tensor) -> (Tensor, Tensor) {
    let ar = segments.eq(Segment::Suffix.id()).to_kind(Kind::Int64);
    let valid = segments.ne(Segment::Pad.id());
    (ar, valid)
}
