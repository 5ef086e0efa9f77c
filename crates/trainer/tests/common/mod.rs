//! Shared test helpers: fixture paths, a small synthetic dataset, configs.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

mod temp_dirs;
#[allow(unused_imports)]
pub use temp_dirs::temp_dir;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

pub fn fixtures() -> PathBuf {
    root().join("data/fixtures")
}

/// A synthetic dataset (48 images, 32 px) generated once per test binary.
pub fn synth() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = temp_dir("pg-trainer-synth");
        rsicd_data::synth::generate(&dir, 48, 0, 32).unwrap();
        dir.join("dataset_synth.json")
    })
}

pub fn temp(name: &str) -> PathBuf {
    temp_dir(&format!("pg-trainer-{name}"))
}

/// A config over the tiny `mqa` fixture and the synthetic data; `extra` is TOML appended (sections).
pub fn config(strategy: &str, extra: &str, sets: &[&str]) -> trainer::ExperimentConfig {
    config_on("mqa", strategy, extra, sets)
}

/// `config` over another fixture model (e.g. `pg2-gqa`, a tiny PaliGemma 2).
pub fn config_on(
    model: &str,
    strategy: &str,
    extra: &str,
    sets: &[&str],
) -> trainer::ExperimentConfig {
    let text = format!(
        r#"
name = "test-{strategy}"
strategy = "{strategy}"
seed = 3
[model]
path = "{}"
[data]
path = "{}"
[train]
steps = 4
batch_size = 4
log_every = 1
[optim]
lr = 1e-2
warmup_steps = 0
[eval]
max_new_tokens = 4
val_subset = 4
test_subset = 4
meteor = "skip"
{extra}
"#,
        fixtures().join(model).display(),
        synth().display()
    );
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    trainer::ExperimentConfig::from_toml(&text, &sets).unwrap()
}
