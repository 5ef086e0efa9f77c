//! Where a step's time goes, block by block, and the memory planner's estimate for a step.
//!
//! `profiled_step` runs the same operations as the plain (not checkpointed) branch of
//! `trainer::step::forward_backward` (vision tower and projector, embeddings, every decoder layer, final norm, output
//! head and loss at the supervised positions, one backward), timing each; the Python worker times the same blocks with
//! forward hooks. On CPU every operation is synchronous, so wall time per block is that block's cost.
use anyhow::Result;
use paligemma::{Batch, PaliGemma, Segment};
use std::time::Instant;
use tch::{Kind, Tensor};
use trainer::memory::{self, PlanInput};
use trainer::step::StepOptions;
use trainer::strategy::Built;

pub fn profiled_step(
    model: &PaliGemma,
    batch: &Batch,
    pixels: &Tensor,
    soft: Option<&Tensor>,
    o: &StepOptions,
    record: &mut dyn FnMut(&str, f64),
) -> Result<f64> {
    let mut t = Instant::now();
    let mut lap = |name: &str, record: &mut dyn FnMut(&str, f64)| {
        if model.device().is_cuda() {
            tch::Cuda::synchronize(0);
        }
        record(name, t.elapsed().as_secs_f64());
        t = Instant::now();
    };
    let feats = if o.vision_trainable {
        model.image_features_t(pixels, true)
    } else {
        tch::no_grad(|| model.image_features(pixels))
    };
    lap("vision tower + projector", record);
    let x0 = model.embed(&batch.ids, &batch.segments, Some(&feats), soft);
    lap("embeddings", record);
    let lm = &model.language_model;
    let ar = batch.segments.eq(Segment::Suffix.id()).to_kind(Kind::Int64);
    let valid = batch.segments.ne(Segment::Pad.id());
    let mask = attention_mask(&ar, &valid);
    let positions = valid.to_kind(Kind::Int64).cumsum(1, Kind::Int64);
    let rope = lm.rope.tables(&positions, x0.kind());
    lap("mask + RoPE tables", record);
    let mut h = x0;
    for (i, layer) in lm.layers.iter().enumerate() {
        h = layer.forward_t(&h, &rope, &mask, None, true);
        lap(&format!("decoder layer {i}"), record);
    }
    let h = lm.norm.forward(&h);
    lap("final norm", record);
    let out = model.loss_from_hidden(&h, &batch.labels, o.reduction)?;
    let loss = f64::try_from(&out.loss)?;
    lap("output head + loss (supervised positions only)", record);
    (out.loss * o.loss_scale).backward();
    lap("backward", record);
    Ok(loss)
}

/// The full-sequence case of `gemma::attention_mask` (this crate does not depend on `gemma`): query i may attend key
/// j iff `cumsum(ar)_j <= cumsum(ar)_i` and both are real tokens; a padding query sees itself. The profiled loss must
/// equal the unprofiled one, which the benchmark checks against the reference like any other loss.
fn attention_mask(ar: &Tensor, valid: &Tensor) -> Tensor {
    let t = ar.size()[1];
    let c = ar.cumsum(1, Kind::Int64);
    let allowed = c
        .unsqueeze(1)
        .le_tensor(&c.unsqueeze(2))
        .logical_and(&valid.unsqueeze(1))
        .logical_and(&valid.unsqueeze(2));
    let eye = Tensor::eye(t, (Kind::Bool, ar.device())).unsqueeze(0);
    allowed.logical_or(&eye).unsqueeze(1)
}

/// The planner's estimate (`trainer::memory::plan`, what `pgrs plan` and `--dry-run` print) for this step.
pub fn plan_for(built: &Built, batch: &Batch, spec: &super::spec::Spec) -> memory::Plan {
    let base: Vec<(String, Tensor)> = built.base_vs.variables().into_iter().collect();
    let (base_params, base_bytes, trainable, extra) =
        memory::sizes_from_tensors(&base, &built.trainables);
    let (b, l) = batch.ids.size2().expect("[B, L]");
    memory::plan(&PlanInput {
        config: &built.model.config,
        act_bytes: memory::kind_bytes(built.model.kind()),
        base_params,
        base_bytes,
        trainable_params: trainable,
        extra_params: extra,
        batch: b as usize,
        seq_len: l as usize,
        supervised_tokens: batch.supervised_tokens() as usize,
        checkpointing: spec.checkpointing,
        vision_trainable: built.vision_trainable,
        optimizer_slots: 2,
    })
}
