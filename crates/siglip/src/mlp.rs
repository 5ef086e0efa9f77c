//! The encoder MLP: fc1 -> activation (gelu-tanh) -> fc2, both with bias.
use crate::SiglipVisionConfig;
use layers::{Activation, Linear};
use tch::{nn, Tensor};
use weights::ParamInit;

#[derive(Debug)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
    act: Activation,
}

impl Mlp {
    pub fn new(path: nn::Path, cfg: &SiglipVisionConfig, init: ParamInit) -> Self {
        let (d, f) = (cfg.hidden_size, cfg.intermediate_size);
        Self {
            fc1: Linear::new(path.sub("fc1"), d, f, true, init),
            fc2: Linear::new(path.sub("fc2"), f, d, true, init),
            act: cfg.hidden_act,
        }
    }

    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.fc2.forward_t(&self.act.forward(&self.fc1.forward_t(xs, train)), train)
    }
}
