//! `cargo xtask setup`: libtorch without manual steps.
//!
//! libtorch comes from PyPI (`torch==2.13.0`, the version tch 0.26 is built for), installed once per user into a
//! venv under the cache directory keyed by the torch version, so every clone and CI run on a machine shares it.
//! The workspace's `.cargo/config.toml` points `LIBTORCH` at `<repo>/.libtorch`, a link this command (re)creates;
//! after it, plain `cargo build` / `cargo test` work, and binaries find libtorch through their rpath.
use crate::launcher::{self, Interrupted};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const TORCH_VERSION: &str = "2.13.0";

#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Reinstall even if a working installation exists.
    #[arg(long)]
    pub force: bool,
}

/// Where libtorch lives once set up.
#[derive(Debug, Clone)]
pub struct Libtorch {
    /// The directory with `lib/` and `include/` (the `torch` package directory of the wheel, or `$LIBTORCH`).
    pub dir: PathBuf,
}

pub fn run(args: &Args) -> Result<i32> {
    let lt = ensure(args.force)?;
    println!("libtorch {TORCH_VERSION}: {}", lt.dir.display());
    println!("linked as {} (used by .cargo/config.toml)", repo_root().join(".libtorch").display());
    println!(
        "`cargo build` and `cargo test` now find it; `cargo xtask doctor` checks the installation."
    );
    meteor_resources();
    if crate::gloo_include::gloo_include().is_none() {
        // Not fatal: everything but multi-rank training works without them.
        println!(
            "Gloo headers not found (gloo/config.h): multi-rank training on CPU (PyTorch's Gloo backend) needs them. \
             Fix: `sudo apt install libgloo-dev` (Debian/Ubuntu), or set GLOO_INCLUDE to the directory holding \
             gloo/, then rebuild."
        );
    }
    Ok(0)
}

/// pycocoevalcap's METEOR 1.5 jar and its paraphrase table, in the venv where crates/metrics looks for them, so
/// `score` and training evaluations report exact METEOR wherever Java exists. Not fatal: without them METEOR is
/// the approximation, labelled `METEOR (approx)`.
fn meteor_resources() {
    let python = venv_python();
    if meteor_jar().is_none() && python.is_file() {
        eprintln!("installing pycocoevalcap (METEOR 1.5 jar and paraphrase table, about 100 MB) into the venv");
        let mut pip = Command::new(&python);
        pip.args(["-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "on"])
            .arg("pycocoevalcap==1.2");
        if !matches!(launcher::run_child(pip), Ok(0)) {
            println!("pycocoevalcap could not be installed: METEOR will be reported as `METEOR (approx)`");
        }
    }
    let java = which("java").or_else(|| std::env::var_os("JAVA").map(PathBuf::from));
    match (meteor_jar(), java) {
        (Some(jar), Some(java)) => {
            println!("exact METEOR: {} with {}", jar.display(), java.display())
        }
        (Some(_), None) => println!(
            "METEOR jar installed but no Java found: METEOR is reported as `METEOR (approx)` until `java` is on \
             PATH (e.g. `sudo apt install default-jre-headless`)"
        ),
        (None, _) => {}
    }
}

/// `meteor-1.5.jar` inside the venv's pycocoevalcap, where crates/metrics finds it.
fn meteor_jar() -> Option<PathBuf> {
    let lib = venv_dir().join("lib");
    let pythons = std::fs::read_dir(lib).ok()?.flatten().map(|e| e.path());
    pythons
        .map(|p| p.join("site-packages/pycocoevalcap/meteor/meteor-1.5.jar"))
        .find(|jar| jar.is_file())
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repository")
        .to_path_buf()
}

/// `$PALIGEMMA_CACHE`, else `$XDG_CACHE_HOME/paligemma-rs`, else `~/.cache/paligemma-rs`.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("PALIGEMMA_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("paligemma-rs");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("paligemma-rs")
}

pub fn venv_dir() -> PathBuf {
    cache_dir().join(format!("torch-{TORCH_VERSION}")).join("venv")
}

pub fn venv_python() -> PathBuf {
    venv_dir().join("bin").join("python")
}

/// An externally provided libtorch (`LIBTORCH` in the environment, not our own link) wins.
fn external_libtorch() -> Option<PathBuf> {
    let own = repo_root().join(".libtorch");
    let p = PathBuf::from(std::env::var_os("LIBTORCH")?);
    (p != own && !p.ends_with(".libtorch")).then_some(p)
}

/// Makes sure libtorch is installed and linked; installs it on first use.
pub fn ensure(force: bool) -> Result<Libtorch> {
    if let Some(dir) = external_libtorch() {
        if !dir.join("lib").join("libtorch_cpu.so").exists() {
            bail!(
                "LIBTORCH={} has no lib/libtorch_cpu.so; unset LIBTORCH to let `cargo xtask setup` install torch=={TORCH_VERSION}, \
                 or point it at a libtorch {TORCH_VERSION} directory",
                dir.display()
            );
        }
        return Ok(Libtorch { dir });
    }
    let python = venv_python();
    let dir = match (force, torch_dir(&python)) {
        (false, Ok(dir)) => dir,
        _ => {
            install()?;
            torch_dir(&python).context("torch was installed but cannot be imported")?
        }
    };
    link(&dir)?;
    Ok(Libtorch { dir })
}

/// The installed torch package directory, if the venv has the right version.
pub fn torch_dir(python: &Path) -> Result<PathBuf> {
    if !python.exists() {
        bail!("no venv at {}", venv_dir().display());
    }
    let out = Command::new(python)
        .args([
            "-c",
            "import os, torch; print(torch.__version__); print(os.path.dirname(torch.__file__))",
        ])
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "torch is not importable in {}: {}",
            venv_dir().display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let version = lines.next().unwrap_or_default();
    let dir = PathBuf::from(lines.next().unwrap_or_default());
    if version.split('+').next() != Some(TORCH_VERSION) {
        bail!("the venv has torch {version}, tch 0.26 needs {TORCH_VERSION}");
    }
    Ok(dir)
}

/// Creates the venv next to its final place and renames it in, so an interrupted install never leaves a
/// half-made venv under the final name. A lock directory keeps two concurrent setups from racing.
fn install() -> Result<()> {
    let venv = venv_dir();
    let parent = venv.parent().expect("venv has a parent").to_path_buf();
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let _lock = Lock::acquire(&parent.join("install.lock"))?;
    if torch_dir(&venv_python()).is_ok() {
        return Ok(()); // another process finished the install while we waited
    }
    let python3 = which("python3").context(
        "python3 is needed once, to install libtorch from PyPI (torch==2.13.0); install Python 3.9+ and retry",
    )?;
    let staging = parent.join(format!("venv.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    eprintln!("installing torch=={TORCH_VERSION} (libtorch, about 4.7 GB with its CUDA libraries) into {}", venv.display());
    // Both children get SIGINT/SIGTERM/SIGHUP passed on and are waited for; a stopped install leaves no staging
    // directory (and the lock is released on the way out).
    let mut venv_cmd = Command::new(&python3);
    venv_cmd.args(["-m", "venv"]).arg(&staging);
    if launcher::run_child(venv_cmd)? != 0 {
        let _ = std::fs::remove_dir_all(&staging);
        if let Some(sig) = launcher::stopped() {
            return Err(Interrupted(sig).into());
        }
        bail!("`python3 -m venv` failed; on Debian/Ubuntu install the python3-venv package");
    }
    let py = staging.join("bin").join("python");
    let started = Instant::now();
    let mut pip = Command::new(&py);
    // The CUDA toolkit headers torch's wheel leaves out (crt, cccl) let crates/distributed build its NCCL backend
    // against the very CUDA version torch pins (pip resolves the unversioned extra to torch's pin).
    pip.args(["-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "on"])
        .arg(format!("torch=={TORCH_VERSION}"))
        .arg("cuda-toolkit[crt,cccl]; platform_system == \"Linux\" and platform_machine == \"x86_64\"");
    if launcher::run_child(pip)? != 0 {
        let _ = std::fs::remove_dir_all(&staging);
        if let Some(sig) = launcher::stopped() {
            return Err(Interrupted(sig).into());
        }
        bail!("`pip install torch=={TORCH_VERSION}` failed (see pip's output above); check network access to PyPI");
    }
    let _ = std::fs::remove_dir_all(&venv);
    std::fs::rename(&staging, &venv)
        .with_context(|| format!("moving the new venv to {}", venv.display()))?;
    eprintln!("installed in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Points `<repo>/.libtorch` at `dir` (atomically: a new link is renamed over the old one).
fn link(dir: &Path) -> Result<()> {
    let root = repo_root();
    let target = root.join(".libtorch");
    if std::fs::read_link(&target).ok().as_deref() == Some(dir) {
        return Ok(());
    }
    let tmp = root.join(format!(".libtorch.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(dir, &tmp).with_context(|| format!("linking {}", tmp.display()))?;
    std::fs::rename(&tmp, &target).with_context(|| format!("replacing {}", target.display()))?;
    Ok(())
}

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

struct Lock(PathBuf);

impl Lock {
    fn acquire(path: &Path) -> Result<Self> {
        let started = Instant::now();
        loop {
            match std::fs::create_dir(path) {
                Ok(()) => return Ok(Self(path.to_path_buf())),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = std::fs::metadata(path)
                        .and_then(|m| m.modified())
                        .map(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(3600))
                        .unwrap_or(false);
                    if stale {
                        let _ = std::fs::remove_dir(path);
                        continue;
                    }
                    if started.elapsed() > Duration::from_secs(1800) {
                        bail!(
                            "waited 30 min for another libtorch install ({} exists)",
                            path.display()
                        );
                    }
                    if started.elapsed().as_secs() % 30 == 0 {
                        eprintln!(
                            "waiting for another libtorch install to finish ({})",
                            path.display()
                        );
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("creating lock {}", path.display()))
                }
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}
