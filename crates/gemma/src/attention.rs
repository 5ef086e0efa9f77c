//! Gemma self-attention: multi-query / grouped-query (`num_key_value_heads` <= `num_attention_heads`), RoPE on q and
//! k, scale `head_dim^-0.5`, explicit boolean mask, optional KV cache.
use crate::{GemmaConfig, LayerKv, Rope};
use layers::Linear;
use tch::{nn, Tensor};
use weights::ParamInit;

#[derive(Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    num_heads: i64,
    num_kv_heads: i64,
    head_dim: i64,
}

impl Attention {
    pub fn new(path: nn::Path, cfg: &GemmaConfig, init: ParamInit) -> Self {
        let (d, hd, bias) = (cfg.hidden_size, cfg.head_dim, cfg.attention_bias);
        let q_out = cfg.num_attention_heads * hd;
        let kv_out = cfg.num_key_value_heads * hd;
        Self {
            q_proj: Linear::new(path.sub("q_proj"), d, q_out, bias, init),
            k_proj: Linear::new(path.sub("k_proj"), d, kv_out, bias, init),
            v_proj: Linear::new(path.sub("v_proj"), d, kv_out, bias, init),
            o_proj: Linear::new(path.sub("o_proj"), q_out, d, bias, init),
            num_heads: cfg.num_attention_heads,
            num_kv_heads: cfg.num_key_value_heads,
            head_dim: hd,
        }
    }

    /// `xs [B, L, D]`, RoPE tables `[B, 1, L, head_dim]`, `mask [B, 1, L, T]` (true = attend; T = cached + L).
    pub fn forward_t(
        &self,
        xs: &Tensor,
        rope: &(Tensor, Tensor),
        mask: &Tensor,
        cache: Option<&mut LayerKv>,
        train: bool,
    ) -> Tensor {
        let (b, l, _) = xs.size3().expect("[batch, seq, hidden]");
        let split = |t: Tensor, h: i64| t.view([b, l, h, self.head_dim]).transpose(1, 2);
        let q = split(self.q_proj.forward_t(xs, train), self.num_heads);
        let k = split(self.k_proj.forward_t(xs, train), self.num_kv_heads);
        let v = split(self.v_proj.forward_t(xs, train), self.num_kv_heads);
        let q = Rope::apply(&q, &rope.0, &rope.1);
        let k = Rope::apply(&k, &rope.0, &rope.1);
        let (k, v) = match cache {
            Some(c) => c.append(k, v),
            None => (k, v),
        };
        // SDPA keeps the softmax accumulation in f32 for bf16/f16 inputs; `enable_gqa` broadcasts the KV heads
        // without materialising copies.
        let o = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            Some(mask),
            0.0,
            false,
            (self.head_dim as f64).powf(-0.5),
            self.num_kv_heads != self.num_heads,
        );
        self.o_proj
            .forward_t(&o.transpose(1, 2).reshape([b, l, self.num_heads * self.head_dim]), train)
    }
}
