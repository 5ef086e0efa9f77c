//! Learnable soft prompts for PaliGemma: N vectors of the decoder's width injected into the input embeddings, inside
//! the bidirectional prefix (after the image tokens, or after the text prefix), so every image and prefix token
//! attends to them and they attend to the image (prompt tuning, Lester et al. 2021, arXiv:2104.08691, placed inside the
//! prefix; peft's `PromptTuningConfig` puts virtual tokens before everything, which is not where a VLM prefix is).
//!
//! The vectors live in their own f32 `VarStore` and are written into the `SoftPrompt` slots of the sequence built by
//! `paligemma::SequenceLayout` (its `soft_prompt` field), by `PaliGemma::embed`. They replace embeddings *after* the
//! `sqrt(hidden)` scaling, so "initialise from the embeddings of a text" means the scaled embeddings of that text,
//! exactly what the model sees when the text itself is the input.
use paligemma::{PaliGemma, SoftPromptPlacement};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum SoftPromptError {
    #[error("invalid soft prompt config: {0}")]
    Config(String),
    #[error("soft prompt vectors must be f32 (their VarStore is {0:?})")]
    Kind(Kind),
}

/// How the vectors start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum SoftPromptInit {
    /// Normal with this standard deviation; `None` matches the spread of the (scaled) token embeddings.
    Normal {
        std: Option<f64>,
    },
    Zeros,
    /// The scaled embeddings of a text's tokens, repeated (or cut) to the prompt length, as peft's `TEXT` init.
    Text {
        text: String,
    },
    /// Scaled embeddings of tokens drawn uniformly from the vocabulary (ids below `max_id`).
    RandomVocab,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoftPromptConfig {
    /// Number of vectors.
    #[serde(default = "d_length")]
    pub length: usize,
    #[serde(default = "d_placement")]
    pub placement: SoftPromptPlacement,
    #[serde(default = "d_init")]
    pub init: SoftPromptInit,
}

fn d_length() -> usize {
    10
}
fn d_placement() -> SoftPromptPlacement {
    SoftPromptPlacement::AfterImage
}
fn d_init() -> SoftPromptInit {
    SoftPromptInit::Text { text: "caption en".into() }
}

impl Default for SoftPromptConfig {
    fn default() -> Self {
        Self { length: d_length(), placement: d_placement(), init: d_init() }
    }
}

#[derive(Debug)]
pub struct SoftPrompt {
    /// `[length, hidden]`, f32, trainable; variable name `soft_prompt.weight`.
    pub vectors: Tensor,
    pub placement: SoftPromptPlacement,
}

impl SoftPrompt {
    /// Creates the vectors under `path` (an f32 `VarStore`). `text_ids` are the token ids of the init text (needed
    /// for `Text` init); `max_id` bounds `RandomVocab` draws (the tokenizer's real vocabulary, not the padding rows).
    pub fn new(
        path: nn::Path,
        cfg: &SoftPromptConfig,
        model: &PaliGemma,
        text_ids: Option<&[i64]>,
        max_id: i64,
    ) -> Result<Self, SoftPromptError> {
        if path.kind() != Kind::Float {
            return Err(SoftPromptError::Kind(path.kind()));
        }
        if cfg.length == 0 {
            return Err(SoftPromptError::Config("length must be at least 1".into()));
        }
        let lm = &model.language_model;
        let (n, d) = (cfg.length as i64, lm.config.hidden_size);
        let vectors = path.sub("soft_prompt").var("weight", &[n, d], nn::Init::Const(0.0));
        let device = vectors.device();
        let init = tch::no_grad(|| -> Result<Tensor, SoftPromptError> {
            let scaled = |ids: &Tensor| {
                lm.embed(&ids.to_device(lm.embed_tokens.device())).to_kind(Kind::Float)
            };
            Ok(match &cfg.init {
                SoftPromptInit::Zeros => Tensor::zeros([n, d], (Kind::Float, device)),
                SoftPromptInit::Normal { std } => {
                    let std = match std {
                        Some(s) => *s,
                        None => {
                            let ids = Tensor::arange(
                                max_id.min(lm.config.vocab_size),
                                (Kind::Int64, device),
                            );
                            f64::try_from(scaled(&ids).std(true)).unwrap_or(1.0)
                        }
                    };
                    Tensor::randn([n, d], (Kind::Float, device)) * std
                }
                SoftPromptInit::Text { text } => {
                    let ids = text_ids.filter(|i| !i.is_empty()).ok_or_else(|| {
                        SoftPromptError::Config(format!("init text `{text}` tokenizes to nothing"))
                    })?;
                    let cycled: Vec<i64> = ids.iter().copied().cycle().take(cfg.length).collect();
                    scaled(&Tensor::from_slice(&cycled))
                }
                SoftPromptInit::RandomVocab => {
                    let ids = Tensor::randint(
                        max_id.min(lm.config.vocab_size),
                        [n],
                        (Kind::Int64, device),
                    );
                    scaled(&ids)
                }
            })
        })?;
        tch::no_grad(|| vectors.shallow_clone().copy_(&init.to_device(device)));
        Ok(Self { vectors, placement: cfg.placement })
    }
}
