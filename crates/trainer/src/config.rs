//! The experiment file (TOML): one per strategy, every key overridable with `--set key=value`. Unknown keys and
//! wrong types are errors naming the key; strategy-specific sections are checked against the strategy.
use crate::TrainError;
use paligemma::{LossReduction, SoftPromptPlacement};
use serde::{Deserialize, Serialize};
use soft_prompt::SoftPromptConfig;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// A text prefix and a trainable mask over the base weights.
    HardPrompt,
    /// LoRA adapters on the target modules; the base is frozen.
    Lora,
    /// Learnable prompt vectors; the base is frozen.
    SoftPrompt,
    /// Hard text prefix followed by soft vectors (the seed's phase 3).
    Hybrid,
    /// Standalone SigLIP + standalone Gemma + a new projector (optionally LoRA on Gemma).
    Custom,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Self::HardPrompt => "hard_prompt",
            Self::Lora => "lora",
            Self::SoftPrompt => "soft_prompt",
            Self::Hybrid => "hybrid",
            Self::Custom => "custom",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    pub name: String,
    pub strategy: Strategy,
    #[serde(default)]
    pub seed: u64,
    pub model: ModelConfig,
    pub data: DataConfig,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub optim: OptimConfig,
    #[serde(default)]
    pub lora: Option<LoraSection>,
    #[serde(default)]
    pub soft_prompt: Option<SoftPromptConfig>,
    #[serde(default)]
    pub eval: EvalConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelSource {
    /// An HF-format PaliGemma directory (`cargo xtask convert` output or a hub download).
    Hf,
    /// A new PaliGemma-architecture model initialised at random (`[model.scratch]`).
    Scratch,
    /// Standalone SigLIP + Gemma checkpoints and a new projector (`[model.custom]`).
    Custom,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    #[serde(default = "d_source")]
    pub source: ModelSource,
    /// HF model directory (`source = "hf"`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Dtype of the frozen base: f32, bf16 or f16. Trainable tensors are always f32.
    #[serde(default = "d_dtype")]
    pub dtype: String,
    /// cpu, cuda or cuda:N.
    #[serde(default = "d_device")]
    pub device: String,
    /// Recompute each transformer block in backward instead of keeping its activations.
    #[serde(default)]
    pub gradient_checkpointing: bool,
    #[serde(default)]
    pub scratch: Option<ScratchConfig>,
    #[serde(default)]
    pub custom: Option<CustomConfig>,
}

fn d_source() -> ModelSource {
    ModelSource::Hf
}
fn d_dtype() -> String {
    "f32".into()
}
fn d_device() -> String {
    "cpu".into()
}

/// A from-scratch PaliGemma-architecture model (the demo): SigLIP + linear projector + Gemma, small.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScratchConfig {
    pub image_size: i64,
    pub patch_size: i64,
    pub vision_hidden: i64,
    pub vision_layers: i64,
    pub vision_heads: i64,
    pub vision_mlp: i64,
    pub text_hidden: i64,
    pub text_layers: i64,
    pub heads: i64,
    #[serde(default = "d_one")]
    pub kv_heads: i64,
    pub head_dim: i64,
    pub text_mlp: i64,
    #[serde(default = "d_init_std")]
    pub init_std: f64,
    /// A tokenizer.json to use; without it a word-level tokenizer is built from the training captions.
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
}

fn d_one() -> i64 {
    1
}
fn d_init_std() -> f64 {
    0.02
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectorKind {
    Linear,
    Mlp,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomConfig {
    /// Standalone SigLIP directory (`SiglipModel` or `SiglipVisionModel`).
    pub siglip: PathBuf,
    /// Standalone Gemma directory (`GemmaForCausalLM`).
    pub gemma: PathBuf,
    /// The Gemma tokenizer.json (defaults to `<gemma>/tokenizer.json`).
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    #[serde(default = "d_projector")]
    pub projector: ProjectorKind,
    /// Hidden width of the MLP projector (default: the Gemma width).
    #[serde(default)]
    pub projector_hidden: Option<i64>,
}

fn d_projector() -> ProjectorKind {
    ProjectorKind::Mlp
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Annotation file or dataset directory (any format rsicd-data reads).
    pub path: PathBuf,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub image_dir: Option<PathBuf>,
    /// The hard prompt (text prefix).
    #[serde(default = "d_prefix")]
    pub prefix: String,
    /// Lowercase training captions (the seed did).
    #[serde(default)]
    pub lowercase: bool,
    /// Longest sequence (image + soft + text); longer captions lose tokens from their end, `<eos>` kept.
    #[serde(default)]
    pub max_len: Option<usize>,
    #[serde(default = "d_train")]
    pub train_split: String,
    #[serde(default = "d_val")]
    pub val_split: String,
    #[serde(default = "d_test")]
    pub test_split: String,
    /// bicubic (HF processor) or bilinear (big_vision).
    #[serde(default = "d_resample")]
    pub resample: String,
}

fn d_prefix() -> String {
    "caption en".into()
}
fn d_train() -> String {
    "train".into()
}
fn d_val() -> String {
    "val".into()
}
fn d_test() -> String {
    "test".into()
}
fn d_resample() -> String {
    "bicubic".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// big_vision's PaliGemma transfer recipe and Google's T4 guide: Gemma attention only.
    Attention,
    /// The whole language model.
    Gemma,
    /// Everything.
    All,
}

impl Preset {
    pub fn globs(self) -> &'static [&'static str] {
        match self {
            Self::Attention => &["language_model.model.layers.*.self_attn.**"],
            Self::Gemma => &["language_model.**"],
            Self::All => &["**"],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Globs over base parameter names made trainable (in addition to the preset, adapters and soft prompt).
    #[serde(default)]
    pub trainable: Vec<String>,
    #[serde(default)]
    pub preset: Option<Preset>,
    #[serde(default = "d_steps")]
    pub steps: usize,
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    #[serde(default = "d_one_usize")]
    pub grad_accum: usize,
    /// Global gradient-norm clip (none when absent).
    #[serde(default = "d_clip")]
    pub max_grad_norm: Option<f64>,
    #[serde(default = "d_log_every")]
    pub log_every: usize,
    /// Validation every N steps (0: only at the end).
    #[serde(default)]
    pub eval_every: usize,
    /// Checkpoint every N steps (0: only at the end).
    #[serde(default)]
    pub checkpoint_every: usize,
    #[serde(default = "d_keep")]
    pub keep_checkpoints: usize,
    /// Stop after this many skipped (non-finite) steps.
    #[serde(default = "d_nan_patience")]
    pub nan_patience: usize,
    #[serde(default)]
    pub loss: LossReduction,
}

fn d_steps() -> usize {
    100
}
fn d_batch() -> usize {
    8
}
fn d_one_usize() -> usize {
    1
}
fn d_clip() -> Option<f64> {
    Some(1.0)
}
fn d_log_every() -> usize {
    10
}
fn d_keep() -> usize {
    3
}
fn d_nan_patience() -> usize {
    3
}

impl Default for TrainConfig {
    fn default() -> Self {
        toml::from_str("").expect("all fields have defaults")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// big_vision's PaliGemma transfer recipe uses plain SGD (momentum optional).
    Sgd,
    Adamw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    Cosine,
    Linear,
    Constant,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    #[serde(default = "d_optimizer")]
    pub name: OptimizerKind,
    #[serde(default = "d_lr")]
    pub lr: f64,
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default = "d_beta1")]
    pub beta1: f64,
    #[serde(default = "d_beta2")]
    pub beta2: f64,
    #[serde(default = "d_eps")]
    pub eps: f64,
    #[serde(default)]
    pub momentum: f64,
    #[serde(default = "d_schedule")]
    pub schedule: ScheduleKind,
    /// Warm-up steps; when absent, `warmup_frac` of the run.
    #[serde(default)]
    pub warmup_steps: Option<usize>,
    #[serde(default = "d_warmup_frac")]
    pub warmup_frac: f64,
    /// The learning rate decays to `lr * min_lr_frac`.
    #[serde(default)]
    pub min_lr_frac: f64,
}

fn d_optimizer() -> OptimizerKind {
    OptimizerKind::Adamw
}
fn d_lr() -> f64 {
    1e-4
}
fn d_beta1() -> f64 {
    0.9
}
fn d_beta2() -> f64 {
    0.999
}
fn d_eps() -> f64 {
    1e-8
}
fn d_schedule() -> ScheduleKind {
    ScheduleKind::Cosine
}
fn d_warmup_frac() -> f64 {
    0.05
}

impl Default for OptimConfig {
    fn default() -> Self {
        toml::from_str("").expect("all fields have defaults")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraSection {
    #[serde(default = "d_rank")]
    pub r: i64,
    #[serde(default = "d_alpha")]
    pub alpha: f64,
    #[serde(default)]
    pub dropout: f64,
    #[serde(default)]
    pub use_rslora: bool,
    /// Globs over linear-layer names (Gemma and/or SigLIP).
    #[serde(default = "d_targets")]
    pub targets: Vec<String>,
}

fn d_rank() -> i64 {
    8
}
fn d_alpha() -> f64 {
    16.0
}
fn d_targets() -> Vec<String> {
    vec!["language_model.model.layers.*.self_attn.{q,k,v,o}_proj".into()]
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    #[serde(default = "d_one_usize")]
    pub num_beams: usize,
    #[serde(default = "d_new_tokens")]
    pub max_new_tokens: usize,
    #[serde(default = "d_eval_batch")]
    pub batch_size: usize,
    /// Validation images per periodic evaluation (an evenly spaced fixed subset; all when absent).
    #[serde(default)]
    pub val_subset: Option<usize>,
    /// Test images in the final evaluation (all when absent).
    #[serde(default)]
    pub test_subset: Option<usize>,
    /// auto (jar if Java is there, else the labelled approximation), exact, approx, skip.
    #[serde(default = "d_meteor")]
    pub meteor: String,
    /// Also evaluate the untrained model before step 1 (zero-shot baseline).
    #[serde(default)]
    pub before: bool,
}

fn d_new_tokens() -> usize {
    32
}
fn d_eval_batch() -> usize {
    16
}
fn d_meteor() -> String {
    "auto".into()
}

impl Default for EvalConfig {
    fn default() -> Self {
        toml::from_str("").expect("all fields have defaults")
    }
}

impl ExperimentConfig {
    /// Reads a TOML experiment file and applies `key=value` overrides (values are TOML literals; bare words are
    /// strings). Relative paths are relative to the working directory, like paths typed on the command line.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?;
        Self::from_toml(&text, overrides).map_err(|e| match e {
            TrainError::Config(m) => TrainError::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    pub fn from_toml(text: &str, overrides: &[String]) -> Result<Self, TrainError> {
        let mut table: toml::Table =
            text.parse().map_err(|e: toml::de::Error| TrainError::Config(e.to_string()))?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let cfg: Self = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| TrainError::Config(format!("key `{}`: {}", e.path(), e.inner())))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        let needs_soft = matches!(self.strategy, Strategy::SoftPrompt | Strategy::Hybrid);
        if needs_soft && self.soft_prompt.is_none() {
            return bad(format!(
                "strategy `{}` needs a [soft_prompt] section",
                self.strategy.name()
            ));
        }
        if self.strategy == Strategy::Lora && self.lora.is_none() {
            return bad("strategy `lora` needs a [lora] section".into());
        }
        if let (Strategy::Hybrid, Some(sp)) = (self.strategy, &self.soft_prompt) {
            if self.data.prefix.trim().is_empty() {
                return bad("strategy `hybrid` needs a hard prefix (data.prefix)".into());
            }
            if sp.placement != SoftPromptPlacement::AfterPrefix {
                tracing::warn!(
                    "hybrid with soft vectors before the text prefix; the seed put them after it"
                );
            }
        }
        match (self.strategy, self.model.source) {
            (Strategy::Custom, ModelSource::Custom) => {}
            (Strategy::Custom, _) | (_, ModelSource::Custom) => {
                return bad("strategy `custom` and model.source = \"custom\" go together".into())
            }
            _ => {}
        }
        match self.model.source {
            ModelSource::Hf if self.model.path.is_none() => {
                return bad("model.source = \"hf\" needs model.path".into())
            }
            ModelSource::Scratch if self.model.scratch.is_none() => {
                return bad("model.source = \"scratch\" needs a [model.scratch] section".into())
            }
            ModelSource::Custom if self.model.custom.is_none() => {
                return bad("model.source = \"custom\" needs a [model.custom] section".into())
            }
            _ => {}
        }
        if self.strategy == Strategy::HardPrompt
            && self.train.preset.is_none()
            && self.train.trainable.is_empty()
        {
            return bad("strategy `hard_prompt` needs train.preset or train.trainable globs".into());
        }
        let t = &self.train;
        if t.steps == 0 || t.batch_size == 0 || t.grad_accum == 0 {
            return bad(
                "train.steps, train.batch_size and train.grad_accum must be positive".into()
            );
        }
        if self.optim.lr.is_nan() || self.optim.lr <= 0.0 {
            return bad(format!("optim.lr must be positive, got {}", self.optim.lr));
        }
        weights::DType::parse(&self.model.dtype)
            .map_err(|e| TrainError::Config(format!("model.dtype: {e}")))?;
        Ok(())
    }

    /// Canonical JSON of the resolved config (what the config hash is computed over).
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).expect("config serializes")
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# could not render the config: {e}\n"))
    }
}

/// `a.b.c=value`: sets a nested key, creating tables as needed.
fn apply_override(table: &mut toml::Table, o: &str) -> Result<(), TrainError> {
    let (key, value) = o
        .split_once('=')
        .ok_or_else(|| TrainError::Config(format!("--set `{o}`: expected key=value")))?;
    let value: toml::Value = match format!("v = {value}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").expect("just parsed"),
        Err(_) => toml::Value::String(value.to_string()),
    };
    let parts: Vec<&str> = key.trim().split('.').collect();
    let mut cur = table;
    for part in &parts[..parts.len() - 1] {
        let entry =
            cur.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry
            .as_table_mut()
            .ok_or_else(|| TrainError::Config(format!("--set `{o}`: `{part}` is not a table")))?;
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
name = "t"
strategy = "lora"
[model]
path = "data/fixtures/mqa"
[data]
path = "synth/dataset.json"
[lora]
"#;

    #[test]
    fn overrides_and_defaults() {
        let cfg = ExperimentConfig::from_toml(
            BASE,
            &["optim.lr=3e-5".into(), "lora.r=4".into(), "data.prefix=describe".into()],
        )
        .unwrap();
        assert_eq!(cfg.optim.lr, 3e-5);
        assert_eq!(cfg.lora.as_ref().unwrap().r, 4);
        assert_eq!(cfg.data.prefix, "describe");
        assert_eq!(cfg.train.batch_size, 8);
        assert_eq!(cfg.lora.unwrap().targets, d_targets());
    }

    #[test]
    fn errors_name_the_key() {
        let e =
            ExperimentConfig::from_toml(BASE, &["train.stepz=3".into()]).unwrap_err().to_string();
        assert!(e.contains("train") && e.contains("unknown field `stepz`"), "{e}");
        let e = ExperimentConfig::from_toml(BASE, &["train.steps=\"many\"".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("key `train.steps`") && e.contains("invalid type"), "{e}");
        let e = ExperimentConfig::from_toml(&BASE.replace("[lora]\n", ""), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs a [lora] section"), "{e}");
        let e = ExperimentConfig::from_toml(BASE, &["strategy=\"hard_prompt\"".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("train.preset or train.trainable"), "{e}");
        let e = ExperimentConfig::from_toml(BASE, &["model.dtype=\"f64\"".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("model.dtype") && e.contains("unsupported dtype"), "{e}");
        let e = ExperimentConfig::from_toml(BASE, &["nonsense".into()]).unwrap_err().to_string();
        assert!(e.contains("expected key=value"), "{e}");
    }
}
