//! A run directory as the trainer leaves it (`runs/<name>-<YYYYmmdd-HHMMSS>/`): `run.json`, `metrics.jsonl`,
//! `config.toml` and `predictions/`. Missing optional parts become notes shown in the report, not errors.

use std::path::{Path, PathBuf};

use crate::error::ReportError;
use crate::json_file;
use crate::metrics_log::{EvalRecord, MetricsLog};
use crate::run_info::RunInfo;

/// Everything read from one run directory.
#[derive(Debug, Clone)]
pub struct Run {
    pub dir: PathBuf,
    pub info: RunInfo,
    /// Whether `run.json` was there.
    pub has_info: bool,
    /// The text of `config.toml`.
    pub config: Option<String>,
    pub log: MetricsLog,
    /// Things the reader skipped or could not find, for the reader of the report.
    pub notes: Vec<String>,
}

impl Run {
    /// Reads `dir`. Errors: it is not a directory, has neither `run.json` nor `metrics.jsonl`, or one of them is
    /// malformed (the error names the file and key or line).
    pub fn load(dir: &Path) -> Result<Run, ReportError> {
        let meta = std::fs::metadata(dir).map_err(|e| ReportError::io(dir, e))?;
        if !meta.is_dir() {
            return Err(ReportError::io(
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a directory (expected a run directory)",
                ),
            ));
        }
        let info_path = dir.join("run.json");
        let log_path = dir.join("metrics.jsonl");
        if !info_path.exists() && !log_path.exists() {
            return Err(ReportError::NotARunDir { path: dir.to_path_buf() });
        }
        let mut notes = Vec::new();
        let info: Option<RunInfo> = json_file::read_optional(&info_path)?;
        if info.is_none() {
            notes.push("run.json not found: run details are unknown".to_string());
        }
        let config_path = dir.join("config.toml");
        let config = match std::fs::read_to_string(&config_path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(ReportError::io(&config_path, e)),
        };
        let mut log = MetricsLog::read(&log_path)?;
        notes.append(&mut log.notes);
        Ok(Run {
            dir: dir.to_path_buf(),
            has_info: info.is_some(),
            info: info.unwrap_or_default(),
            config,
            log,
            notes,
        })
    }

    /// The run's name from `run.json`, else the directory's name.
    pub fn name(&self) -> String {
        self.info.name.clone().unwrap_or_else(|| self.dir_name())
    }

    /// The directory's own name (`<name>-<timestamp>`), which tells runs of the same name apart.
    pub fn dir_name(&self) -> String {
        let canonical = self.dir.canonicalize().unwrap_or_else(|_| self.dir.clone());
        canonical
            .file_name()
            .map_or_else(|| self.dir.display().to_string(), |n| n.to_string_lossy().into_owned())
    }

    /// Wall time: `finished − started` when both are recorded, else the last logged `time_s`.
    pub fn wall_time_s(&self) -> Option<f64> {
        let parse = |s: &Option<String>| s.as_deref().and_then(crate::time::parse_rfc3339);
        match (parse(&self.info.started), parse(&self.info.finished)) {
            (Some(a), Some(b)) if b >= a => Some(b - a),
            _ => self.log.train.iter().rev().find_map(|r| r.time_s),
        }
    }

    /// The last logged optimizer step.
    pub fn last_step(&self) -> Option<u64> {
        self.log.train.last().map(|r| r.step)
    }

    /// The median training throughput (robust to the slow first steps and to evaluation pauses).
    pub fn median_tokens_per_s(&self) -> Option<f64> {
        let mut v: Vec<f64> = self
            .log
            .train
            .iter()
            .filter_map(|r| r.tokens_per_s)
            .filter(|x| x.is_finite())
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
    }

    /// See [`MetricsLog::final_eval`].
    pub fn final_eval(&self) -> Option<&EvalRecord> {
        self.log.final_eval()
    }
}
