//! Paths, the generated weights directories, and the cases each benchmark runs.
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository: the nearest ancestor of the working directory holding `scripts/bench/hf_worker.py`, else the
/// checkout this binary was built from.
pub fn repo_root() -> PathBuf {
    if let Ok(cwd) = std::env::current_dir() {
        if let Some(d) = cwd.ancestors().find(|d| d.join("scripts/bench/hf_worker.py").is_file()) {
            return d.to_path_buf();
        }
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn resolve(repo: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        repo.join(p)
    }
}

/// Makes (once) a weights directory with `scripts/bench/make_model.py <kind>`; it is made again when the script
/// changed since (the script is copied next to the weights as the stamp).
pub fn ensure_model(python: &Path, repo: &Path, kind: &str, dir: &Path) -> Result<PathBuf> {
    let script = repo.join("scripts/bench/make_model.py");
    let source = std::fs::read(&script).with_context(|| format!("reading {}", script.display()))?;
    let stamp = dir.join("make_model.py.used");
    let has_weights = dir.join("model.safetensors").is_file()
        || dir.join("model.safetensors.index.json").is_file();
    if has_weights && std::fs::read(&stamp).ok().as_deref() == Some(&source[..]) {
        return Ok(dir.to_path_buf());
    }
    eprintln!("writing random {kind} weights to {} (once)...", dir.display());
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let status = Command::new(python)
        .arg(&script)
        .arg(kind)
        .arg("--out")
        .arg(dir)
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_VERBOSITY", "error")
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        bail!("{} {kind} failed ({status})", script.display());
    }
    std::fs::write(&stamp, &source)?;
    Ok(dir.to_path_buf())
}

/// The language model as a record describes it: `Gemma 256x4 (4 heads, 1 KV head, MLP 2048)`, and for a Gemma-2
/// decoder its heads, scalar, soft-capping and sliding-window layers too.
pub fn text_model(cfg: &paligemma::PaliGemmaConfig) -> String {
    let t = &cfg.text_config;
    if t.architecture() != gemma::Architecture::Gemma2 {
        return format!(
            "Gemma {}x{} ({} heads, {} KV head, MLP {})",
            t.hidden_size,
            t.num_hidden_layers,
            t.num_attention_heads,
            t.num_key_value_heads,
            t.intermediate_size
        );
    }
    let opt = |x: Option<f64>| x.map_or("none".into(), |v| format!("{v}"));
    let sliding: Vec<String> = (0..t.num_hidden_layers as usize)
        .filter(|&i| t.layer_window(i).is_some())
        .map(|i| i.to_string())
        .collect();
    format!(
        "Gemma 2 {}x{} ({} heads over {} KV heads of {}, MLP {}; query_pre_attn_scalar {}, attention-logit \
         soft-capping {}, final-logit soft-capping {}, sliding window {} on layers {})",
        t.hidden_size,
        t.num_hidden_layers,
        t.num_attention_heads,
        t.num_key_value_heads,
        t.head_dim,
        t.intermediate_size,
        opt(t.query_pre_attn_scalar),
        opt(t.attn_logit_softcapping),
        opt(t.final_logit_softcapping),
        t.sliding_window.map_or("none".into(), |w| w.to_string()),
        if sliding.is_empty() { "none".into() } else { sliding.join(", ") }
    )
}

/// ` (PaliGemma 2)` for a Gemma-2 decoder, for a record's heading (PaliGemma 1 headings stay as they were).
pub fn title_model(cfg: &paligemma::PaliGemmaConfig) -> &'static str {
    if cfg.text_config.architecture() == gemma::Architecture::Gemma2 {
        " (PaliGemma 2)"
    } else {
        ""
    }
}

/// The reference's language-model attention implementation, as its workers reported it (` Reference attention …`),
/// empty when they did not say.
pub fn reference_attention<'a>(
    results: impl IntoIterator<Item = &'a super::spec::WorkerResult>,
) -> String {
    let mut seen: Vec<String> = Vec::new();
    for r in results {
        if let Some(i) = r.versions.get("text_attention").and_then(|v| v.as_str()) {
            if !seen.iter().any(|s| s == i) {
                seen.push(i.to_string());
            }
        }
    }
    if seen.is_empty() {
        return String::new();
    }
    format!(
        " The reference ran the language model's attention as `{}` (transformers' `_attn_implementation`).",
        seen.join("`, `")
    )
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainCase {
    /// `hard_prompt` (Gemma attention), `lora` (r 8 on Gemma q/k/v/o) or `soft_prompt` (10 vectors).
    pub strategy: &'static str,
    pub batch: usize,
    pub dtype: &'static str,
    pub checkpointing: bool,
}

impl TrainCase {
    pub fn label(&self) -> String {
        format!(
            "{}-b{}-{}{}",
            self.strategy,
            self.batch,
            self.dtype,
            if self.checkpointing { "-ckpt" } else { "" }
        )
    }

    pub fn strategy_name(&self) -> &'static str {
        match self.strategy {
            "hard_prompt" => "attention only",
            "lora" => "LoRA r8 q/k/v/o",
            "soft_prompt" => "soft prompt x10",
            other => other,
        }
    }
}

/// Every combination the issue asks for; `quick`: batch 8 in both dtypes for LoRA, batch 1 f32 for the others.
pub fn train_cases(quick: bool, dtypes: &[&'static str]) -> Vec<TrainCase> {
    let mut out = Vec::new();
    for strategy in ["hard_prompt", "lora", "soft_prompt"] {
        for batch in [1, 8] {
            for &dtype in dtypes {
                for checkpointing in [false, true] {
                    let c = TrainCase { strategy, batch, dtype, checkpointing };
                    let keep = !quick
                        || (strategy == "lora" && batch == 8 && !checkpointing)
                        || (batch == 1 && dtype == "f32" && !checkpointing);
                    if keep {
                        out.push(c);
                    }
                }
            }
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenerateCase {
    pub beams: usize,
    pub batch: usize,
}

impl GenerateCase {
    pub fn label(&self) -> String {
        format!(
            "{}-b{}",
            if self.beams == 1 { "greedy".into() } else { format!("beam{}", self.beams) },
            self.batch
        )
    }
}

pub fn generate_cases(quick: bool) -> Vec<GenerateCase> {
    let mut out = Vec::new();
    for beams in [1, 3] {
        for batch in [1, 8] {
            if !quick || batch == 8 {
                out.push(GenerateCase { beams, batch });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_grid_has_24_train_cases_and_4_generation_cases() {
        let all = train_cases(false, &["f32", "bf16"]);
        assert_eq!(all.len(), 24);
        let labels: std::collections::HashSet<String> = all.iter().map(TrainCase::label).collect();
        assert_eq!(labels.len(), 24);
        assert!(labels.contains("lora-b8-bf16-ckpt") && labels.contains("hard_prompt-b1-f32"));
        assert!(train_cases(true, &["f32", "bf16"]).len() < 24);
        assert_eq!(generate_cases(false).len(), 4);
    }
}
