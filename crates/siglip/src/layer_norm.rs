//! LayerNorm with affine weights, computed in f32 whatever the activation dtype (the project's precision policy;
//! HF runs it in the parameter dtype, which on CPU/CUDA also accumulates in f32).
use tch::{nn, Kind, Tensor};
use weights::ParamInit;

#[derive(Debug)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(path: nn::Path, dim: i64, eps: f64, init: ParamInit) -> Self {
        let weight = path.var("weight", &[dim], init.ones());
        let bias = path.var("bias", &[dim], init.zeros());
        Self { weight, bias, eps }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let dim = *xs.size().last().expect("non-scalar input");
        xs.to_kind(Kind::Float)
            .layer_norm(
                [dim],
                Some(&self.weight.to_kind(Kind::Float)),
                Some(&self.bias.to_kind(Kind::Float)),
                self.eps,
                true,
            )
            .to_kind(xs.kind())
    }
}
