//! One forward + backward pass, plain or with gradient checkpointing.
//!
//! tch has no `torch.utils.checkpoint` (no custom autograd functions), so checkpointing is done by hand
//! (rust-ml-anchors B3): the forward runs each transformer block under `no_grad`, keeping only block inputs; the
//! backward sweep recomputes one block at a time with grad and feeds the upstream gradient in with the
//! vector-Jacobian product `d sum(y * g) / dy = g`. Memory is the block boundaries plus one block's activations; the
//! cost is one extra forward. Gradients equal the plain ones (tested at 1e-6 in f32). Randomness inside a block
//! (LoRA dropout) is re-seeded identically in both passes. Nothing here relies on inputs requiring grad, so a frozen
//! base with adapters inside gets its gradients (the reentrant-checkpointing pitfall, user-pitfalls item 5).
use crate::TrainError;
use paligemma::{Batch, LossReduction, PaliGemma, Segment};
use tch::{Kind, Tensor};

pub struct StepOptions {
    pub checkpointing: bool,
    /// Anything in the vision tower or projector trains.
    pub vision_trainable: bool,
    pub reduction: LossReduction,
    /// Multiplies the loss before backward (1 / grad_accum, times the f16 loss scale).
    pub loss_scale: f64,
    /// Base seed for per-block randomness.
    pub seed: i64,
}

/// Runs forward and backward, accumulating into `.grad()`; returns the (unscaled) loss and supervised tokens.
pub fn forward_backward(
    model: &PaliGemma,
    batch: &Batch,
    pixels: &Tensor,
    soft: Option<&Tensor>,
    o: &StepOptions,
) -> Result<(f64, i64), TrainError> {
    let lm = &model.language_model;
    if batch.supervised_tokens() == 0 {
        return Err(paligemma::PaliGemmaError::NoSupervisedTokens.into());
    }
    // Image features: through the vision tower with grad only if something there trains.
    let (feats, vision_leaf, vision_inputs) = if !o.vision_trainable {
        (tch::no_grad(|| model.image_features(pixels)), None, vec![])
    } else if !o.checkpointing {
        (model.image_features_t(pixels, true), None, vec![])
    } else {
        // Checkpointed vision tower: block inputs kept without graph; the post-norm + projector run with grad from a
        // leaf at the last block's output.
        let vt = &model.vision_tower;
        let mut inputs = Vec::with_capacity(vt.encoder.layers.len());
        let mut h = tch::no_grad(|| vt.embeddings.forward(pixels));
        for (i, layer) in vt.encoder.layers.iter().enumerate() {
            inputs.push(h.shallow_clone());
            tch::manual_seed(o.seed.wrapping_add(10_000 + i as i64));
            h = tch::no_grad(|| layer.forward_t(&h, true));
        }
        let leaf = h.detach().set_requires_grad(true);
        let z = vt.post_layernorm.forward(&leaf);
        let feats = model.multi_modal_projector.forward_t(&z, true).to_kind(model.kind());
        (feats, Some(leaf), inputs)
    };
    let x0 = model.embed(&batch.ids, &batch.segments, Some(&feats), soft);
    let (ar, valid) = (
        batch.segments.eq(Segment::Suffix.id()).to_kind(Kind::Int64),
        batch.segments.ne(Segment::Pad.id()),
    );
    let loss_value;
    let tokens;
    if !o.checkpointing {
        let h = lm.forward_embeds(&x0, &ar, &valid, None, true);
        let out = model.loss_from_hidden(&h, &batch.labels, o.reduction)?;
        loss_value = f64::try_from(&out.loss).map_err(tch_err)?;
        tokens = out.tokens;
        (out.loss * o.loss_scale).backward();
    } else {
        let l = x0.size()[1];
        let mask = gemma::attention_mask(&ar, &valid, l);
        let rope = lm.rope.tables(&gemma::positions(&valid, l), x0.kind());
        let mut inputs = Vec::with_capacity(lm.layers.len());
        let mut h = x0.detach();
        for (i, layer) in lm.layers.iter().enumerate() {
            inputs.push(h.shallow_clone());
            tch::manual_seed(o.seed.wrapping_add(i as i64));
            h = tch::no_grad(|| layer.forward_t(&h, &rope, &mask, None, true));
        }
        let last = h.detach().set_requires_grad(true);
        let out = model.loss_from_hidden(&lm.norm.forward(&last), &batch.labels, o.reduction)?;
        loss_value = f64::try_from(&out.loss).map_err(tch_err)?;
        tokens = out.tokens;
        (out.loss * o.loss_scale).backward();
        let mut g = last.grad();
        for (i, layer) in lm.layers.iter().enumerate().rev() {
            let x = inputs[i].detach().set_requires_grad(true);
            tch::manual_seed(o.seed.wrapping_add(i as i64));
            let y = layer.forward_t(&x, &rope, &mask, None, true);
            (y * &g).sum(Kind::Float).backward();
            g = x.grad();
        }
        if x0.requires_grad() {
            (&x0 * &g).sum(Kind::Float).backward();
        }
    }
    if let Some(leaf) = vision_leaf {
        let vt = &model.vision_tower;
        let mut g = leaf.grad();
        if g.defined() {
            for (i, layer) in vt.encoder.layers.iter().enumerate().rev() {
                let x = vision_inputs[i].detach().set_requires_grad(true);
                tch::manual_seed(o.seed.wrapping_add(10_000 + i as i64));
                let y = layer.forward_t(&x, true);
                (y * &g).sum(Kind::Float).backward();
                g = x.grad();
            }
            // the patch embedding (conv + positions) when it trains
            if vt.embeddings.patch_weight.requires_grad() || vt.embeddings.position.requires_grad()
            {
                (vt.embeddings.forward(pixels) * &g).sum(Kind::Float).backward();
            }
        }
    }
    Ok((loss_value, tokens))
}

fn tch_err(e: tch::TchError) -> TrainError {
    TrainError::Torch(e)
}
