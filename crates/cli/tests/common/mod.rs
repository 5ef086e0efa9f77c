//! Helpers shared by the cli tests that train: the repository root, and one synthetic dataset (40 images of 32 px,
//! seed 0) generated once per test binary into a temporary directory removed at exit.
#![allow(dead_code)]
use std::path::PathBuf;

#[path = "../../../trainer/tests/common/temp_dirs.rs"]
mod temp_dirs;
pub use temp_dirs::temp_dir;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

pub fn synth() -> PathBuf {
    static DATA: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DATA.get_or_init(|| {
        let dir = temp_dir("pg-cli-synth");
        rsicd_data::synth::generate(&dir, 40, 0, 32).unwrap();
        dir.join("dataset_synth.json")
    })
    .clone()
}
