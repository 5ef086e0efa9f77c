//! `run.json`: what the trainer records about a run (model, strategy, parameter counts, status, baseline).
//! Every field is optional so that a run that crashed early, or one written by an older trainer, still reports.

use serde::Deserialize;

use crate::ordered_map::OrderedMap;

/// The content of `run.json` (see docs/report.md for the contract).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct RunInfo {
    pub name: Option<String>,
    /// `hard_prompt`, `lora`, `soft_prompt`, `hybrid` or `custom`.
    pub strategy: Option<String>,
    /// How the trainer describes what trains ("LoRA, r 8, alpha 16").
    pub strategy_label: Option<String>,
    pub model: Option<String>,
    pub dataset: Option<String>,
    /// Where the evaluated images live; gallery thumbnails are read from `<image_root>/<image_id>`.
    pub image_root: Option<String>,
    /// RFC 3339.
    pub started: Option<String>,
    /// RFC 3339; `null` while running.
    pub finished: Option<String>,
    /// `running`, `finished`, `interrupted` or `failed`.
    pub status: Option<String>,
    pub device: Option<String>,
    pub dtype: Option<String>,
    pub trainable_params: Option<u64>,
    pub total_params: Option<u64>,
    /// Planned number of optimizer steps.
    pub steps: Option<u64>,
    /// Planned memory use by item, in bytes, in the trainer's order.
    pub memory_plan: Option<OrderedMap<f64>>,
    /// Metrics of a reference model (zero-shot, blind baseline …) on the same split.
    pub baseline: Option<Baseline>,
}

/// A reference model's metrics, shown as an extra row of the final metric table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Baseline {
    pub name: String,
    /// Metric name to value (fractions, as pycocoevalcap reports them). `null` stands for a non-finite value.
    pub metrics: OrderedMap<Option<f64>>,
}
