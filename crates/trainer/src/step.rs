//! One forward + backward pass, plain or with gradient checkpointing (`crate::checkpointing`) over the layers of each
//! tower that trains. Both modes run the towers' own pieces (`embed`/`prepare`, layers, `finish`); checkpointed
//! blocks are seeded `seed + i` (Gemma layer i) and `seed + 10_000 + i` (vision layer i) in both passes.
use crate::checkpointing::checkpointed;
use crate::TrainError;
use paligemma::{Batch, LossReduction, PaliGemma};
use tch::Tensor;

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
    if batch.supervised_tokens() == 0 {
        return Err(paligemma::PaliGemmaError::NoSupervisedTokens.into());
    }
    let (lm, vt) = (&model.language_model, &model.vision_tower);
    let (ar, valid) = paligemma::ar_valid(&batch.segments);
    let loss_backward = |hidden: &Tensor| -> Result<(f64, i64), TrainError> {
        let out = model.loss_from_hidden(hidden, &batch.labels, o.reduction)?;
        let value = f64::try_from(&out.loss)?;
        (out.loss * o.loss_scale).backward();
        Ok((value, out.tokens))
    };
    // From the image features on; backward reaches the vision tower through them when they carry a graph.
    let language = |feats: &Tensor| {
        let x0 = model.embed(&batch.ids, &batch.segments, Some(feats), soft);
        if !o.checkpointing {
            return loss_backward(&lm.forward_embeds(&x0, &ar, &valid, None, true));
        }
        let pass = lm.prepare(&x0, &ar, &valid);
        let run = |l: &gemma::DecoderLayer, h: &Tensor| l.forward_t(h, &pass, None, true);
        let seed = |i: usize| o.seed.wrapping_add(i as i64);
        checkpointed(&lm.layers, &x0, run, seed, |last| loss_backward(&lm.finish(last)))
    };
    // Image features: through the vision tower with grad only if something there trains.
    if !o.vision_trainable {
        return language(&tch::no_grad(|| model.image_features(pixels)));
    } else if !o.checkpointing {
        return language(&model.image_features_t(pixels, true));
    }
    let run = |l: &siglip::EncoderLayer, h: &Tensor| l.forward_t(h, true);
    let seed = |i: usize| o.seed.wrapping_add(10_000 + i as i64);
    checkpointed(&vt.encoder.layers, &vt.embed(pixels), run, seed, |last| {
        language(&model.project_t(&vt.finish(last), true))
    })
}
