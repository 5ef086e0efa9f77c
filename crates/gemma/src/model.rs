//! The Gemma body (`GemmaModel` / `Gemma2Model`: embeddings, layers, final norm, tied head with Gemma 2's final
//! soft-capping) and a standalone causal LM.
use crate::{
    attention_mask, positions, sliding_window_mask, DecoderLayer, GemmaConfig, GemmaError, KvCache,
    Pass, RmsNorm, Rope,
};
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};
use weights::{Checkpoint, DType, KeyMapping, ParamInit};

#[derive(Debug)]
pub struct Gemma {
    pub embed_tokens: Tensor,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    pub rope: Rope,
    pub config: GemmaConfig,
    /// The activation dtype: the `VarStore` kind at construction. Parameters made trainable inside a bf16 model are
    /// f32 master copies; activations stay in this dtype.
    kind: Kind,
}

impl Gemma {
    /// Variables `embed_tokens.weight`, `layers.N.*`, `norm.weight` under `path` (HF `GemmaModel` names).
    pub fn new(path: nn::Path, cfg: &GemmaConfig, init: ParamInit) -> Result<Self, GemmaError> {
        cfg.validate()?;
        let embed_tokens = path.sub("embed_tokens").var(
            "weight",
            &[cfg.vocab_size, cfg.hidden_size],
            init.matrix(),
        );
        let lp = path.sub("layers");
        let layers = (0..cfg.num_hidden_layers as usize)
            .map(|i| DecoderLayer::new(lp.sub(i), cfg, i, init))
            .collect();
        let norm = RmsNorm::new(path.sub("norm"), cfg.hidden_size, cfg.rms_norm_eps, init);
        let rope = Rope::new(cfg.head_dim, cfg.rope_theta(), path.device());
        Ok(Self { embed_tokens, layers, norm, rope, config: cfg.clone(), kind: path.kind() })
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// `sqrt(hidden_size)`, rounded to the activation dtype first (45.25 in bf16), as transformers and big_vision do.
    pub fn embed_scale(&self) -> Tensor {
        Tensor::from((self.config.hidden_size as f64).sqrt() as f32)
            .to_kind(self.kind())
            .to_device(self.embed_tokens.device())
    }

    /// Scaled token embeddings `E[ids] * sqrt(hidden)`, `[B, L, D]`.
    pub fn embed(&self, ids: &Tensor) -> Tensor {
        Tensor::embedding(&self.embed_tokens, ids, -1, false, false).to_kind(self.kind)
            * self.embed_scale()
    }

    /// What every layer of a pass over `xs [B, L, D]` (the last L positions) shares: the masks and the RoPE tables.
    /// `ar`/`valid` `[B, T]` describe the whole sequence including what the cache already holds (`attention_mask`).
    pub fn prepare(&self, xs: &Tensor, ar: &Tensor, valid: &Tensor) -> Pass {
        let q_len = xs.size()[1];
        let rope = self.rope.tables(&positions(valid, q_len), xs.kind());
        let mask = attention_mask(ar, valid, q_len);
        let window = (0..self.layers.len()).find_map(|i| self.config.layer_window(i));
        let sliding_mask = window.map(|w| sliding_window_mask(&mask, ar, q_len, w));
        Pass { rope, mask, sliding_mask }
    }

    /// The final norm, applied to the last layer's output.
    pub fn finish(&self, hidden: &Tensor) -> Tensor {
        self.norm.forward(hidden)
    }

    /// The linear modules of each layer, relative to `layers.N` (LoRA targets), in `DecoderLayer::linears_mut` order.
    #[rustfmt::skip]
    pub const LINEAR_MODULES: [&str; 7] = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
        "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"];

    /// Runs the decoder (`prepare`, the layers, `finish`) on input embeddings `xs [B, L, D]`.
    pub fn forward_embeds(
        &self,
        xs: &Tensor,
        ar: &Tensor,
        valid: &Tensor,
        mut cache: Option<&mut KvCache>,
        train: bool,
    ) -> Tensor {
        let pass = self.prepare(xs, ar, valid);
        let mut h = xs.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            h = layer.forward_t(&h, &pass, layer_cache, train);
        }
        self.finish(&h)
    }

    /// Tied output head: `h E^T`, in the embedding table's dtype (callers upcast for the loss), soft-capped when the
    /// config says so (Gemma 2).
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        self.softcap(
            hidden.to_kind(self.embed_tokens.kind()).linear::<Tensor>(&self.embed_tokens, None),
        )
    }

    /// `tanh(logits / c) * c` with `c = final_logit_softcapping`, in the logits' dtype as transformers does. The
    /// division and the tanh run in place (the head's product is not needed by its own backward), so a
    /// vocabulary-wide tensor is allocated once more, not three times; the tanh's output is what its backward keeps,
    /// so the last multiply may not overwrite it.
    fn softcap(&self, mut logits: Tensor) -> Tensor {
        match self.config.final_logit_softcapping {
            Some(c) => {
                let _ = logits.g_div_scalar_(c);
                let _ = logits.tanh_();
                logits * c
            }
            None => logits,
        }
    }

    /// The output head for the rows of one decoding step `[rows, D]` (a batch, or the beams): the same product as
    /// `logits`. On CPU, crates/smallmm streams the table once at close to the read bound where its rule picks it
    /// (`smallmm::chosen`, which states the row counts it takes and their measurements). Otherwise, in f32,
    /// `(E h^T)^T` with `h^T` left as a transposed view: MKL runs `h E^T` for a few rows far below memory bandwidth
    /// (it repacks the 257k x D table on every call), while that form streams the table once; a single row is padded
    /// to two, which takes that path too.
    /// Other dtypes and CUDA keep `logits`. Values may differ from `logits` in the last bits (another summation
    /// order); generation is tested to give the ids transformers gives.
    pub fn logits_decode(&self, hidden: &Tensor) -> Tensor {
        let e = &self.embed_tokens;
        if hidden.dim() != 2 || e.device() != Device::Cpu {
            return self.logits(hidden);
        }
        let h = hidden.to_kind(e.kind());
        // f32 logits are capped by the kernel as it writes them; bf16 ones (a bf16 model's) as `logits` caps them.
        let cap = self.config.final_logit_softcapping;
        if let Some(logits) = cap.and_then(|c| smallmm::linear_softcapped(&h, e, c as f32)) {
            return logits;
        }
        if let Some(logits) = smallmm::linear(&h, e) {
            return self.softcap(logits);
        }
        if e.kind() != Kind::Float {
            return self.logits(hidden);
        }
        let rows = h.size()[0];
        let h = if rows == 1 { h.repeat([2, 1]) } else { h };
        let logits = e.matmul(&h.tr()).tr().narrow(0, 0, rows).contiguous();
        self.softcap(logits)
    }
}

/// `GemmaForCausalLM` / `Gemma2ForCausalLM` for standalone checkpoints (`model.*` + an optional tied `lm_head.weight`).
#[derive(Debug)]
pub struct GemmaForCausalLM {
    pub model: Gemma,
}

impl GemmaForCausalLM {
    pub fn new(path: nn::Path, cfg: &GemmaConfig, init: ParamInit) -> Result<Self, GemmaError> {
        Ok(Self { model: Gemma::new(path, cfg, init)? })
    }

    /// Loads `config.json` + safetensors. `dtype: None` keeps the stored dtype.
    pub fn load(
        dir: &Path,
        dtype: Option<DType>,
        device: Device,
    ) -> Result<(nn::VarStore, Self), GemmaError> {
        let cfg = GemmaConfig::from_file(&dir.join("config.json"))?;
        let ckpt = Checkpoint::open(dir)?;
        let kind = dtype.map_or_else(|| ckpt.float_kind(), |d| Ok(d.kind()))?;
        let mut vs = nn::VarStore::new(device);
        vs.set_kind(kind);
        let lm = Self::new(vs.root(), &cfg, ParamInit::Empty)?;
        weights::load_into(&vs, &ckpt, causal_lm_key)?;
        Ok((vs, lm))
    }

    /// Causal LM logits for `ids [B, L]` with `attention_mask [B, L]` (1 = token, 0 = padding).
    pub fn forward(&self, ids: &Tensor, attention_mask: &Tensor) -> Tensor {
        let valid = attention_mask.to_kind(Kind::Bool);
        let ar = valid.ones_like().to_kind(Kind::Int64);
        let h = self.model.forward_embeds(&self.model.embed(ids), &ar, &valid, None, false);
        self.model.logits(&h)
    }
}

/// Maps a `GemmaForCausalLM` checkpoint key to the body's variable names; the tied head is not a parameter.
pub fn causal_lm_key(key: &str) -> KeyMapping {
    if key == "lm_head.weight" || key.ends_with("rotary_emb.inv_freq") {
        return KeyMapping::Ignore;
    }
    KeyMapping::Var(key.strip_prefix("model.").unwrap_or(key).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decoding_step_is_soft_capped_as_libtorch_caps_it() {
        // A vocabulary of 180,000 × 48 f32 (33 MB: the kernel streams its logits, on two threads) and one of 300
        // (it stores them, on one).
        for vocab in [300, 180_000] {
            let cfg = GemmaConfig::tiny(vocab).into_gemma2(8);
            let vs = nn::VarStore::new(Device::Cpu);
            let gemma = Gemma::new(vs.root(), &cfg, ParamInit::Normal { std: 1.0 }).unwrap();
            tch::manual_seed(0);
            for rows in [1, 8] {
                // Logits of a few times the cap (30).
                let h = Tensor::randn([rows, cfg.hidden_size], (Kind::Float, Device::Cpu)) * 10.0;
                let (got, want) = tch::no_grad(|| (gemma.logits_decode(&h), gemma.logits(&h)));
                let scale = want.abs().amax(1, true);
                let err = f64::try_from(((&got - &want).abs() / &scale).max()).unwrap();
                assert!(err <= 1e-5, "vocab {vocab}, {rows} rows: {err:.2e} of the row's largest");
                assert!(f64::try_from(want.abs().max()).unwrap() > 29.0, "the cap is reached");
                // Row by row, the same bits as all rows at once.
                for r in 0..rows {
                    let one = tch::no_grad(|| gemma.logits_decode(&h.narrow(0, r, 1)));
                    assert!(one.equal(&got.narrow(0, r, 1)), "row {r} of {rows}");
                }
            }
        }
    }

    #[test]
    fn a_bf16_decoding_step_is_capped_in_bf16_as_libtorch_caps_it() {
        // A bf16 model's logits stay bf16: the kernel's product (where `smallmm::linear` takes it), capped by libtorch.
        // (Both products round to the same bf16 bits here, so this checks the values, not which product ran.)
        let cfg = GemmaConfig { hidden_size: 256, ..GemmaConfig::tiny(2000).into_gemma2(8) };
        let mut vs = nn::VarStore::new(Device::Cpu);
        let gemma = Gemma::new(vs.root(), &cfg, ParamInit::Normal { std: 1.0 }).unwrap();
        vs.bfloat16();
        tch::manual_seed(1);
        // Logits of a few units (std about 5), where bf16 keeps 1/64 and the cap bends them.
        let h = Tensor::randn([3, cfg.hidden_size], (Kind::Float, Device::Cpu)) * 0.3;
        let hb = h.to_kind(Kind::BFloat16);
        tch::no_grad(|| {
            let got = gemma.logits_decode(&h);
            assert_eq!(got.kind(), Kind::BFloat16);
            let want = gemma.logits(&h);
            let err =
                f64::try_from((got.to_kind(Kind::Float) - want.to_kind(Kind::Float)).abs().max());
            assert!(err.unwrap() <= 0.1, "bf16 logits within a few bf16 units of libtorch's");
            // The product by smallmm (bf16 sums), then libtorch's capping in bf16, as `logits` caps.
            if let Some(product) = smallmm::linear(&hb, &gemma.embed_tokens) {
                assert!(got.equal(&gemma.softcap(product)), "the kernel's product, capped");
            }
        });
    }
}
