//! Runs what needs libtorch: `cargo test`, and the project's CLI binary (`pgrs`), after `setup::ensure`.
//!
//! The environment is left to `.cargo/config.toml` (`LIBTORCH=<repo>/.libtorch`) unless the user set `LIBTORCH`
//! themselves; setting it here to a different string would make torch-sys rebuild (minutes) every time someone
//! alternates between `cargo xtask …` and plain `cargo …`.
//!
//! Every child runs through [`run_child`], which passes SIGINT, SIGTERM and SIGHUP on and waits, so stopping
//! `cargo xtask train` (Ctrl-C, a scheduler's SIGTERM, a closed terminal) stops `pgrs` the way it stops itself, and
//! never leaves it running without its launcher.
use crate::setup::{self, TORCH_VERSION};
use anyhow::{Context, Result};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(setup::repo_root());
    cmd
}

/// A command stopped by SIGINT, SIGTERM or SIGHUP; `main` exits with 128 + the signal's number.
#[derive(Debug)]
pub struct Interrupted(pub interrupt::Signal);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped by {}", self.0.name())
    }
}

impl std::error::Error for Interrupted {}

/// Runs `cmd` to its end and returns its exit code (128 + n when signal n ended it).
///
/// The child gets its own process group, so a terminal's Ctrl-C reaches only xtask, which passes it (and SIGTERM,
/// SIGHUP) on to the child's group exactly once and keeps waiting: the child decides how to stop (`pgrs train`
/// saves a checkpoint; a second signal, forwarded too, stops it at once). Outside a child's lifetime the three
/// signals are held back (blocked), so none is lost between two children and none kills xtask while it has a
/// child: once one has arrived, no further child is started.
pub fn run_child(mut cmd: Command) -> Result<i32> {
    signals::hold();
    if let Some(sig) = stopped() {
        eprintln!("{}: not starting {:?}", sig.name(), cmd.get_program());
        return Ok(sig.exit_code());
    }
    in_own_group(&mut cmd);
    let mut child = cmd.spawn().with_context(|| format!("running {cmd:?}"))?;
    let status = {
        // Registered while the signals are held, so one sent right after the spawn is forwarded too.
        let _forwarding = interrupt::forward_to(child.id());
        signals::release();
        let status = child.wait();
        signals::hold();
        status
    };
    let status = status.with_context(|| format!("waiting for {cmd:?}"))?;
    Ok(interrupt::exit_code(status))
}

/// Makes `cmd`'s child lead a process group of its own, with the signal mask xtask started with (call after
/// [`signals::hold`]): a terminal's Ctrl-C then reaches only xtask, which decides what to pass on.
pub(crate) fn in_own_group(cmd: &mut Command) {
    cmd.process_group(0);
    let original = signals::original();
    // SAFETY: runs in the forked child before exec; pthread_sigmask is async-signal-safe. The child must not
    // inherit the held-back mask (std::process keeps a parent's signal mask), or it would never see these signals.
    unsafe {
        cmd.pre_exec(move || {
            libc::pthread_sigmask(libc::SIG_SETMASK, &original, std::ptr::null_mut());
            Ok(())
        });
    }
}

/// The signal that asked xtask to stop, if one arrived: forwarded to a child, or held back between children.
pub fn stopped() -> Option<interrupt::Signal> {
    interrupt::requested().or_else(signals::pending)
}

/// Holding SIGINT, SIGTERM and SIGHUP back (blocking them) while xtask has no child to pass them to.
pub(crate) mod signals {
    use std::sync::OnceLock;

    /// The signal mask xtask started with, restored while a child runs.
    static ORIGINAL: OnceLock<libc::sigset_t> = OnceLock::new();

    fn ours() -> libc::sigset_t {
        // SAFETY: sigemptyset/sigaddset initialise the set they are given; the signal numbers are valid.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in interrupt::SIGNALS {
                libc::sigaddset(&mut set, s);
            }
            set
        }
    }

    /// Blocks the three signals in this thread (threads started afterwards inherit the mask, and so would children:
    /// `run_child` restores [`original`] in them).
    pub fn hold() {
        // SAFETY: pthread_sigmask with valid sets only changes this thread's signal mask.
        unsafe {
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &ours(), &mut old);
            ORIGINAL.get_or_init(|| old);
        }
    }

    /// The mask xtask started with (call after [`hold`]).
    pub fn original() -> libc::sigset_t {
        *ORIGINAL.get().expect("hold() records the original mask")
    }

    /// Goes back to the original mask: held-back signals are delivered now (to the forwarding handler).
    pub fn release() {
        if let Some(original) = ORIGINAL.get() {
            // SAFETY: as in `hold`.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, original, std::ptr::null_mut()) };
        }
    }

    /// A signal that arrived while held back (and that xtask did not have blocked from the start).
    pub fn pending() -> Option<interrupt::Signal> {
        let original = ORIGINAL.get()?;
        // SAFETY: sigpending fills the set it is given; sigismember only reads initialised sets.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigpending(&mut set);
            interrupt::SIGNALS
                .into_iter()
                .find(|&s| libc::sigismember(&set, s) == 1 && libc::sigismember(original, s) == 0)
                .map(interrupt::Signal)
        }
    }
}

/// `cargo xtask test [args]` = setup, then `cargo test --workspace --no-fail-fast [args]` (every failing test binary
/// is reported in one run, which matters when a CI run takes most of an hour).
pub fn cargo_test(args: &[String]) -> Result<i32> {
    setup::ensure(false)?;
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--no-fail-fast"]).args(args);
    run_child(cmd)
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
    let code = build(package, bin)?;
    if code != 0 {
        return Ok(code);
    }
    let mut cmd = Command::new(binary(bin));
    cmd.arg(sub).args(args);
    run_child(cmd)
}

fn profile() -> String {
    std::env::var("PALIGEMMA_PROFILE").unwrap_or_else(|_| "release".into())
}

/// `cargo build`s `bin` of `package` (release profile unless `PALIGEMMA_PROFILE` says otherwise); the build's exit
/// code.
pub(crate) fn build(package: &str, bin: &str) -> Result<i32> {
    let mut build = cargo();
    build.args(["build", "--quiet", "--profile", &profile(), "-p", package, "--bin", bin]);
    run_child(build)
}

/// Where [`build`] puts `bin`.
pub(crate) fn binary(bin: &str) -> PathBuf {
    let profile = profile();
    let dir = if profile == "dev" { "debug" } else { profile.as_str() };
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| setup::repo_root().join("target"));
    target.join(dir).join(bin)
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
