//! The one place that decides what trains: from an experiment config, the base-weight globs, the LoRA adapters and
//! the soft prompt. The strategy builder, the memory planner, `eval`/`export` and the run report all read this value,
//! so a new strategy is one arm of [`WhatTrains::of`] (the match is exhaustive: a strategy that is not handled here
//! does not compile).
use crate::config::{ExperimentConfig, Strategy};
use crate::glob;
use layers::LoraConfig;
use paligemma::names;
use soft_prompt::SoftPromptConfig;

#[derive(Debug, Clone)]
pub struct WhatTrains {
    /// Globs over base parameter names (preset, `train.trainable`, the new projector of a custom composition).
    pub base: Vec<String>,
    /// LoRA adapters and the globs over linear-module names they attach to.
    pub lora: Option<(LoraConfig, Vec<String>)>,
    /// Learnable prompt vectors.
    pub soft_prompt: Option<SoftPromptConfig>,
}

impl WhatTrains {
    pub fn of(cfg: &ExperimentConfig) -> Self {
        let mut base = cfg.train.trainable.clone();
        base.extend(cfg.train.preset.iter().flat_map(|p| p.globs()).map(|g| g.to_string()));
        let lora = || {
            cfg.lora.as_ref().map(|l| {
                let c = LoraConfig {
                    r: l.r,
                    lora_alpha: l.alpha,
                    lora_dropout: l.dropout,
                    use_rslora: l.use_rslora,
                };
                (c, l.targets.clone())
            })
        };
        let (lora, soft_prompt) = match cfg.strategy {
            Strategy::HardPrompt => (None, None),
            Strategy::Lora => (lora(), None),
            Strategy::SoftPrompt | Strategy::Hybrid => (None, cfg.soft_prompt.clone()),
            Strategy::Custom => {
                base.push(format!("{}.**", names::PROJECTOR));
                (lora(), None)
            }
        };
        Self { base, lora, soft_prompt }
    }

    /// Whether the base parameter `name` trains.
    pub fn trains_base(&self, name: &str) -> bool {
        self.base.iter().any(|g| glob::matches(g, name))
    }

    /// Whether the linear module `module` (e.g. `language_model.model.layers.0.self_attn.q_proj`) gets an adapter.
    pub fn adapts(&self, module: &str) -> bool {
        self.lora
            .as_ref()
            .is_some_and(|(_, targets)| targets.iter().any(|g| glob::matches(g, module)))
    }

    /// Whether a parameter or module name belongs to the vision side (tower or projector): when nothing there
    /// trains, image features are computed without a graph.
    pub fn is_vision(name: &str) -> bool {
        [names::VISION[0], names::PROJECTOR]
            .iter()
            .any(|p| name.strip_prefix(p).is_some_and(|rest| rest.starts_with('.')))
    }

    /// What a report calls this experiment, e.g. "LoRA (r 8) + hard prompt".
    pub fn describe(&self, strategy: Strategy) -> String {
        let mut parts = vec![strategy.label().to_string()];
        if let Some((l, _)) = &self.lora {
            parts.push(format!("r {}, alpha {}", l.r, l.lora_alpha));
        }
        if let Some(sp) = &self.soft_prompt {
            parts.push(format!("{} soft vectors", sp.length));
        }
        parts.join(", ")
    }
}
