//! The composition: image features from SigLIP + projector go, unscaled, into the image slots of the sequence;
//! text tokens are embedded and scaled by `sqrt(hidden)`; soft-prompt vectors (when given) go into their slots; the
//! Gemma decoder runs with the prefix-LM mask derived from the segment ids.
//!
//! Image scaling follows transformers 5.23 and big_vision (features enter unscaled, only text embeddings are
//! multiplied by `sqrt(hidden)`). transformers 4.4x divided the features by `sqrt(hidden)` and then multiplied the
//! whole sequence by it, which is the same up to rounding; candle's L2 normalisation is not, and is not followed.
use crate::names::{LANGUAGE, PROJECTOR, VISION};
use crate::segment::ar_valid;
use crate::sequence::IGNORE;
use crate::{Batch, PaliGemmaConfig, PaliGemmaError, Result, Segment};
use gemma::{Gemma, KvCache};
use layers::Linear;
use projector::{Projector, ProjectorConfig};
use siglip::SiglipVisionModel;
use tch::{nn, Kind, Reduction, Tensor};
use weights::ParamInit;

#[derive(Debug)]
pub struct PaliGemma {
    pub vision_tower: SiglipVisionModel,
    pub multi_modal_projector: Projector,
    pub language_model: Gemma,
    pub config: PaliGemmaConfig,
}

/// How the loss averages over tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossReduction {
    /// Mean over all supervised tokens of the batch (transformers).
    #[default]
    TokenMean,
    /// Mean over examples of each example's token mean (big_vision's trainer).
    ExampleMean,
}

#[derive(Debug)]
pub struct LossOutput {
    /// Scalar f32 loss.
    pub loss: Tensor,
    /// Supervised tokens that contributed.
    pub tokens: i64,
}

impl PaliGemma {
    /// Builds the model under `root` with the hub variable names.
    pub fn new(root: nn::Path, cfg: &PaliGemmaConfig, init: ParamInit) -> Result<Self> {
        cfg.validate()?;
        let vision_tower =
            SiglipVisionModel::new(root.sub(VISION[0]).sub(VISION[1]), &cfg.vision_config, init)?;
        let projector_cfg = ProjectorConfig::Linear {
            in_dim: cfg.vision_config.hidden_size,
            out_dim: cfg.projector_dim(),
        };
        let multi_modal_projector = Projector::new(root.sub(PROJECTOR), &projector_cfg, init);
        let language_model =
            Gemma::new(root.sub(LANGUAGE[0]).sub(LANGUAGE[1]), &cfg.text_config, init)?;
        Ok(Self { vision_tower, multi_modal_projector, language_model, config: cfg.clone() })
    }

    /// Assembles a model from separately built parts (the custom SigLIP + projector + Gemma composition). The
    /// parts' variables must live under the hub prefixes of `names` if the result is to be saved and reloaded.
    pub fn from_parts(
        vision_tower: SiglipVisionModel,
        multi_modal_projector: Projector,
        language_model: Gemma,
        config: PaliGemmaConfig,
    ) -> Self {
        Self { vision_tower, multi_modal_projector, language_model, config }
    }

    pub fn kind(&self) -> Kind {
        self.language_model.kind()
    }

    /// Every linear layer with its variable-name prefix (hub names, e.g.
    /// `language_model.model.layers.3.self_attn.q_proj`), for attaching LoRA adapters by glob.
    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut out: Vec<(String, &mut Linear)> = Vec::new();
        let v = format!("{}.{}.encoder.layers", VISION[0], VISION[1]);
        for (i, l) in self.vision_tower.encoder.layers.iter_mut().enumerate() {
            out.extend(l.linears_mut().map(|(n, lin)| (format!("{v}.{i}.{n}"), lin)));
        }
        match &mut self.multi_modal_projector {
            Projector::Linear { linear } => out.push((format!("{PROJECTOR}.linear"), linear)),
            Projector::Mlp { fc1, fc2, .. } => {
                out.push((format!("{PROJECTOR}.fc1"), fc1));
                out.push((format!("{PROJECTOR}.fc2"), fc2));
            }
        }
        let t = format!("{}.{}.layers", LANGUAGE[0], LANGUAGE[1]);
        for (i, l) in self.language_model.layers.iter_mut().enumerate() {
            out.extend(l.linears_mut().map(|(n, lin)| (format!("{t}.{i}.{n}"), lin)));
        }
        out
    }

    pub fn device(&self) -> tch::Device {
        self.language_model.embed_tokens.device()
    }

    /// `pixel_values [B, 3, H, W]` -> projected image features `[B, N, D_text]` in the LM dtype.
    pub fn image_features_t(&self, pixel_values: &Tensor, train: bool) -> Tensor {
        self.project_t(&self.vision_tower.forward_t(pixel_values, train), train)
    }

    /// The vision tower's output `[B, N, D_vision]` -> image features `[B, N, D_text]` in the LM dtype.
    pub fn project_t(&self, vision_out: &Tensor, train: bool) -> Tensor {
        self.multi_modal_projector.forward_t(vision_out, train).to_kind(self.kind())
    }

    pub fn image_features(&self, pixel_values: &Tensor) -> Tensor {
        self.image_features_t(pixel_values, false)
    }

    /// Input embeddings `[B, L, D]`: scaled text embeddings, with image features (`[B, N, D]`, N image slots per
    /// row) and soft-prompt vectors (`[S, D]` shared by all rows, or `[B, S, D]`) written into their slots.
    pub fn embed(
        &self,
        ids: &Tensor,
        segments: &Tensor,
        image_features: Option<&Tensor>,
        soft_prompt: Option<&Tensor>,
    ) -> Tensor {
        let mut xs = self.language_model.embed(ids);
        if let Some(feats) = image_features {
            xs = scatter_slots(&xs, segments, Segment::Image, feats);
        }
        if let Some(soft) = soft_prompt {
            let soft = soft.expand([xs.size()[0], -1, -1], false);
            xs = scatter_slots(&xs, segments, Segment::SoftPrompt, &soft);
        }
        xs
    }

    /// Final hidden states `[B, L, D]` for a batch (no cache).
    pub fn hidden_t(
        &self,
        ids: &Tensor,
        segments: &Tensor,
        pixel_values: &Tensor,
        soft_prompt: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        let feats = self.image_features_t(pixel_values, train);
        let xs = self.embed(ids, segments, Some(&feats), soft_prompt);
        let (ar, valid) = ar_valid(segments);
        self.language_model.forward_embeds(&xs, &ar, &valid, None, train)
    }

    /// Full logits `[B, L, V]` (inference, tests). Training should use `loss`, which never materialises the
    /// vocabulary-wide logits over image and prompt positions.
    pub fn forward(
        &self,
        ids: &Tensor,
        segments: &Tensor,
        pixel_values: &Tensor,
        soft_prompt: Option<&Tensor>,
    ) -> Tensor {
        let h = self.hidden_t(ids, segments, pixel_values, soft_prompt, false);
        self.language_model.logits(&h)
    }

    /// Runs the decoder on embeddings with an explicit cache (generation).
    pub fn decode_step(
        &self,
        xs: &Tensor,
        segments_all: &Tensor,
        cache: Option<&mut KvCache>,
    ) -> Tensor {
        let (ar, valid) = ar_valid(segments_all);
        self.language_model.forward_embeds(xs, &ar, &valid, cache, false)
    }

    /// Cross-entropy of next-token prediction on the supervised positions, as transformers computes it (position t
    /// predicts label t+1, `IGNORE` labels skipped, f32 log-softmax), evaluating the output head only at those
    /// positions.
    pub fn loss(
        &self,
        batch: &Batch,
        pixel_values: &Tensor,
        soft_prompt: Option<&Tensor>,
        reduction: LossReduction,
        train: bool,
    ) -> Result<LossOutput> {
        let h = self.hidden_t(&batch.ids, &batch.segments, pixel_values, soft_prompt, train);
        self.loss_from_hidden(&h, &batch.labels, reduction)
    }

    /// The loss given final hidden states `[B, L, D]` and unshifted labels `[B, L]`.
    pub fn loss_from_hidden(
        &self,
        hidden: &Tensor,
        labels: &Tensor,
        reduction: LossReduction,
    ) -> Result<LossOutput> {
        let (b, l, d) = hidden.size3().expect("[B, L, D]");
        let targets = labels.narrow(1, 1, l - 1);
        let supervised = targets.ne(IGNORE);
        let tokens = i64::try_from(supervised.sum(Kind::Int64)).expect("scalar");
        if tokens == 0 {
            return Err(PaliGemmaError::NoSupervisedTokens);
        }
        let rows = supervised.flatten(0, 1).nonzero().squeeze_dim(1);
        let h = hidden.narrow(1, 0, l - 1).reshape([-1, d]).index_select(0, &rows);
        let logits = self.language_model.logits(&h).to_kind(Kind::Float);
        let y = targets.reshape([-1]).index_select(0, &rows);
        let loss = match reduction {
            LossReduction::TokenMean => {
                logits.cross_entropy_loss::<Tensor>(&y, None, Reduction::Mean, IGNORE, 0.0)
            }
            LossReduction::ExampleMean => {
                let per_token =
                    logits.cross_entropy_loss::<Tensor>(&y, None, Reduction::None, IGNORE, 0.0);
                let example = (rows.divide_scalar_mode(l - 1, "floor")).to_kind(Kind::Int64);
                let sums = Tensor::zeros([b], (Kind::Float, h.device()))
                    .index_add(0, &example, &per_token);
                let counts = supervised.sum_dim_intlist(1, false, Kind::Float);
                let has = counts.gt(0.0);
                (sums.masked_select(&has) / counts.masked_select(&has)).mean(Kind::Float)
            }
        };
        Ok(LossOutput { loss, tokens })
    }
}

/// Writes `values [.., D]` (in order, cast to the dtype of `xs`) into the positions of `xs [B, L, D]` whose segment
/// is `seg`.
fn scatter_slots(xs: &Tensor, segments: &Tensor, seg: Segment, values: &Tensor) -> Tensor {
    let values = values.to_kind(xs.kind()).reshape([-1, xs.size()[2]]);
    let mask = segments.eq(seg.id());
    let slots = i64::try_from(mask.sum(Kind::Int64)).expect("scalar");
    assert_eq!(
        slots,
        values.size()[0],
        "{seg:?} slots in the batch ({slots}) != vectors to place ({}); image features and image tokens must match",
        values.size()[0]
    );
    xs.masked_scatter(&mask.unsqueeze(-1).expand_as(xs), &values)
}
