//! The run directory: `runs/<name>-<YYYYmmdd-HHMMSS>/` with the resolved config, `run.json`, `metrics.jsonl`,
//! predictions, checkpoints, and the report (built by the `report` crate). Every file except the append-only
//! `metrics.jsonl` is written to a temporary file and renamed.
use crate::TrainError;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct RunDir {
    pub path: PathBuf,
    /// `None` for a reader: the ranks of a data-parallel run other than 0 read the run directory (a resumed
    /// checkpoint, a built tokenizer) and never write to it.
    metrics: Option<std::fs::File>,
    /// TensorBoard's mirror of the log (`tb/`), once started.
    tb: Option<crate::tb::Tensorboard>,
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

    /// A fresh temporary directory `<tmp>/<prefix>-<pid>` (dry runs), removed by its user.
    pub fn open_temporary(prefix: &str) -> Result<Self, TrainError> {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| TrainError::Io(format!("{}: {e}", dir.display())))?;
        Self::open(&dir)
    }

    /// An existing run directory (resume).
    pub fn open(path: &Path) -> Result<Self, TrainError> {
        let mpath = path.join("metrics.jsonl");
        let metrics = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&mpath)
            .map_err(|e| TrainError::Io(format!("{}: {e}", mpath.display())))?;
        Ok(Self { path: path.to_path_buf(), metrics: Some(metrics), tb: None })
    }

    /// A run directory another process writes (rank 0 of a data-parallel run): every write here does nothing.
    pub fn reader(path: &Path) -> Self {
        Self { path: path.to_path_buf(), metrics: None, tb: None }
    }

    pub fn is_writer(&self) -> bool {
        self.metrics.is_some()
    }

    /// Mirrors what is logged from here on to TensorBoard event files in `tb/`; `step`: the steps already done.
    pub fn start_tensorboard(&mut self, step: usize) -> Result<(), TrainError> {
        if self.is_writer() {
            self.tb = Some(crate::tb::Tensorboard::open(&self.path.join("tb"), step)?);
        }
        Ok(())
    }

    /// A few of an evaluation's captions, as text in TensorBoard.
    pub fn tb_captions(
        &mut self,
        split: &str,
        step: usize,
        predictions: &[(String, String)],
    ) -> Result<(), TrainError> {
        self.tb.as_mut().map_or(Ok(()), |tb| tb.captions(split, step, predictions))
    }

    pub fn checkpoints(&self) -> PathBuf {
        self.path.join("checkpoints")
    }

    /// Appends one line to `metrics.jsonl` (flushed, so a killed run keeps what it logged).
    pub fn log(&mut self, line: &Value) -> Result<(), TrainError> {
        let Some(metrics) = self.metrics.as_mut() else { return Ok(()) };
        let mut s = serde_json::to_string(line).expect("json");
        s.push('\n');
        metrics.write_all(s.as_bytes()).and_then(|_| metrics.flush()).map_err(|e| {
            TrainError::Io(format!("{}: {e}", self.path.join("metrics.jsonl").display()))
        })?;
        self.tb.as_mut().map_or(Ok(()), |tb| tb.mirror(line))
    }

    /// Drops `metrics.jsonl` lines after `step` (a resumed run re-logs the steps it repeats).
    pub fn truncate_metrics_after(&mut self, step: usize) -> Result<(), TrainError> {
        if !self.is_writer() {
            return Ok(());
        }
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

    /// A run restarting from step 0 (no good checkpoint) starts a new `metrics.jsonl`; the old one is renamed
    /// `metrics-<time>.jsonl` (returned), so no step appears twice in the log and nothing logged is lost.
    pub fn restart_metrics(&mut self) -> Result<Option<PathBuf>, TrainError> {
        if !self.is_writer() {
            return Ok(None);
        }
        let mpath = self.path.join("metrics.jsonl");
        if std::fs::metadata(&mpath).map(|m| m.len() == 0).unwrap_or(true) {
            return Ok(None);
        }
        let (stamp, _) = now();
        let mut old = self.path.join(format!("metrics-{stamp}.jsonl"));
        let mut n = 1;
        while old.exists() {
            n += 1;
            old = self.path.join(format!("metrics-{stamp}-{n}.jsonl"));
        }
        std::fs::rename(&mpath, &old)
            .map_err(|e| TrainError::Io(format!("{}: {e}", mpath.display())))?;
        *self = Self::open(&self.path)?;
        Ok(Some(old))
    }

    pub fn write_json(&self, rel: &str, v: &Value) -> Result<(), TrainError> {
        if !self.is_writer() {
            return Ok(());
        }
        write_atomic(&self.path.join(rel), &serde_json::to_vec_pretty(v).expect("json"))
    }

    pub fn write_text(&self, rel: &str, s: &str) -> Result<(), TrainError> {
        if !self.is_writer() {
            return Ok(());
        }
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
    use super::*;

    /// Issue 9, item 4: a restart from step 0 must not leave the old steps in the log.
    #[test]
    fn restart_and_resume_keep_each_step_once() {
        let dir = std::env::temp_dir().join(format!("pg-rundir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut run = RunDir::open(&dir).unwrap();
        for step in 1..=6 {
            run.log(&serde_json::json!({"kind": "train", "step": step})).unwrap();
        }
        run.truncate_metrics_after(4).unwrap();
        run.log(&serde_json::json!({"kind": "train", "step": 5})).unwrap();
        let steps = |p: &Path| -> Vec<u64> {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()["step"].as_u64().unwrap())
                .collect()
        };
        assert_eq!(steps(&dir.join("metrics.jsonl")), [1, 2, 3, 4, 5]);
        let old = run.restart_metrics().unwrap().expect("the old log is kept");
        run.log(&serde_json::json!({"kind": "train", "step": 1})).unwrap();
        assert_eq!(steps(&dir.join("metrics.jsonl")), [1]);
        assert_eq!(steps(&old), [1, 2, 3, 4, 5]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn timestamp_shape() {
        let (stamp, rfc) = now();
        assert_eq!(stamp.len(), 15);
        assert!(rfc.ends_with('Z') && rfc.len() == 20 && rfc.starts_with("20"));
    }
}
