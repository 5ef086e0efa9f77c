//! The trainable-parameter table and the memory plan printed by `--dry-run` and before step 1 (know before
//! you start whether it fits). The activation model counts the tensors autograd keeps per transformer
//! block (inputs of every matmul, norm and activation, attention probabilities for the math kernel) for the shapes
//! of this run; logits are counted only at supervised positions, as the trainer computes them.
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

fn bytes_of(kind: Kind) -> f64 {
    match kind {
        Kind::Float | Kind::Int => 4.0,
        Kind::BFloat16 | Kind::Half => 2.0,
        Kind::Double | Kind::Int64 => 8.0,
        _ => 1.0,
    }
}

pub fn human(bytes: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

/// Trainable tensors grouped by name with layer indices folded to `*`.
pub fn trainable_table(trainables: &[(String, Tensor)], total_params: i64) -> String {
    let mut groups: BTreeMap<String, (Vec<i64>, usize, i64)> = BTreeMap::new();
    for (name, t) in trainables {
        let folded: String = name
            .split('.')
            .map(|p| if p.chars().all(|c| c.is_ascii_digit()) { "*" } else { p })
            .collect::<Vec<_>>()
            .join(".");
        let e = groups.entry(folded).or_insert((t.size(), 0, 0));
        e.1 += 1;
        e.2 += t.numel() as i64;
    }
    let trainable: i64 = groups.values().map(|g| g.2).sum();
    let mut s = String::from("trainable parameters\n");
    let width = groups.keys().map(String::len).max().unwrap_or(10).max(10);
    s += &format!(
        "  {:<width$}  {:>16}  {:>5}  {:>13}  {:>7}\n",
        "name", "shape", "count", "params", "share"
    );
    for (name, (shape, count, n)) in &groups {
        s += &format!(
            "  {name:<width$}  {:>16}  {count:>5}  {n:>13}  {:>6.3}%\n",
            format!("{shape:?}"),
            100.0 * *n as f64 / total_params.max(1) as f64
        );
    }
    s += &format!(
        "  {:<width$}  {:>16}  {:>5}  {trainable:>13}  {:>6.3}%   of {total_params} parameters\n",
        "total",
        "",
        trainables.len(),
        100.0 * trainable as f64 / total_params.max(1) as f64
    );
    s
}

/// Inputs of the plan: sizes, not tensors, so a plan can be made for a model that is not loaded (`pgrs plan`).
pub struct PlanInput<'a> {
    pub config: &'a paligemma::PaliGemmaConfig,
    /// Bytes per activation element (2 for bf16/f16 bases, 4 for f32).
    pub act_bytes: f64,
    pub base_params: i64,
    /// Bytes of the base weights as they sit in memory (trainable base weights count as f32).
    pub base_bytes: f64,
    /// All trainable parameters (base weights made trainable, adapters, soft prompt).
    pub trainable_params: i64,
    /// Trainable parameters that live outside the base (adapters, soft prompt; f32).
    pub extra_params: i64,
    pub batch: usize,
    pub seq_len: usize,
    pub supervised_tokens: usize,
    pub checkpointing: bool,
    pub vision_trainable: bool,
    /// Optimizer state tensors per trainable element (AdamW 2, SGD with momentum 1, plain SGD 0).
    pub optimizer_slots: usize,
    /// Data-parallel ranks: each holds a whole replica and its own `batch`; the plan is per rank.
    pub ranks: usize,
}

/// Plan inputs from a built model's variables.
pub fn sizes_from_tensors(
    base: &[(String, Tensor)],
    trainables: &[(String, Tensor)],
) -> (i64, f64, i64, i64) {
    let base_names: std::collections::HashSet<&str> =
        base.iter().map(|(n, _)| n.as_str()).collect();
    let base_params: i64 = base.iter().map(|(_, t)| t.numel() as i64).sum();
    let base_bytes: f64 = base.iter().map(|(_, t)| t.numel() as f64 * bytes_of(t.kind())).sum();
    let trainable: i64 = trainables.iter().map(|(_, t)| t.numel() as i64).sum();
    let extra: i64 = trainables
        .iter()
        .filter(|(n, _)| !base_names.contains(n.as_str()))
        .map(|(_, t)| t.numel() as i64)
        .sum();
    (base_params, base_bytes, trainable, extra)
}

pub fn kind_bytes(kind: Kind) -> f64 {
    bytes_of(kind)
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub rows: Vec<(String, f64)>,
    pub ranks: usize,
}

impl Plan {
    pub fn total(&self) -> f64 {
        self.rows.iter().filter(|(n, _)| !n.starts_with('(')).map(|(_, b)| b).sum()
    }

    pub fn table(&self) -> String {
        let mut s = match self.ranks {
            1 => String::from("memory plan\n"),
            n => format!(
                "memory plan, per rank (each of the {n} ranks holds a replica and its own batch)\n"
            ),
        };
        for (name, b) in &self.rows {
            s += &format!("  {name:<44} {:>12}\n", human(*b));
        }
        s += &format!("  {:<44} {:>12}\n", "total (estimate)", human(self.total()));
        s
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut m: serde_json::Map<String, serde_json::Value> =
            self.rows.iter().map(|(n, b)| (n.clone(), serde_json::json!(b))).collect();
        m.insert("total".into(), serde_json::json!(self.total()));
        m.insert("ranks".into(), serde_json::json!(self.ranks));
        serde_json::Value::Object(m)
    }
}

/// One transformer block's shapes, for `block_bytes`.
struct Block {
    hidden: f64,
    mlp: f64,
    heads: f64,
    q_width: f64,
    kv_width: f64,
    /// Norms per block: 2, or 4 in Gemma 2 (norms on the attention and MLP outputs too).
    norms: f64,
    /// Bytes kept per attention score: the probabilities in the activation dtype (math kernel), or for Gemma 2's
    /// soft-capped attention also the f32 tanh and softmax outputs.
    score_bytes: f64,
}

/// Bytes autograd keeps for one transformer block's backward, for `batch` sequences of `seq` positions.
fn block_bytes(k: &Block, seq: f64, batch: f64, act: f64) -> f64 {
    // norm in/out (f32 inside), q/k/v/o inputs and outputs, RoPE'd q/k, attention output, MLP inputs, the two
    // intermediate projections, the activation output and product, residuals
    let per_token = (2.0 * k.norms * k.hidden) * 4.0
        + (2.0 * k.q_width + 4.0 * k.kv_width + 2.0 * k.hidden) * act
        + (4.0 * k.mlp) * act;
    // attention probabilities (math kernel; fused kernels keep O(L) instead)
    let probs = batch * k.heads * seq * seq * k.score_bytes;
    batch * seq * per_token + probs
}

pub fn plan(p: &PlanInput) -> Plan {
    let cfg = p.config;
    let act = p.act_bytes;
    let (b, l) = (p.batch as f64, p.seq_len as f64);
    let t = &cfg.text_config;
    let gemma2 = t.architecture() == gemma::Architecture::Gemma2;
    let lm = Block {
        hidden: t.hidden_size as f64,
        mlp: t.intermediate_size as f64,
        heads: t.num_attention_heads as f64,
        q_width: (t.num_attention_heads * t.head_dim) as f64,
        kv_width: (t.num_key_value_heads * t.head_dim) as f64,
        norms: if gemma2 { 4.0 } else { 2.0 },
        score_bytes: if t.attn_logit_softcapping.is_some() { 8.0 + act } else { act },
    };
    let lm_block = block_bytes(&lm, l, b, act);
    let n_lm = t.num_hidden_layers as f64;
    let v = &cfg.vision_config;
    let n_img = cfg.num_image_tokens() as f64;
    let vis = Block {
        hidden: v.hidden_size as f64,
        mlp: v.intermediate_size as f64,
        heads: v.num_attention_heads as f64,
        q_width: v.hidden_size as f64,
        kv_width: v.hidden_size as f64,
        norms: 2.0,
        score_bytes: act,
    };
    let vis_block = block_bytes(&vis, n_img, b, act);
    let n_vis = v.num_hidden_layers as f64;
    let boundary_lm = b * l * t.hidden_size as f64 * act;
    let boundary_vis = b * n_img * v.hidden_size as f64 * act;
    let (lm_act, lm_act_other) = if p.checkpointing {
        (n_lm * boundary_lm + lm_block, n_lm * lm_block)
    } else {
        (n_lm * lm_block, n_lm * boundary_lm + lm_block)
    };
    let (vis_act, vis_act_other) = match (p.vision_trainable, p.checkpointing) {
        (false, _) => {
            (b * n_img * t.hidden_size as f64 * act, b * n_img * t.hidden_size as f64 * act)
        }
        (true, true) => (n_vis * boundary_vis + vis_block, n_vis * vis_block),
        (true, false) => (n_vis * vis_block, n_vis * boundary_vis + vis_block),
    };
    let vocab = t.vocab_size as f64;
    let logits = p.supervised_tokens as f64 * vocab * 4.0 * 3.0;
    let full_logits = b * l * vocab * 4.0 * 3.0;
    let other = if p.checkpointing { "without" } else { "with" };
    let trainable = p.trainable_params as f64;
    let mut plan = Plan {
        rows: vec![
            (
                format!("weights ({} params)", p.base_params + p.extra_params),
                p.base_bytes + p.extra_params as f64 * 4.0,
            ),
            ("gradients (f32, trainables only)".into(), trainable * 4.0),
            (
                format!("optimizer state ({} per parameter)", p.optimizer_slots),
                trainable * 4.0 * p.optimizer_slots as f64,
            ),
            (
                format!(
                    "activations, language model (checkpointing {})",
                    if p.checkpointing { "on" } else { "off" }
                ),
                lm_act,
            ),
            ("activations, vision tower".into(), vis_act),
            (format!("logits + loss at {} supervised positions", p.supervised_tokens), logits),
            (
                format!("(activations {other} checkpointing, for comparison)"),
                lm_act_other + vis_act_other,
            ),
            ("(full logits over every position, avoided)".into(), full_logits),
        ],
        ranks: p.ranks.max(1),
    };
    if p.ranks > 1 {
        // Gradients are summed through flat buffers of small tensors; a tensor larger than a bucket is summed in
        // place (crates/distributed), so one bucket is the most it copies at once.
        let bucket = (trainable * 4.0).min(crate::parallel::BUCKET_BYTES as f64);
        plan.rows.insert(3, ("gradient all-reduce bucket (data parallel)".into(), bucket));
    }
    plan
}

/// Whether `module` is a linear layer (what LoRA can target), as each part names its own.
fn is_linear(module: &str) -> bool {
    let towers =
        siglip::SiglipVisionModel::LINEAR_MODULES.iter().chain(&gemma::Gemma::LINEAR_MODULES);
    let in_projector = |m: &&str| module == format!("{}.{m}", paligemma::names::PROJECTOR);
    towers.into_iter().any(|m| module.ends_with(&format!(".{m}")))
        || projector::Projector::LINEAR_MODULES.iter().any(in_projector)
}

/// Plan inputs for an experiment from the model config alone (no weights loaded): which parameters the strategy
/// trains, what adapters and soft prompts add, and the shapes of a batch whose captions have `text_len` tokens.
pub fn analytic_sizes(
    cfg: &crate::ExperimentConfig,
    pcfg: &paligemma::PaliGemmaConfig,
    base_kind: Kind,
) -> (i64, f64, i64, i64, bool) {
    let what = crate::what_trains::WhatTrains::of(cfg);
    let is_vision = crate::what_trains::WhatTrains::is_vision;
    let shapes = pcfg.parameter_shapes();
    let (mut base_params, mut base_bytes, mut trainable, mut extra) = (0i64, 0f64, 0i64, 0i64);
    let mut vision_trainable = false;
    for (name, shape) in &shapes {
        let n: i64 = shape.iter().product();
        base_params += n;
        if what.trains_base(name) {
            trainable += n;
            base_bytes += n as f64 * 4.0;
            vision_trainable |= is_vision(name);
        } else {
            base_bytes += n as f64 * bytes_of(base_kind);
        }
    }
    if let Some((l, _)) = &what.lora {
        for (name, shape) in &shapes {
            let Some(module) = name.strip_suffix(".weight") else { continue };
            if shape.len() == 2 && is_linear(module) && what.adapts(module) {
                let n = l.r * (shape[0] + shape[1]);
                trainable += n;
                extra += n;
                vision_trainable |= is_vision(module);
            }
        }
    }
    if let Some(sp) = &what.soft_prompt {
        let n = sp.length as i64 * pcfg.text_config.hidden_size;
        trainable += n;
        extra += n;
    }
    (base_params, base_bytes, trainable, extra, vision_trainable)
}
