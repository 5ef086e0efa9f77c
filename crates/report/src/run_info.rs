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
    /// Which weights the final evaluation used (`train.select_best`: the best validation's).
    pub final_checkpoint: Option<FinalCheckpoint>,
    /// Where early stopping ended training.
    pub early_stopping: Option<EarlyStopping>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct FinalCheckpoint {
    pub step: Option<u64>,
    /// The validation metric and value that selected it; absent for the last step's weights.
    pub selected_by: Option<SelectedBy>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct SelectedBy {
    pub metric: String,
    pub value: Option<f64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct EarlyStopping {
    pub stopped_at: Option<u64>,
    pub patience: Option<u64>,
    pub metric: Option<String>,
}

impl RunInfo {
    /// "step 150 (best validation CIDEr 52.1)" or "step 400 (last)", when the trainer recorded it.
    pub fn evaluated_weights(&self) -> Option<String> {
        let f = self.final_checkpoint.as_ref()?;
        let step = f.step?;
        Some(match &f.selected_by {
            Some(s) => match s.value {
                Some(v) => format!("step {step} (best validation {} {:.2})", s.metric, v * 100.0),
                None => format!("step {step} (best validation {})", s.metric),
            },
            None => format!("step {step} (last)"),
        })
    }

    /// "at step 300: no CIDEr improvement in 3 validations".
    pub fn early_stop(&self) -> Option<String> {
        let e = self.early_stopping.as_ref()?;
        let metric = e.metric.as_deref().unwrap_or("metric");
        let patience = e.patience.map_or(String::new(), |p| format!(" in {p} validations"));
        Some(format!("at step {}: no {metric} improvement{patience}", e.stopped_at?))
    }
}

/// A reference model's metrics, shown as an extra row of the final metric table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Baseline {
    pub name: String,
    /// Metric name to value (fractions, as pycocoevalcap reports them). `null` stands for a non-finite value.
    pub metrics: OrderedMap<Option<f64>>,
}
