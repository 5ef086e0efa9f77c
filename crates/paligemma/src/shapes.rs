//! Every parameter name and shape a config implies, without building the model: what the memory planner needs to
//! plan a 3B run on a machine that does not hold (or cannot hold) the weights. Tested to equal the variables of a
//! built model exactly.
use crate::names::{LANGUAGE, PROJECTOR, VISION};
use crate::PaliGemmaConfig;

impl PaliGemmaConfig {
    /// `(name, shape)` of every parameter (hub names), in no particular order.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<i64>)> {
        let mut out = Vec::new();
        let v = &self.vision_config;
        let (d, f, p) = (v.hidden_size, v.intermediate_size, v.patch_size);
        let vp = format!("{}.{}", VISION[0], VISION[1]);
        out.push((
            format!("{vp}.embeddings.patch_embedding.weight"),
            vec![d, v.num_channels, p, p],
        ));
        out.push((format!("{vp}.embeddings.patch_embedding.bias"), vec![d]));
        out.push((format!("{vp}.embeddings.position_embedding.weight"), vec![v.num_patches(), d]));
        for i in 0..v.num_hidden_layers {
            let l = format!("{vp}.encoder.layers.{i}");
            for n in ["layer_norm1", "layer_norm2"] {
                out.push((format!("{l}.{n}.weight"), vec![d]));
                out.push((format!("{l}.{n}.bias"), vec![d]));
            }
            for n in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                out.push((format!("{l}.self_attn.{n}.weight"), vec![d, d]));
                out.push((format!("{l}.self_attn.{n}.bias"), vec![d]));
            }
            out.push((format!("{l}.mlp.fc1.weight"), vec![f, d]));
            out.push((format!("{l}.mlp.fc1.bias"), vec![f]));
            out.push((format!("{l}.mlp.fc2.weight"), vec![d, f]));
            out.push((format!("{l}.mlp.fc2.bias"), vec![d]));
        }
        out.push((format!("{vp}.post_layernorm.weight"), vec![d]));
        out.push((format!("{vp}.post_layernorm.bias"), vec![d]));
        let t = &self.text_config;
        out.push((format!("{PROJECTOR}.linear.weight"), vec![self.projector_dim(), d]));
        out.push((format!("{PROJECTOR}.linear.bias"), vec![self.projector_dim()]));
        let lp = format!("{}.{}", LANGUAGE[0], LANGUAGE[1]);
        let (h, q, kv, ff) = (
            t.hidden_size,
            t.num_attention_heads * t.head_dim,
            t.num_key_value_heads * t.head_dim,
            t.intermediate_size,
        );
        out.push((format!("{lp}.embed_tokens.weight"), vec![t.vocab_size, h]));
        for i in 0..t.num_hidden_layers {
            let l = format!("{lp}.layers.{i}");
            for n in gemma::DecoderLayer::norm_names(t.architecture()) {
                out.push((format!("{l}.{n}.weight"), vec![h]));
            }
            for (n, o, i_) in
                [("q_proj", q, h), ("k_proj", kv, h), ("v_proj", kv, h), ("o_proj", h, q)]
            {
                out.push((format!("{l}.self_attn.{n}.weight"), vec![o, i_]));
                if t.attention_bias {
                    out.push((format!("{l}.self_attn.{n}.bias"), vec![o]));
                }
            }
            out.push((format!("{l}.mlp.gate_proj.weight"), vec![ff, h]));
            out.push((format!("{l}.mlp.up_proj.weight"), vec![ff, h]));
            out.push((format!("{l}.mlp.down_proj.weight"), vec![h, ff]));
        }
        out.push((format!("{lp}.norm.weight"), vec![h]));
        out
    }

    /// Total parameters (the tied head counted once).
    pub fn num_parameters(&self) -> i64 {
        self.parameter_shapes().iter().map(|(_, s)| s.iter().product::<i64>()).sum()
    }
}
