//! The files the orchestrator and the two workers exchange. `scripts/bench/hf_worker.py` reads and writes the same
//! JSON, so field names here are the contract with it.
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Train,
    Generate,
}

/// One case, as both workers receive it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    pub task: Task,
    pub model_dir: PathBuf,
    /// `input_ids`, `segments`, `labels` (train) and `pixel_values`, as written by `inputs`.
    pub inputs: PathBuf,
    /// Initial trainables by our variable names (LoRA A/B, `soft_prompt.weight`); none: the build's own init.
    pub init: Option<PathBuf>,
    /// `lora`, `hard_prompt` (Gemma attention), `soft_prompt`, or `custom` (Rust only: SigLIP + MLP + Gemma).
    pub strategy: String,
    pub dtype: String,
    pub device: String,
    pub checkpointing: bool,
    pub threads: usize,
    pub warmup: usize,
    pub steps: usize,
    pub lr: f64,
    pub lora_r: i64,
    pub lora_alpha: f64,
    pub max_grad_norm: Option<f64>,
    pub num_beams: usize,
    pub max_new_tokens: usize,
    pub profile: bool,
    /// The custom composition's standalone SigLIP and Gemma directories.
    pub siglip_dir: Option<PathBuf>,
    pub gemma_dir: Option<PathBuf>,
    /// Soft-prompt length (the inputs carry as many slots).
    pub soft_len: usize,
    /// Also report the memory planner's estimate for this step (Rust side; fullsize cases).
    pub plan: bool,
    /// Generate on CPU, Rust side: probe the machine's read speed and multiply-add rate right before each timed
    /// call (`WorkerResult::read_bps` / `fma_rate`), the decoding step's bound at the moments the steps run.
    #[serde(default)]
    pub probe: bool,
}

/// What a worker reports. Byte counts are of the worker's own process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerResult {
    pub side: String,
    #[serde(default)]
    pub versions: serde_json::Value,
    pub threads: i64,
    /// Losses of every step, warm-up included (each step sees the same batch, so the sequence shows the updates).
    #[serde(default)]
    pub losses: Vec<f64>,
    /// Timed steps (seconds).
    #[serde(default)]
    pub step_s: Vec<f64>,
    #[serde(default)]
    pub trainable_params: i64,
    /// Generated ids per prompt (first call), cut after `<eos>`.
    #[serde(default)]
    pub ids: Vec<Vec<i64>>,
    #[serde(default)]
    pub gen_s: Vec<f64>,
    #[serde(default)]
    pub ttft_s: Vec<f64>,
    /// Read speeds (bytes/s, the faster of `read_bound`'s two probes), one right before each timed call
    /// (`Spec::probe`).
    #[serde(default)]
    pub read_bps: Vec<f64>,
    /// f32 multiply-adds per second (`fma_probe`), one right before each timed call where the CPU has a probe.
    #[serde(default)]
    pub fma_rate: Vec<f64>,
    pub load_s: f64,
    /// RSS when the process started, after the runtime was initialised, and after the model was loaded.
    pub rss_start: u64,
    pub rss_baseline: u64,
    pub rss_loaded: u64,
    /// Peak RSS after loading (high-water mark reset once the model was ready).
    pub peak_rss: u64,
    /// Peak RSS of the whole process, loading included.
    pub peak_rss_total: u64,
    /// Whether the high-water mark could be reset (else `peak_rss` includes loading).
    #[serde(default)]
    pub peak_reset: bool,
    /// Peak device memory (CUDA runs, where the side can tell).
    #[serde(default)]
    pub peak_device_bytes: Option<u64>,
    /// Mean seconds per block of a step (profiling runs).
    #[serde(default)]
    pub profile: Option<Vec<(String, f64)>>,
    /// Fullsize runs: the memory planner's estimate for this exact step, in bytes, and its table.
    #[serde(default)]
    pub plan_bytes: Option<f64>,
    #[serde(default)]
    pub plan_table: Option<String>,
    #[serde(default)]
    pub seq_len: Option<i64>,
}

impl WorkerResult {
    /// The memory figure the tables compare: GPU memory on CUDA runs, peak RSS while working otherwise.
    pub fn peak_memory(&self) -> f64 {
        self.peak_device_bytes.map_or(self.peak_rss as f64, |b| b as f64)
    }
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(value)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes the raw per-case results of a benchmark run as `results-<name>-<time>.json` under `work` and says where.
pub fn write_raw(work: &Path, name: &str, cases: Vec<serde_json::Value>) -> Result<PathBuf> {
    let raw = work.join(format!("results-{name}-{}.json", trainer::run::now().0));
    write_json(&raw, &cases)?;
    eprintln!("raw results: {}", raw.display());
    Ok(raw)
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not the expected JSON", path.display()))
}
