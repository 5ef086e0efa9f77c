//! Multi-head self-attention with biased q/k/v/out projections and no mask.
use crate::SiglipVisionConfig;
use layers::Linear;
use tch::{nn, Tensor};
use weights::ParamInit;

#[derive(Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    num_heads: i64,
    head_dim: i64,
}

impl Attention {
    pub fn new(path: nn::Path, cfg: &SiglipVisionConfig, init: ParamInit) -> Self {
        let d = cfg.hidden_size;
        let lin = |name: &str| Linear::new(path.sub(name), d, d, true, init);
        Self {
            q_proj: lin("q_proj"),
            k_proj: lin("k_proj"),
            v_proj: lin("v_proj"),
            out_proj: lin("out_proj"),
            num_heads: cfg.num_attention_heads,
            head_dim: cfg.head_dim(),
        }
    }

    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let (b, n, d) = xs.size3().expect("[batch, tokens, hidden]");
        let heads = |t: Tensor| t.view([b, n, self.num_heads, self.head_dim]).transpose(1, 2);
        let q = heads(self.q_proj.forward_t(xs, train));
        let k = heads(self.k_proj.forward_t(xs, train));
        let v = heads(self.v_proj.forward_t(xs, train));
        // SDPA keeps the softmax accumulation in f32 for reduced-precision inputs (HF upcasts explicitly).
        let o = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<Tensor>,
            0.0,
            false,
            (self.head_dim as f64).powf(-0.5),
            false,
        );
        self.out_proj.forward_t(&o.transpose(1, 2).reshape([b, n, d]), train)
    }
}
