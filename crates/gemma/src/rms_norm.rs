//! Gemma RMSNorm: `x * rsqrt(mean(x^2) + eps) * (1 + w)`, all in f32, cast back to the activation dtype after the
//! multiply (transformers' order; candle casts before it, which differs in bf16).
use tch::{nn, Kind, Tensor};
use weights::ParamInit;

#[derive(Debug)]
pub struct RmsNorm {
    pub weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(path: nn::Path, dim: i64, eps: f64, init: ParamInit) -> Self {
        Self { weight: path.var("weight", &[dim], init.zeros()), eps }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let x = xs.to_kind(Kind::Float);
        let normed = &x * (x.square().mean_dim(-1, true, Kind::Float) + self.eps).rsqrt();
        (normed * (self.weight.to_kind(Kind::Float) + 1.0)).to_kind(xs.kind())
    }
}
