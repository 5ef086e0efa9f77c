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
