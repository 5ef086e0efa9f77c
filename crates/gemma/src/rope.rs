//! Rotary position embeddings, rotate-half layout over the full head dimension.
//!
//! Tables are built in f32 from integer positions (prompts are >= 258 tokens, and integers above 256 are not exact
//! in bf16) and cast to the activation dtype at the end, as transformers does.
use tch::{Device, Kind, Tensor};

#[derive(Debug)]
pub struct Rope {
    /// `[head_dim / 2]`, f32: `1 / theta^(2i / head_dim)`.
    inv_freq: Tensor,
}

impl Rope {
    pub fn new(head_dim: i64, theta: f64, device: Device) -> Self {
        let exponents = Tensor::arange_start_step(0, head_dim, 2, (Kind::Int64, device))
            .to_kind(Kind::Float)
            / head_dim as f64;
        let inv_freq = Tensor::pow_scalar(theta, &exponents).reciprocal();
        Self { inv_freq }
    }

    /// `positions [B, L]` (integers) -> `(cos, sin)`, each `[B, 1, L, head_dim]` in `kind`.
    pub fn tables(&self, positions: &Tensor, kind: Kind) -> (Tensor, Tensor) {
        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1)
            * self.inv_freq.to_device(positions.device());
        let emb = Tensor::cat(&[&freqs, &freqs], -1).unsqueeze(1);
        (emb.cos().to_kind(kind), emb.sin().to_kind(kind))
    }

    /// `x * cos + rotate_half(x) * sin` for `x [B, H, L, head_dim]`.
    pub fn apply(xs: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
        let half = xs.size()[3] / 2;
        let x1 = xs.narrow(3, 0, half);
        let x2 = xs.narrow(3, half, half);
        let rotated = Tensor::cat(&[&x2.neg(), &x1], 3);
        xs * cos + rotated * sin
    }
}
