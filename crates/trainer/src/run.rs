//! The run directory: `runs/<name>-<YYYYmmdd-HHMMSS>/` with the resolved config, `run.json`, `metrics.jsonl`,
//! predictions, checkpoints, and the report (built by the `report` crate). Every file except the append-only
//! `metrics.jsonl` is written to a temporary file and renamed.
use crate::TrainError;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct RunDir {
    pub path: PathBuf,
    metrics: std::fs::File,
}

/// UTC `YYYYmmdd-HHMMSS` and RFC 3339 forms of now.
pub fn now() -> (String, String) {
    let secs = report::unix_now();
    (report::utc_stamp(secs), report::utc_rfc3339(secs))
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp = path
        .with_file_name(format!(".{}.tmp", path.file_name().unwrap_or_default().to_string_lossy()));
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| TrainError::Io(format!("{}: {e}", path.display())))
}

impl RunDir {
    /// A new run directory under `root`.
    pub fn create(root: &Path, name: &str) -> Result<Self, TrainError> {
        let (stamp, _) = now();
        let mut path = root.join(format!("{name}-{stamp}"));
        let mut n = 1;
        while path.exists() {
            n += 1;
            path = root.join(format!("{name}-{stamp}-{n}"));
        }
        std::fs::create_dir_all(path.join("predictions"))
            .map_err(|e| TrainError::Io(format!("{}: {e}", path.display())))?;
        Self::open(&path)
    }

    /// An existing run directory (resume).
    pub fn open(path: &Path) -> Result<Self, TrainError> {
        let mpath = path.join("metrics.jsonl");
        let metrics = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&mpath)
            .map_err(|e| TrainError::Io(format!("{}: {e}", mpath.display())))?;
        Ok(Self { path: path.to_path_buf(), metrics })
    }

    pub fn checkpoints(&self) -> PathBuf {
        self.path.join("checkpoints")
    }

    /// Appends one line to `metrics.jsonl` (flushed, so a killed run keeps what it logged).
    pub fn log(&mut self, line: &Value) -> Result<(), TrainError> {
        let mut s = serde_json::to_string(line).expect("json");
        s.push('\n');
        self.metrics.write_all(s.as_bytes()).and_then(|_| self.metrics.flush()).map_err(|e| {
            TrainError::Io(format!("{}: {e}", self.path.join("metrics.jsonl").display()))
        })
    }

    /// Drops `metrics.jsonl` lines after `step` (a resumed run re-logs the steps it repeats).
    pub fn truncate_metrics_after(&mut self, step: usize) -> Result<(), TrainError> {
        let mpath = self.path.join("metrics.jsonl");
        let text = std::fs::read_to_string(&mpath).unwrap_or_default();
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| {
                serde_json::from_str::<Value>(l)
                    .ok()
                    .and_then(|v| v["step"].as_u64())
                    .is_some_and(|s| s as usize <= step)
            })
            .collect();
        let mut out = kept.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        write_atomic(&mpath, out.as_bytes())?;
        *self = Self::open(&self.path)?;
        Ok(())
    }

    pub fn write_json(&self, rel: &str, v: &Value) -> Result<(), TrainError> {
        write_atomic(&self.path.join(rel), &serde_json::to_vec_pretty(v).expect("json"))
    }

    pub fn write_text(&self, rel: &str, s: &str) -> Result<(), TrainError> {
        write_atomic(&self.path.join(rel), s.as_bytes())
    }

    pub fn read_json(&self, rel: &str) -> Option<Value> {
        serde_json::from_slice(&std::fs::read(self.path.join(rel)).ok()?).ok()
    }

    /// Updates fields of `run.json`.
    pub fn update_run(&self, fields: &[(&str, Value)]) -> Result<(), TrainError> {
        let mut v = self.read_json("run.json").unwrap_or_else(|| Value::Object(Default::default()));
        for (k, x) in fields {
            v[*k] = x.clone();
        }
        self.write_json("run.json", &v)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamp_shape() {
        let (stamp, rfc) = super::now();
        assert_eq!(stamp.len(), 15);
        assert!(rfc.ends_with('Z') && rfc.len() == 20 && rfc.starts_with("20"));
    }
}
