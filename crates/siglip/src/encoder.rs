//! Pre-LN transformer encoder: `x += attn(LN1(x)); x += mlp(LN2(x))` per layer.
use crate::{Attention, LayerNorm, Mlp, SiglipVisionConfig};
use layers::Linear;
use tch::{nn, Tensor};
use weights::ParamInit;

#[derive(Debug)]
pub struct EncoderLayer {
    pub layer_norm1: LayerNorm,
    pub self_attn: Attention,
    pub layer_norm2: LayerNorm,
    pub mlp: Mlp,
}

impl EncoderLayer {
    pub fn new(path: nn::Path, cfg: &SiglipVisionConfig, init: ParamInit) -> Self {
        let eps = cfg.layer_norm_eps;
        Self {
            layer_norm1: LayerNorm::new(path.sub("layer_norm1"), cfg.hidden_size, eps, init),
            self_attn: Attention::new(path.sub("self_attn"), cfg, init),
            layer_norm2: LayerNorm::new(path.sub("layer_norm2"), cfg.hidden_size, eps, init),
            mlp: Mlp::new(path.sub("mlp"), cfg, init),
        }
    }

    /// Each linear module with its name from `SiglipVisionModel::LINEAR_MODULES`.
    pub fn linears_mut(&mut self) -> impl Iterator<Item = (&'static str, &mut Linear)> {
        let (a, m) = (&mut self.self_attn, &mut self.mlp);
        let all =
            [&mut a.q_proj, &mut a.k_proj, &mut a.v_proj, &mut a.out_proj, &mut m.fc1, &mut m.fc2];
        crate::SiglipVisionModel::LINEAR_MODULES.into_iter().zip(all)
    }

    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let xs = xs + self.self_attn.forward_t(&self.layer_norm1.forward(xs), train);
        &xs + self.mlp.forward_t(&self.layer_norm2.forward(&xs), train)
    }
}

#[derive(Debug)]
pub struct Encoder {
    pub layers: Vec<EncoderLayer>,
}

impl Encoder {
    pub fn new(path: nn::Path, cfg: &SiglipVisionConfig, init: ParamInit) -> Self {
        let layers = path.sub("layers");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| EncoderLayer::new(layers.sub(i), cfg, init))
            .collect();
        Self { layers }
    }

    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut xs = xs.shallow_clone();
        for layer in &self.layers {
            xs = layer.forward_t(&xs, train);
        }
        xs
    }
}
