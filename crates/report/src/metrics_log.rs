//! `metrics.jsonl`: the trainer's step-by-step log, one JSON object per line, `"kind": "train"` (loss, learning
//! rate, gradient norm, throughput) or `"kind": "eval"` (caption metrics of one evaluation).
//!
//! Reading rules, chosen so that real run directories report instead of failing:
//! - a malformed line is an error naming the file and line, except the last line when it has no newline: that is
//!   a write cut short by a kill, so it is dropped with a note;
//! - `"kind": "skip"` lines (a step the trainer skipped, with its `reason`) are counted and reported in a note;
//!   lines of any other unknown kind are skipped (newer trainers may log more);
//! - a resumed run logs again from its checkpoint's step, so when a train step does not increase, the records
//!   of the abandoned attempt from that step on are superseded (train and eval alike), and a repeated evaluation
//!   of the same split and step replaces the earlier one.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::ReportError;
use crate::ordered_map::OrderedMap;

/// One optimizer step. Numbers are `None` when absent or `null` (serde_json writes non-finite floats as `null`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TrainRecord {
    pub step: u64,
    #[serde(default)]
    pub epoch: Option<f64>,
    #[serde(default)]
    pub loss: Option<f64>,
    #[serde(default)]
    pub lr: Option<f64>,
    #[serde(default)]
    pub grad_norm: Option<f64>,
    #[serde(default)]
    pub tokens_per_s: Option<f64>,
    /// Seconds since the run started.
    #[serde(default)]
    pub time_s: Option<f64>,
}

/// One evaluation of one split.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EvalRecord {
    pub step: u64,
    pub split: String,
    /// Metric name to value as pycocoevalcap reports it (fractions; CIDEr unbounded), in the trainer's order.
    pub metrics: OrderedMap<Option<f64>>,
    /// Distinct captions / images.
    #[serde(default)]
    pub diversity: Option<f64>,
    #[serde(default)]
    pub n_images: Option<u64>,
    /// COCO results file, relative to the run directory.
    #[serde(default)]
    pub predictions: Option<String>,
}

impl EvalRecord {
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).copied().flatten()
    }

    pub fn is_test(&self) -> bool {
        self.split == "test"
    }
}

/// The parsed log, with notes about anything skipped or superseded.
#[derive(Debug, Clone, Default)]
pub struct MetricsLog {
    pub train: Vec<TrainRecord>,
    pub evals: Vec<EvalRecord>,
    pub notes: Vec<String>,
}

impl MetricsLog {
    /// Reads `path`; a missing file is an empty log with a note.
    pub fn read(path: &Path) -> Result<MetricsLog, ReportError> {
        match std::fs::read_to_string(path) {
            Ok(text) => MetricsLog::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(MetricsLog {
                notes: vec![format!(
                    "{} not found: no training curve or evaluation to show",
                    path.display()
                )],
                ..MetricsLog::default()
            }),
            Err(e) => Err(ReportError::io(path, e)),
        }
    }

    /// Parses the content of `path` (named in errors).
    pub fn parse(path: &Path, text: &str) -> Result<MetricsLog, ReportError> {
        let mut log = MetricsLog::default();
        let mut unknown_kinds = 0usize;
        let mut skipped_steps: Vec<String> = Vec::new();
        let mut superseded = (0usize, 0usize);
        let line_count = text.lines().count();
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let err = |message: String| ReportError::Line {
                path: path.to_path_buf(),
                line: line_no,
                message,
            };
            let value: serde_json::Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(e) if line_no == line_count && !text.ends_with('\n') => {
                    log.notes.push(format!(
                        "{}:{line_no}: last line is incomplete ({e}); a write was probably cut short, line ignored",
                        path.display()
                    ));
                    continue;
                }
                Err(e) => return Err(err(format!("not valid JSON: {e}"))),
            };
            let kind = match value.get("kind") {
                Some(serde_json::Value::String(k)) => k.clone(),
                Some(other) => return Err(err(format!("`kind` must be a string, found {other}"))),
                None if value.is_object() => {
                    return Err(err("missing `kind` (expected \"train\" or \"eval\")".into()))
                }
                None => return Err(err(format!("expected a JSON object, found {value}"))),
            };
            match kind.as_str() {
                "train" => {
                    let record: TrainRecord =
                        typed(value).map_err(|m| err(format!("train record {m}")))?;
                    if log.train.last().is_some_and(|last| record.step <= last.step) {
                        let before = (log.train.len(), log.evals.len());
                        log.train.retain(|r| r.step < record.step);
                        log.evals.retain(|r| r.step < record.step);
                        superseded.0 += before.0 - log.train.len();
                        superseded.1 += before.1 - log.evals.len();
                    }
                    log.train.push(record);
                }
                "eval" => {
                    let record: EvalRecord =
                        typed(value).map_err(|m| err(format!("eval record {m}")))?;
                    let before = log.evals.len();
                    log.evals.retain(|r| r.split != record.split || r.step < record.step);
                    superseded.1 += before - log.evals.len();
                    log.evals.push(record);
                }
                "skip" => {
                    let step = value.get("step").and_then(|v| v.as_u64());
                    let reason =
                        value.get("reason").and_then(|v| v.as_str()).unwrap_or("no reason given");
                    skipped_steps.push(match step {
                        Some(s) => format!("step {s}: {reason}"),
                        None => reason.to_string(),
                    });
                }
                _ => unknown_kinds += 1,
            }
        }
        if let Some(first) = skipped_steps.first() {
            log.notes.push(format!(
                "the trainer skipped {} step(s) (first: {first})",
                skipped_steps.len()
            ));
        }
        if unknown_kinds > 0 {
            log.notes.push(format!(
                "{}: {unknown_kinds} line(s) of an unknown kind skipped (this reader knows \"train\" and \"eval\")",
                path.display()
            ));
        }
        if superseded != (0, 0) {
            log.notes.push(format!(
                "{}: the run was resumed; {} train and {} eval record(s) of the abandoned attempt were superseded",
                path.display(),
                superseded.0,
                superseded.1
            ));
        }
        Ok(log)
    }

    /// The evaluation the final metric table shows: the last test evaluation, else the last one of any split.
    /// A test evaluation older than the last validation (the untrained model scored on the test split before
    /// step 1, in a run stopped before its final test) gives way to that validation: the table should show the
    /// latest state of the run.
    pub fn final_eval(&self) -> Option<&EvalRecord> {
        // `max_by_key` returns the last maximum, i.e. the latest record of the latest step.
        let last_test = self.evals.iter().filter(|e| e.is_test()).max_by_key(|e| e.step);
        let last_other = self.evals.iter().filter(|e| !e.is_test()).max_by_key(|e| e.step);
        match (last_test, last_other) {
            (Some(t), Some(o)) if o.step > t.step => Some(o),
            (Some(t), _) => Some(t),
            (None, o) => o,
        }
    }

    /// Every metric name that appears in an evaluation, in the canonical caption-metric order.
    pub fn metric_names(&self) -> Vec<String> {
        crate::metric_names::ordered(self.evals.iter().flat_map(|e| e.metrics.keys()))
    }
}

/// Deserializes a checked JSON object, naming the key at fault.
fn typed<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let key = e.path().to_string();
        if key.is_empty() || key == "." {
            e.inner().to_string()
        } else {
            format!("at key `{key}`: {}", e.inner())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MetricsLog, ReportError> {
        MetricsLog::parse(Path::new("runs/x/metrics.jsonl"), text)
    }

    #[test]
    fn reads_both_kinds_and_nulls() {
        let log = parse(concat!(
            r#"{"kind":"train","step":1,"epoch":0.1,"loss":null,"lr":0.001,"grad_norm":2.5,"tokens_per_s":100,"time_s":1}"#,
            "\n\n",
            r#"{"kind":"eval","step":1,"split":"val","metrics":{"CIDEr":0.5,"Bleu_1":0.25},"diversity":0.5,"n_images":4}"#,
            "\n",
            r#"{"kind":"hparams","step":1}"#,
            "\n",
            r#"{"kind":"skip","step":2,"reason":"non-finite loss"}"#,
            "\n",
            r#"{"kind":"skip","step":3,"reason":"non-finite the gradient of `x`"}"#,
            "\n"
        ))
        .unwrap();
        assert_eq!(log.train.len(), 1);
        assert_eq!(log.train[0].loss, None);
        assert_eq!(log.train[0].tokens_per_s, Some(100.0));
        assert_eq!(log.evals[0].metric("CIDEr"), Some(0.5));
        assert_eq!(log.metric_names(), vec!["Bleu_1", "CIDEr"]);
        assert_eq!(log.notes.len(), 2, "{:?}", log.notes);
        assert_eq!(log.notes[0], "the trainer skipped 2 step(s) (first: step 2: non-finite loss)");
        assert!(log.notes[1].contains("1 line(s) of an unknown kind"), "{:?}", log.notes);
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let e = parse(
            "{\"kind\":\"train\",\"step\":1}\n{\"kind\":\"train\",\"step\":2,\"loss\":\"high\"}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("runs/x/metrics.jsonl:2: "), "{e}");
        assert!(e.contains("`loss`"), "{e}");
        let e = parse("{\"kind\":\"train\",\"step\":1}\n{oops\n{\"kind\":\"train\",\"step\":2}\n")
            .unwrap_err();
        assert!(e.to_string().starts_with("runs/x/metrics.jsonl:2: not valid JSON"), "{e}");
        let e = parse("{\"step\":1}\n").unwrap_err().to_string();
        assert!(e.contains(":1: missing `kind`"), "{e}");
        let e =
            parse("{\"kind\":\"eval\",\"step\":1,\"split\":\"val\"}\n").unwrap_err().to_string();
        assert!(e.contains(":1: eval record") && e.contains("metrics"), "{e}");
        let e = parse("[1,2]\n").unwrap_err().to_string();
        assert!(e.contains(":1: expected a JSON object"), "{e}");
    }

    #[test]
    fn truncated_last_line_is_dropped_with_a_note() {
        let log = parse("{\"kind\":\"train\",\"step\":1}\n{\"kind\":\"train\",\"st").unwrap();
        assert_eq!(log.train.len(), 1);
        assert!(log.notes[0].contains(":2: last line is incomplete"), "{:?}", log.notes);
        // The same line with its newline was written completely, so it is an error.
        assert!(parse("{\"kind\":\"train\",\"step\":1}\n{\"kind\":\"train\",\"st\n").is_err());
    }

    #[test]
    fn resume_supersedes_the_abandoned_attempt() {
        let mut text = String::new();
        for step in 1..=6 {
            text += &format!("{{\"kind\":\"train\",\"step\":{step},\"loss\":{}}}\n", 10 - step);
            if step % 2 == 0 {
                text += &format!(
                    "{{\"kind\":\"eval\",\"step\":{step},\"split\":\"val\",\"metrics\":{{\"CIDEr\":0.{step}}}}}\n"
                );
            }
        }
        // Killed after step 6, resumed from the checkpoint of step 4.
        for step in 5..=6 {
            text += &format!("{{\"kind\":\"train\",\"step\":{step},\"loss\":{}}}\n", 20 - step);
        }
        text += "{\"kind\":\"eval\",\"step\":6,\"split\":\"val\",\"metrics\":{\"CIDEr\":0.9}}\n";
        let log = parse(&text).unwrap();
        let steps: Vec<u64> = log.train.iter().map(|r| r.step).collect();
        assert_eq!(steps, [1, 2, 3, 4, 5, 6]);
        assert_eq!(log.train[5].loss, Some(14.0));
        let evals: Vec<(u64, f64)> =
            log.evals.iter().map(|e| (e.step, e.metric("CIDEr").unwrap())).collect();
        assert_eq!(evals, [(2, 0.2), (4, 0.4), (6, 0.9)]);
        assert!(log.notes.iter().any(|n| n.contains("2 train and 1 eval")), "{:?}", log.notes);
    }

    #[test]
    fn final_eval_prefers_the_last_test() {
        let log = parse(concat!(
            "{\"kind\":\"eval\",\"step\":5,\"split\":\"test\",\"metrics\":{\"CIDEr\":0.1}}\n",
            "{\"kind\":\"eval\",\"step\":9,\"split\":\"val\",\"metrics\":{\"CIDEr\":0.2}}\n",
            "{\"kind\":\"eval\",\"step\":9,\"split\":\"test\",\"metrics\":{\"CIDEr\":0.3}}\n",
        ))
        .unwrap();
        assert_eq!(log.final_eval().unwrap().metric("CIDEr"), Some(0.3));
        let log =
            parse("{\"kind\":\"eval\",\"step\":5,\"split\":\"val\",\"metrics\":{}}\n").unwrap();
        assert_eq!(log.final_eval().unwrap().split, "val");
        assert!(parse("").unwrap().final_eval().is_none());
        // The untrained model on the test split at step 0, then validation only: the latest state wins.
        let log = parse(concat!(
            "{\"kind\":\"eval\",\"step\":0,\"split\":\"test\",\"metrics\":{\"CIDEr\":0.01}}\n",
            "{\"kind\":\"eval\",\"step\":50,\"split\":\"val\",\"metrics\":{\"CIDEr\":0.4}}\n",
        ))
        .unwrap();
        assert_eq!(log.final_eval().unwrap().metric("CIDEr"), Some(0.4));
    }
}
