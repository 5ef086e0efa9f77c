//! One decoder layer: `h += attn(norm_in(h)); h += mlp(norm_post(h))` (HF `post_attention_layernorm` is the pre-MLP
//! norm, big_vision's `pre_ffw_norm`).
use crate::{Attention, GemmaConfig, LayerKv, Mlp, RmsNorm};
use layers::Linear;
use tch::{nn, Tensor};
use weights::ParamInit;

#[derive(Debug)]
pub struct DecoderLayer {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

impl DecoderLayer {
    pub fn new(path: nn::Path, cfg: &GemmaConfig, init: ParamInit) -> Self {
        let norm =
            |name: &str| RmsNorm::new(path.sub(name), cfg.hidden_size, cfg.rms_norm_eps, init);
        Self {
            input_layernorm: norm("input_layernorm"),
            self_attn: Attention::new(path.sub("self_attn"), cfg, init),
            post_attention_layernorm: norm("post_attention_layernorm"),
            mlp: Mlp::new(path.sub("mlp"), cfg, init),
        }
    }

    /// Each linear module with its name from `Gemma::LINEAR_MODULES`.
    pub fn linears_mut(&mut self) -> impl Iterator<Item = (&'static str, &mut Linear)> {
        let (a, m) = (&mut self.self_attn, &mut self.mlp);
        let all = [&mut a.q_proj, &mut a.k_proj, &mut a.v_proj, &mut a.o_proj];
        let all = all.into_iter().chain([&mut m.gate_proj, &mut m.up_proj, &mut m.down_proj]);
        crate::Gemma::LINEAR_MODULES.into_iter().zip(all)
    }

    pub fn forward_t(
        &self,
        xs: &Tensor,
        rope: &(Tensor, Tensor),
        mask: &Tensor,
        cache: Option<&mut LayerKv>,
        train: bool,
    ) -> Tensor {
        let h = xs
            + self.self_attn.forward_t(&self.input_layernorm.forward(xs), rope, mask, cache, train);
        &h + self.mlp.forward_t(&self.post_attention_layernorm.forward(&h), train)
    }
}
