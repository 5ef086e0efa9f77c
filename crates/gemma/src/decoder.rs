//! One decoder layer: `h += attn(norm_in(h)); h += mlp(norm_post(h))` (HF `post_attention_layernorm` is the pre-MLP
//! norm, big_vision's `pre_ffw_norm`).
use crate::{Attention, GemmaConfig, LayerKv, Mlp, RmsNorm};
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
        let (d, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        Self {
            input_layernorm: RmsNorm::new(path.sub("input_layernorm"), d, eps, init),
            self_attn: Attention::new(path.sub("self_attn"), cfg, init),
            post_attention_layernorm: RmsNorm::new(
                path.sub("post_attention_layernorm"),
                d,
                eps,
                init,
            ),
            mlp: Mlp::new(path.sub("mlp"), cfg, init),
        }
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
