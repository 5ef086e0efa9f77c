//! Runs one side of one case in a child process and reads back its result. Children get the same thread settings
//! (`OMP_NUM_THREADS`, `MKL_NUM_THREADS` and the spec's libtorch thread count) and Python runs offline: nothing is
//! fetched from the hub during a benchmark.
use super::spec::{read_json, write_json, Spec, WorkerResult};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Rust,
    Hf,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Rust => "rust",
            Side::Hf => "hf",
        }
    }
}

pub struct Runner {
    pub python: PathBuf,
    pub script: PathBuf,
    pub pgrs: PathBuf,
    pub logs: PathBuf,
}

/// Python to use: `--python`, `$PALIGEMMA_PYTHON`, the venv `cargo xtask setup` made, or `python3`.
pub fn find_python(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("PALIGEMMA_PYTHON") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    if let Some(c) = cache {
        let venv = c.join("paligemma-rs/torch-2.13.0/venv/bin/python");
        if venv.is_file() {
            return venv;
        }
    }
    PathBuf::from("python3")
}

impl Runner {
    pub fn new(python: PathBuf, repo: &Path, logs: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        Ok(Self {
            python,
            script: repo.join("scripts/bench/hf_worker.py"),
            pgrs: std::env::current_exe().context("locating the pgrs binary")?,
            logs,
        })
    }

    /// Checks that the reference side can run at all, with a fix in the error.
    pub fn check_python(&self) -> Result<serde_json::Value> {
        let out = Command::new(&self.python)
            .args([
                "-c",
                "import json, sys, torch, transformers, peft; print(json.dumps({'python': sys.version.split()[0], \
                 'torch': torch.__version__, 'transformers': transformers.__version__, 'peft': peft.__version__}))",
            ])
            .output()
            .with_context(|| format!("running {}", self.python.display()))?;
        if !out.status.success() {
            bail!(
                "the reference side needs torch, transformers 5.23 and peft 0.21 in {}:\n{}\nfix: {} -m pip install \
                 transformers==5.23.0 peft==0.21.2 (or pass --python)",
                self.python.display(),
                String::from_utf8_lossy(&out.stderr).trim(),
                self.python.display()
            );
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        for (k, want) in [("transformers", "5.23.0"), ("peft", "0.21.2")] {
            if v[k] != want {
                eprintln!(
                    "warning: the reference has {k} {} (the benchmark was written for {want})",
                    v[k]
                );
            }
        }
        Ok(v)
    }

    /// Runs one side; `tag` names its spec, result and log files.
    pub fn run(&self, side: Side, spec: &Spec, tag: &str) -> Result<WorkerResult> {
        let spec_path = self.logs.join(format!("{tag}.spec.json"));
        let out = self.logs.join(format!("{tag}.{}.json", side.name()));
        let log = self.logs.join(format!("{tag}.{}.log", side.name()));
        let _ = std::fs::remove_file(&out);
        write_json(&spec_path, spec)?;
        let mut cmd = match side {
            Side::Rust => {
                let mut c = Command::new(&self.pgrs);
                c.arg("bench").arg("worker");
                c
            }
            Side::Hf => {
                let mut c = Command::new(&self.python);
                c.arg(&self.script);
                c.env("HF_HUB_OFFLINE", "1")
                    .env("TRANSFORMERS_OFFLINE", "1")
                    .env("TRANSFORMERS_VERBOSITY", "error")
                    .env("TOKENIZERS_PARALLELISM", "false")
                    .env("PYTHONWARNINGS", "ignore");
                c
            }
        };
        let threads = spec.threads.to_string();
        cmd.arg("--spec")
            .arg(&spec_path)
            .arg("--out")
            .arg(&out)
            .env("OMP_NUM_THREADS", &threads)
            .env("MKL_NUM_THREADS", &threads)
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&log)?))
            .stderr(Stdio::from(std::fs::File::options().append(true).open(&log)?));
        let status =
            cmd.status().with_context(|| format!("starting the {} worker", side.name()))?;
        if !status.success() || !out.is_file() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(25).collect();
            bail!(
                "the {} worker failed on {tag} ({status}); last lines of {}:\n{}",
                side.name(),
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        read_json(&out)
    }
}
