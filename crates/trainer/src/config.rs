//! The experiment file (TOML): one per strategy, every key overridable with `--set key=value`. Unknown keys and
//! wrong types are errors naming the key; strategy-specific sections are checked against the strategy.
use crate::device::DeviceSpec;
use crate::selection::{EarlyStopping, FinalWeights};
use crate::TrainError;
use metrics::MeteorMode;
use paligemma::{LossReduction, SoftPromptPlacement};
use rsicd_data::{Format, Resample};
use serde::{Deserialize, Serialize};
use soft_prompt::SoftPromptConfig;
use std::path::{Path, PathBuf};
use weights::DType;

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

    /// What people call it (reports, tables).
    pub fn label(self) -> &'static str {
        match self {
            Self::HardPrompt => "hard prompt",
            Self::Lora => "LoRA",
            Self::SoftPrompt => "soft prompt",
            Self::Hybrid => "hybrid (hard prefix + soft prompt)",
            Self::Custom => "custom (SigLIP + projector + Gemma)",
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
    #[serde(default)]
    pub log: LogConfig,
}

/// Where a run logs besides `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// TensorBoard event files in `runs/<run>/tb/` (`crate::tb`).
    #[serde(default = "d_true")]
    pub tensorboard: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { tensorboard: true }
    }
}

fn d_true() -> bool {
    true
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
    #[serde(default = "d_dtype", with = "crate::setting::serde_word")]
    pub dtype: DType,
    /// cpu, cuda or cuda:N.
    #[serde(default = "d_device", with = "crate::setting::serde_word")]
    pub device: DeviceSpec,
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
fn d_dtype() -> DType {
    DType::F32
}
fn d_device() -> DeviceSpec {
    DeviceSpec::Cpu
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
    /// The decoder, by its HF `model_type`: `"gemma"` (PaliGemma 1, the default) or `"gemma2"` (PaliGemma 2, with
    /// Gemma2Config's soft-capping 50 / 30, `query_pre_attn_scalar = head_dim` and `sliding_window`).
    // Absent fields stay absent when serialised: the run fingerprints of earlier scratch runs must not change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_model_type: Option<String>,
    /// Gemma 2 only: the window of the sliding-window layers (default 4096, PaliGemma 2's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window: Option<i64>,
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
    #[serde(with = "crate::setting::serde_word_opt")]
    pub format: Option<Format>,
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
    #[serde(default, with = "crate::setting::serde_word")]
    pub resample: Resample,
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
    /// Keep `checkpoints/best/` by this validation metric ("CIDEr", …); the final evaluation then uses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_best: Option<String>,
    /// Stop when `select_best` has not improved for `patience` validations (by more than `min_delta`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStopping>,
    /// Weights of the final evaluation and the saved adapter: "best" (the default with select_best) or "last".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_weights: Option<FinalWeights>,
}

impl TrainConfig {
    /// Whether the final evaluation uses the best validation's weights.
    pub fn final_uses_best(&self) -> bool {
        self.select_best.is_some() && self.final_weights != Some(FinalWeights::Last)
    }
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
    #[serde(default, with = "crate::setting::serde_word")]
    pub meteor: MeteorMode,
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
        let cfg: Self =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                TrainError::Config(format!("key `{}`: {}", e.path(), e.inner().message()))
            })?;
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
        let problems = self.numeric_problems();
        if !problems.is_empty() {
            return bad(problems.join("; "));
        }
        let t = &self.train;
        crate::selection::validate(
            t.select_best.as_deref(),
            t.early_stopping.as_ref(),
            t.final_weights,
            t.eval_every,
            self.eval.meteor == metrics::MeteorMode::Skip,
        )
    }

    /// Every numeric knob outside its range, as `key = value: expected …` (non-finite floats are never accepted).
    fn numeric_problems(&self) -> Vec<String> {
        let (t, o, e, mut c) = (&self.train, &self.optim, &self.eval, Checks::default());
        let counts = [("train.steps", t.steps), ("train.batch_size", t.batch_size)];
        let counts = counts
            .into_iter()
            .chain([("train.grad_accum", t.grad_accum), ("eval.num_beams", e.num_beams)]);
        let counts = counts
            .chain([("eval.max_new_tokens", e.max_new_tokens), ("eval.batch_size", e.batch_size)]);
        counts
            .chain(self.data.max_len.map(|n| ("data.max_len", n)))
            .for_each(|(k, v)| c.count(k, v));
        if let Some(v) = t.max_grad_norm {
            c.float(
                "train.max_grad_norm",
                v,
                v > 0.0,
                "a finite number > 0 (omit it for no clipping)",
            );
        }
        c.positive("optim.lr", o.lr);
        c.float(
            "optim.weight_decay",
            o.weight_decay,
            o.weight_decay >= 0.0,
            "a finite number >= 0",
        );
        c.positive("optim.eps", o.eps);
        for (key, v) in
            [("optim.beta1", o.beta1), ("optim.beta2", o.beta2), ("optim.momentum", o.momentum)]
        {
            c.float(key, v, (0.0..1.0).contains(&v), "a number in [0, 1)");
        }
        for (key, v) in [("optim.warmup_frac", o.warmup_frac), ("optim.min_lr_frac", o.min_lr_frac)]
        {
            c.float(key, v, (0.0..=1.0).contains(&v), "a number in [0, 1]");
        }
        if let Some(w) = o.warmup_steps.filter(|&w| w > t.steps) {
            c.fail("optim.warmup_steps", w, &format!("at most train.steps ({})", t.steps));
        }
        if let Some(l) = &self.lora {
            c.at_least_one("lora.r", l.r);
            c.positive("lora.alpha", l.alpha);
            c.float(
                "lora.dropout",
                l.dropout,
                (0.0..1.0).contains(&l.dropout),
                "a number in [0, 1)",
            );
        }
        if let Some(sp) = &self.soft_prompt {
            c.count("soft_prompt.length", sp.length);
            if let soft_prompt::SoftPromptInit::Normal { std: Some(s) } = sp.init {
                c.positive("soft_prompt.init.std", s);
            }
        }
        if let Some(s) = &self.model.scratch {
            let sizes =
                [("image_size", s.image_size), ("patch_size", s.patch_size), ("heads", s.heads)];
            let sizes = sizes
                .into_iter()
                .chain([("vision_hidden", s.vision_hidden), ("kv_heads", s.kv_heads)]);
            let sizes =
                sizes.chain([("vision_layers", s.vision_layers), ("vision_heads", s.vision_heads)]);
            let sizes = sizes.chain([("vision_mlp", s.vision_mlp), ("text_hidden", s.text_hidden)]);
            let sizes = sizes.chain([
                ("text_layers", s.text_layers),
                ("head_dim", s.head_dim),
                ("text_mlp", s.text_mlp),
            ]);
            sizes.for_each(|(key, v)| c.at_least_one(&format!("model.scratch.{key}"), v));
            c.positive("model.scratch.init_std", s.init_std);
            let gemma2 = match s.text_model_type.as_deref() {
                None | Some("gemma") => false,
                Some("gemma2") => true,
                Some(other) => {
                    c.fail("model.scratch.text_model_type", other, "\"gemma\" or \"gemma2\"");
                    false
                }
            };
            match (s.sliding_window, gemma2) {
                (Some(w), true) => c.at_least_one("model.scratch.sliding_window", w),
                (Some(w), false) => c.fail(
                    "model.scratch.sliding_window",
                    w,
                    "no value: only a Gemma-2 decoder (text_model_type = \"gemma2\") has a window",
                ),
                (None, _) => {}
            }
        }
        if let Some(h) = self.model.custom.as_ref().and_then(|c| c.projector_hidden) {
            c.at_least_one("model.custom.projector_hidden", h);
        }
        for (key, v) in [("eval.val_subset", e.val_subset), ("eval.test_subset", e.test_subset)] {
            if v == Some(0) {
                c.fail(key, 0, "an integer >= 1 (omit it to use every image)");
            }
        }
        c.0
    }

    /// The directories a run of this config reads from, each with what it is (for messages): the base model
    /// (or its standalone parts and tokenizer), the dataset's annotation folder and its image folder. Nothing may
    /// be written into them (see `peft::check_export_target`).
    pub fn input_dirs(&self) -> Vec<(String, PathBuf)> {
        let parent = |p: &Path| match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut dirs = vec![];
        if let Some(p) = &self.model.path {
            dirs.push(("the base model directory (model.path)".to_string(), p.clone()));
        }
        if let Some(t) = self.model.scratch.as_ref().and_then(|s| s.tokenizer.as_ref()) {
            dirs.push(("the tokenizer's directory (model.scratch.tokenizer)".into(), parent(t)));
        }
        if let Some(c) = &self.model.custom {
            dirs.push(("the SigLIP directory (model.custom.siglip)".into(), c.siglip.clone()));
            dirs.push(("the Gemma directory (model.custom.gemma)".into(), c.gemma.clone()));
            if let Some(t) = &c.tokenizer {
                dirs.push(("the tokenizer's directory (model.custom.tokenizer)".into(), parent(t)));
            }
        }
        let data =
            if self.data.path.is_dir() { self.data.path.clone() } else { parent(&self.data.path) };
        dirs.push(("the dataset directory (data.path)".into(), data));
        if let Some(d) = &self.data.image_dir {
            dirs.push(("the image directory (data.image_dir)".into(), d.clone()));
        }
        dirs
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

/// Collects range problems, each naming its key, the value given and what was expected.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn fail(&mut self, key: &str, value: impl std::fmt::Display, expected: &str) {
        self.0.push(format!("{key} = {value}: expected {expected}"));
    }

    /// A count that must be at least 1.
    fn count(&mut self, key: &str, value: usize) {
        if value == 0 {
            self.fail(key, value, "an integer >= 1");
        }
    }

    fn at_least_one(&mut self, key: &str, value: i64) {
        if value < 1 {
            self.fail(key, value, "an integer >= 1");
        }
    }

    fn positive(&mut self, key: &str, value: f64) {
        self.float(key, value, value > 0.0, "a finite number > 0");
    }

    /// A float that must be finite and satisfy `ok`.
    fn float(&mut self, key: &str, value: f64, ok: bool, expected: &str) {
        if !value.is_finite() || !ok {
            self.fail(key, value, expected);
        }
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

    #[test]
    fn out_of_range_numbers_are_rejected_naming_the_key() {
        let cases: &[(&str, &str)] = &[
            ("optim.lr=inf", "optim.lr = inf: expected a finite number > 0"),
            ("optim.lr=nan", "optim.lr = NaN: expected a finite number > 0"),
            ("optim.lr=-1e-4", "optim.lr = -0.0001: expected a finite number > 0"),
            ("optim.lr=0.0", "optim.lr = 0: expected a finite number > 0"),
            ("optim.weight_decay=-0.1", "optim.weight_decay = -0.1: expected a finite number >= 0"),
            ("optim.weight_decay=inf", "optim.weight_decay = inf"),
            ("optim.beta1=1.0", "optim.beta1 = 1: expected a number in [0, 1)"),
            ("optim.beta2=nan", "optim.beta2 = NaN"),
            ("optim.eps=0.0", "optim.eps = 0: expected a finite number > 0"),
            ("optim.momentum=-0.5", "optim.momentum = -0.5"),
            ("optim.warmup_frac=1.5", "optim.warmup_frac = 1.5: expected a number in [0, 1]"),
            ("optim.min_lr_frac=-inf", "optim.min_lr_frac = -inf"),
            (
                "optim.warmup_steps=101",
                "optim.warmup_steps = 101: expected at most train.steps (100)",
            ),
            ("train.steps=0", "train.steps = 0: expected an integer >= 1"),
            ("train.batch_size=0", "train.batch_size = 0: expected an integer >= 1"),
            ("train.grad_accum=0", "train.grad_accum = 0: expected an integer >= 1"),
            ("train.max_grad_norm=0.0", "train.max_grad_norm = 0: expected a finite number > 0"),
            ("train.max_grad_norm=nan", "train.max_grad_norm = NaN"),
            ("lora.r=0", "lora.r = 0: expected an integer >= 1"),
            ("lora.alpha=inf", "lora.alpha = inf: expected a finite number > 0"),
            ("lora.dropout=1.0", "lora.dropout = 1: expected a number in [0, 1)"),
            ("lora.dropout=-0.1", "lora.dropout = -0.1"),
            ("eval.num_beams=0", "eval.num_beams = 0: expected an integer >= 1"),
            ("eval.max_new_tokens=0", "eval.max_new_tokens = 0"),
            ("eval.batch_size=0", "eval.batch_size = 0"),
            ("eval.test_subset=0", "eval.test_subset = 0"),
            ("data.max_len=0", "data.max_len = 0"),
        ];
        for (set, want) in cases {
            let e = ExperimentConfig::from_toml(BASE, &[set.to_string()]).unwrap_err().to_string();
            assert!(e.contains(want), "{set}: {e}");
        }
        // several problems are reported together
        let e = ExperimentConfig::from_toml(BASE, &["optim.lr=inf".into(), "lora.r=0".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("optim.lr = inf") && e.contains("lora.r = 0"), "{e}");
        // the edges that are allowed
        let ok = [
            "optim.weight_decay=0.0",
            "optim.beta1=0.0",
            "optim.warmup_frac=1.0",
            "optim.min_lr_frac=0.0",
            "optim.warmup_steps=100",
            "lora.dropout=0.0",
        ];
        for set in ok {
            ExperimentConfig::from_toml(BASE, &[set.to_string()]).unwrap();
        }
        let scratch = "name = \"s\"\nstrategy = \"hard_prompt\"\n[model]\nsource = \"scratch\"\n\
            [model.scratch]\nimage_size = 32\npatch_size = 8\nvision_hidden = 0\nvision_layers = 1\n\
            vision_heads = 1\nvision_mlp = 8\ntext_hidden = 8\ntext_layers = 1\nheads = 1\nhead_dim = 8\n\
            text_mlp = 8\ninit_std = nan\n[data]\npath = \"d.json\"\n[train]\npreset = \"all\"\n";
        let e = ExperimentConfig::from_toml(scratch, &[]).unwrap_err().to_string();
        assert!(
            e.contains("model.scratch.vision_hidden = 0")
                && e.contains("model.scratch.init_std = NaN"),
            "{e}"
        );
        let g2 = scratch.replace("init_std = nan", "init_std = 0.02\ntext_model_type = \"gemma3\"");
        let e = ExperimentConfig::from_toml(&g2, &[]).unwrap_err().to_string();
        assert!(e.contains("model.scratch.text_model_type = gemma3"), "{e}");
        let w = scratch.replace("init_std = nan", "init_std = 0.02\nsliding_window = 16");
        let e = ExperimentConfig::from_toml(&w, &[]).unwrap_err().to_string();
        assert!(e.contains("model.scratch.sliding_window = 16") && e.contains("gemma2"), "{e}");
        let set = ["model.scratch.text_model_type=\"gemma2\"".to_string()];
        let e = ExperimentConfig::from_toml(&w, &set).unwrap_err().to_string();
        assert!(!e.contains("sliding_window"), "a window is fine with gemma2: {e}");
    }

    #[test]
    fn every_shipped_experiment_file_validates() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
        let mut n = 0;
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "toml") {
                    ExperimentConfig::load(&path, &[]).unwrap();
                    n += 1;
                }
            }
        }
        assert!(n > 0);
    }
}
