//! Runs what needs libtorch: `cargo test`, and the project's CLI binary (`pgrs`), after `setup::ensure`.
//!
//! The environment is left to `.cargo/config.toml` (`LIBTORCH=<repo>/.libtorch`) unless the user set `LIBTORCH`
//! themselves; setting it here to a different string would make torch-sys rebuild (minutes) every time someone
//! alternates between `cargo xtask …` and plain `cargo …`.
use crate::setup::{self, TORCH_VERSION};
use anyhow::{Context, Result};
use std::process::Command;

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(setup::repo_root());
    cmd
}

fn status_code(mut cmd: Command) -> Result<i32> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    Ok(status.code().unwrap_or(1))
}

/// `cargo xtask test [args]` = setup, then `cargo test --workspace --no-fail-fast [args]` (every failing test binary
/// is reported in one run, which matters when a CI run takes most of an hour).
pub fn cargo_test(args: &[String]) -> Result<i32> {
    setup::ensure(false)?;
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--no-fail-fast"]).args(args);
    status_code(cmd)
}

/// Builds and runs `pgrs <sub> <args>` (release profile unless `PALIGEMMA_PROFILE` says otherwise).
pub fn run_cli(sub: &str, args: &[String]) -> Result<i32> {
    setup::ensure(false)?;
    build_and_run("paligemma-cli", "pgrs", sub, args)
}

/// Builds and runs `pgtools <sub> <args>`: no libtorch involved, so no setup.
pub fn run_tool(sub: &str, args: &[String]) -> Result<i32> {
    build_and_run("paligemma-tools", "pgtools", sub, args)
}

fn build_and_run(package: &str, bin: &str, sub: &str, args: &[String]) -> Result<i32> {
    let profile = std::env::var("PALIGEMMA_PROFILE").unwrap_or_else(|_| "release".into());
    let mut build = cargo();
    build.args(["build", "--quiet", "--profile", &profile, "-p", package, "--bin", bin]);
    let code = status_code(build)?;
    if code != 0 {
        return Ok(code);
    }
    let dir = if profile == "dev" { "debug" } else { profile.as_str() };
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| setup::repo_root().join("target"));
    let mut cmd = Command::new(target.join(dir).join(bin));
    cmd.arg(sub).args(args);
    status_code(cmd)
}

/// `cargo xtask doctor`: what can be checked without libtorch here, the rest by `pgrs doctor`.
pub fn doctor() -> Result<i32> {
    println!("paligemma-rs doctor");
    let mut problems = 0;
    let mut problem = |what: &str, fix: &str| {
        problems += 1;
        println!("  PROBLEM: {what}\n      fix: {fix}");
    };
    match setup::which("python3") {
        Some(p) => println!("  python3:   {}", p.display()),
        None => problem(
            "python3 not found (needed once, to install libtorch)",
            "install Python 3.9+ with venv support",
        ),
    }
    let venv = setup::venv_dir();
    let libtorch = match std::env::var_os("LIBTORCH")
        .filter(|p| !p.to_string_lossy().ends_with(".libtorch"))
    {
        Some(dir) => {
            println!("  libtorch:  {} (from $LIBTORCH)", dir.to_string_lossy());
            Some(std::path::PathBuf::from(dir))
        }
        None => match setup::torch_dir(&setup::venv_python()) {
            Ok(dir) => {
                println!("  libtorch:  {TORCH_VERSION} in {}", dir.display());
                Some(dir)
            }
            Err(e) => {
                problem(
                    &format!("libtorch {TORCH_VERSION} is not installed ({e})"),
                    "cargo xtask setup",
                );
                None
            }
        },
    };
    println!("  cache:     {}", venv.display());
    let link = setup::repo_root().join(".libtorch");
    match (std::fs::read_link(&link), &libtorch) {
        (Ok(to), Some(dir)) if &to == dir => {
            println!("  link:      {} -> {}", link.display(), to.display())
        }
        (Ok(to), Some(_)) if std::env::var_os("LIBTORCH").is_none() => {
            problem(&format!("{} points to {}", link.display(), to.display()), "cargo xtask setup")
        }
        (Err(_), Some(_)) if std::env::var_os("LIBTORCH").is_none() => problem(
            &format!("{} is missing, plain `cargo build` will not find libtorch", link.display()),
            "cargo xtask setup",
        ),
        _ => {}
    }
    if libtorch.is_none() {
        println!("\n{problems} problem(s) found");
        return Ok(1);
    }
    println!("  building the runtime check (pgrs doctor)…");
    let code = run_cli("doctor", &[])?;
    Ok(if problems > 0 { 1 } else { code })
}
