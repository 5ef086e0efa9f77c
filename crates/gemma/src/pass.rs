//! What every layer of one decoder pass shares: the RoPE tables and the attention masks (global, and the sliding
//! window one when the model has local layers).
use tch::Tensor;

#[derive(Debug)]
pub struct Pass {
    /// `(cos, sin)`, each `[B, 1, L, head_dim]`.
    pub rope: (Tensor, Tensor),
    /// `[B, 1, L, T]`, true = may attend.
    pub mask: Tensor,
    /// `mask` narrowed to the window, for Gemma-2's sliding-window layers.
    pub sliding_mask: Option<Tensor>,
}

impl Pass {
    /// The mask of a layer with (`sliding`) or without a window.
    pub fn mask(&self, sliding: bool) -> &Tensor {
        match (&self.sliding_mask, sliding) {
            (Some(m), true) => m,
            _ => &self.mask,
        }
    }
}
