//! GeGLU feed-forward: `down(act(gate(x)) * up(x))`, no biases.
use crate::GemmaConfig;
use layers::{Activation, Linear};
use tch::{nn, Tensor};
use weights::ParamInit;

#[derive(Debug)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
    act: Activation,
}

impl Mlp {
    pub fn new(path: nn::Path, cfg: &GemmaConfig, init: ParamInit) -> Self {
        let (d, f) = (cfg.hidden_size, cfg.intermediate_size);
        Self {
            gate_proj: Linear::new(path.sub("gate_proj"), d, f, false, init),
            up_proj: Linear::new(path.sub("up_proj"), d, f, false, init),
            down_proj: Linear::new(path.sub("down_proj"), f, d, false, init),
            act: cfg.activation(),
        }
    }

    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let gate = self.gate_proj.forward_t(xs, train);
        let up = self.up_proj.forward_t(xs, train);
        self.down_proj.forward_t(&self.act.forward_gated(&gate, &up), train)
    }
}
