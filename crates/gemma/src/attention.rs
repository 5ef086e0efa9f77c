//! Gemma self-attention: multi-query / grouped-query (`num_key_value_heads` <= `num_attention_heads`), RoPE on q and
//! k, an explicit boolean mask, optional KV cache. Gemma 1 scales by `head_dim^-0.5`; Gemma 2 by
//! `query_pre_attn_scalar^-0.5`, soft-caps the scores (`tanh(s / c) * c`, before the mask) and runs every other layer
//! with a sliding window (transformers 5.23 `modeling_gemma2.py`, `eager_attention_forward`).
//!
//! Without soft-capping the product runs in fused SDPA. Soft-capping sits between the two matmuls, where SDPA has no
//! hook, so capped layers run `softmax(cap(q k^T * scale) + mask) v` explicitly: scores and softmax in f32, keys and
//! values shared by their query group without copies, query rows in bounded blocks (docs/architecture.md,
//! "Attention paths"). A cached decoding step's few query rows (f32, CPU, no autograd) take either form in one Rust
//! pass instead (`decode_attention.rs`).
use crate::{decode_attention, GemmaConfig, LayerKv, Pass, Rope};
use layers::Linear;
use tch::{nn, Kind, Tensor};
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
    scale: f64,
    softcap: Option<f64>,
    /// Whether this layer attends through the sliding-window mask.
    pub sliding: bool,
}

impl Attention {
    pub fn new(path: nn::Path, cfg: &GemmaConfig, layer: usize, init: ParamInit) -> Self {
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
            scale: cfg.attention_scale(),
            softcap: cfg.attn_logit_softcapping,
            sliding: cfg.layer_window(layer).is_some(),
        }
    }

    /// `xs [B, L, D]` -> `[B, L, D]`; the pass's mask is `[B, 1, L, T]` (true = attend; T = cached + L).
    pub fn forward_t(
        &self,
        xs: &Tensor,
        pass: &Pass,
        cache: Option<&mut LayerKv>,
        train: bool,
    ) -> Tensor {
        let (b, l, _) = xs.size3().expect("[batch, seq, hidden]");
        let split = |t: Tensor, h: i64| t.view([b, l, h, self.head_dim]).transpose(1, 2);
        let q = split(self.q_proj.forward_t(xs, train), self.num_heads);
        let k = split(self.k_proj.forward_t(xs, train), self.num_kv_heads);
        let v = split(self.v_proj.forward_t(xs, train), self.num_kv_heads);
        let (cos, sin) = &pass.rope;
        let q = Rope::apply(&q, cos, sin);
        let k = Rope::apply(&k, cos, sin);
        let (k, v) = match cache {
            Some(c) => c.append(k, v),
            None => (k, v),
        };
        let mask = pass.mask(self.sliding);
        let o = decode_attention(&q, &k, &v, mask, self.scale, self.softcap).unwrap_or_else(|| {
            match self.softcap {
                None => self.fused(&q, &k, &v, mask),
                Some(cap) => self.capped(&q, &k, &v, mask, cap),
            }
        });
        self.o_proj
            .forward_t(&o.transpose(1, 2).reshape([b, l, self.num_heads * self.head_dim]), train)
    }

    /// SDPA keeps the softmax accumulation in f32 for bf16/f16 inputs; `enable_gqa` broadcasts the KV heads
    /// without materialising copies.
    fn fused(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor) -> Tensor {
        Tensor::scaled_dot_product_attention(
            q,
            k,
            v,
            Some(mask),
            0.0,
            false,
            self.scale,
            self.num_kv_heads != self.num_heads,
        )
    }

    fn capped(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, cap: f64) -> Tensor {
        capped_attention(q, k, v, mask, self.scale, cap)
    }
}

/// `softmax(cap(q k^T * scale) + mask) v` with `q [B, H, L, hd]`, `k`/`v` `[B, KV, T, hd]`, `mask [B, 1, L, T]` (true
/// = attend): Gemma 2's soft-capped attention. The heads of a query group are stacked along the rows so each group
/// multiplies its own K/V once, never copied. Scores are upcast to f32, then scaled by `scale / cap` and tanh'd in
/// place (matmul's backward needs q and k, not its output), and `cap * t + mask` is one `addcmul` with an additive
/// 0 / -inf mask; the probabilities are cast back for the product with `v`. Query rows go in blocks of at most
/// `BLOCK_BYTES` of scores: on CPU a larger tensor is freshly mapped and page-faulted on every allocation, which made
/// one 1,057-token pass 2.7x slower (docs/benchmarks.md, "attention paths"). transformers multiplies in the
/// activation dtype and caps there; f32 is the more accurate side of that.
pub fn capped_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    scale: f64,
    cap: f64,
) -> Tensor {
    const BLOCK_BYTES: i64 = 16 << 20;
    let (b, h, l, hd) = q.size4().expect("[B, H, L, hd]");
    let (kv, t) = (k.size()[1], k.size()[2]);
    let g = h / kv;
    let q = q.reshape([b, kv, g, l, hd]);
    let kt = k.transpose(2, 3);
    let additive = Tensor::zeros(mask.size(), (Kind::Float, mask.device()))
        .masked_fill(&mask.logical_not(), f64::NEG_INFINITY)
        .unsqueeze(1);
    let cap_t = Tensor::scalar_tensor(cap, (Kind::Float, q.device()));
    let rows = (BLOCK_BYTES / (b * h * t * 4)).clamp(1, l);
    let blocks: Vec<Tensor> = (0..l)
        .step_by(rows as usize)
        .map(|start| {
            let n = rows.min(l - start);
            let qb = q.narrow(3, start, n).reshape([b, kv, g * n, hd]);
            let mut scores = qb.matmul(&kt).to_kind(Kind::Float);
            let _ = scores.g_mul_scalar_(scale / cap);
            let _ = scores.tanh_();
            let logits =
                additive.narrow(3, start, n).addcmul(&scores.view([b, kv, g, n, t]), &cap_t);
            let probs = logits.softmax(-1, Kind::Float).to_kind(v.kind()).view([b, kv, g * n, t]);
            probs.matmul(v).view([b, kv, g, n, hd])
        })
        .collect();
    let o = if blocks.len() == 1 { blocks[0].shallow_clone() } else { Tensor::cat(&blocks, 3) };
    o.view([b, h, l, hd])
}
