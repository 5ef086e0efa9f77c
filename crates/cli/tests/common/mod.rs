//! Helpers shared by the cli tests: the repository root, one synthetic dataset (40 images of 32 px, seed 0) generated
//! once per test binary into a temporary directory removed at exit, and the signal dispositions of a terminal.
#![allow(dead_code)]
use std::path::PathBuf;
use std::process::Command;

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

/// Gives the child the default dispositions of SIGINT, SIGTERM and SIGHUP, as a terminal does. `pgrs` keeps signals
/// it was started with ignored (nohup's convention), and a test runner started under nohup or as a background job of
/// a non-interactive shell has SIGHUP / SIGINT ignored: without this, tests of the handlers would depend on how the
/// tests were started.
pub fn terminal_signals(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs in the forked child before exec; signal() is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::signal(sig, libc::SIG_DFL);
            }
            Ok(())
        })
    }
}
