//! Where a step's time goes, block by block, and the memory planner's estimate for a step.
//!
//! `profiled_step` runs the same operations as the plain (not checkpointed) branch of
//! `trainer::step::forward_backward` (vision tower and projector, embeddings, every decoder layer, final norm, output
//! head and loss at the supervised positions, one backward), timing each; the Python worker times the same blocks with
//! forward hooks. On CPU every operation is synchronous, so wall time per block is that block's cost.
use anyhow::Result;
use paligemma::{Batch, PaliGemma};
use std::time::Instant;
use tch::Tensor;
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
    let (ar, valid) = paligemma::ar_valid(&batch.segments);
    let pass = lm.prepare(&x0, &ar, &valid);
    lap("mask + RoPE tables", record);
    let mut h = x0;
    for (i, layer) in lm.layers.iter().enumerate() {
        h = layer.forward_t(&h, &pass, None, true);
        lap(&format!("decoder layer {i}"), record);
    }
    let h = lm.finish(&h);
    lap("final norm", record);
    let out = model.loss_from_hidden(&h, &batch.labels, o.reduction)?;
    let loss = f64::try_from(&out.loss)?;
    lap("output head + loss (supervised positions only)", record);
    (out.loss * o.loss_scale).backward();
    lap("backward", record);
    Ok(loss)
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
        ranks: 1,
    })
}
