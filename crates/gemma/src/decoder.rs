//! One decoder layer. Gemma 1: `h += attn(norm(h)); h += mlp(norm(h))`. Gemma 2 also normalises each branch's output
//! before the residual add: `h += norm(attn(norm(h))); h += norm(mlp(norm(h)))`.
//!
//! HF names differ between the two: Gemma 1's pre-MLP norm is `post_attention_layernorm` (big_vision
//! `pre_ffw_norm`), while in Gemma 2 `post_attention_layernorm` normalises the attention output and the pre-MLP norm
//! is `pre_feedforward_layernorm`. The fields here are named by role, the variables by HF.
use crate::{Architecture, Attention, GemmaConfig, LayerKv, Mlp, Pass, RmsNorm};
use layers::Linear;
use tch::{nn, Tensor};
use weights::ParamInit;

#[derive(Debug)]
pub struct DecoderLayer {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    /// Gemma 2: the attention output's norm (HF `post_attention_layernorm`).
    pub attn_out_norm: Option<RmsNorm>,
    /// The norm before the MLP.
    pub pre_mlp_norm: RmsNorm,
    pub mlp: Mlp,
    /// Gemma 2: the MLP output's norm (HF `post_feedforward_layernorm`).
    pub mlp_out_norm: Option<RmsNorm>,
}

impl DecoderLayer {
    pub fn new(path: nn::Path, cfg: &GemmaConfig, layer: usize, init: ParamInit) -> Self {
        let norm =
            |name: &str| RmsNorm::new(path.sub(name), cfg.hidden_size, cfg.rms_norm_eps, init);
        let gemma2 = cfg.architecture() == Architecture::Gemma2;
        Self {
            input_layernorm: norm("input_layernorm"),
            self_attn: Attention::new(path.sub("self_attn"), cfg, layer, init),
            attn_out_norm: gemma2.then(|| norm("post_attention_layernorm")),
            pre_mlp_norm: norm(if gemma2 {
                "pre_feedforward_layernorm"
            } else {
                "post_attention_layernorm"
            }),
            mlp: Mlp::new(path.sub("mlp"), cfg, init),
            mlp_out_norm: gemma2.then(|| norm("post_feedforward_layernorm")),
        }
    }

    /// The norm weights with their HF names relative to the layer, in the order `Gemma::NORMS` of the architecture.
    pub fn norm_names(arch: Architecture) -> &'static [&'static str] {
        match arch {
            Architecture::Gemma1 => &["input_layernorm", "post_attention_layernorm"],
            Architecture::Gemma2 => &[
                "input_layernorm",
                "post_attention_layernorm",
                "pre_feedforward_layernorm",
                "post_feedforward_layernorm",
            ],
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
        pass: &Pass,
        cache: Option<&mut LayerKv>,
        train: bool,
    ) -> Tensor {
        let a = self.self_attn.forward_t(&self.input_layernorm.forward(xs), pass, cache, train);
        let h = xs + norm_opt(self.attn_out_norm.as_ref(), a);
        let m = self.mlp.forward_t(&self.pre_mlp_norm.forward(&h), train);
        &h + norm_opt(self.mlp_out_norm.as_ref(), m)
    }
}

fn norm_opt(norm: Option<&RmsNorm>, xs: Tensor) -> Tensor {
    match norm {
        Some(n) => n.forward(&xs),
        None => xs,
    }
}
