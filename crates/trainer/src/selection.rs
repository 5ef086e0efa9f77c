//! Best-checkpoint selection and early stopping on a validation metric (`train.select_best`,
//! `train.early_stopping`), as Keras' `EarlyStopping(monitor, min_delta, patience, restore_best_weights)` and
//! transformers' `load_best_model_at_end` + `EarlyStoppingCallback` do: a validation counts as an improvement when it
//! beats the best so far by more than `min_delta`; the best one is kept as `checkpoints/best/`; after `patience`
//! validations without improvement training stops; the final evaluation uses the best weights unless
//! `train.final_weights = "last"`.
use crate::TrainError;
use serde::{Deserialize, Serialize};

/// The metrics an evaluation reports (pycocoevalcap's names). A higher value is better for each of them; a metric
/// where lower is better (a validation loss) would need its direction here.
const METRICS: [&str; 7] = ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"];

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    /// Validations without improvement before training stops.
    pub patience: usize,
    /// The least change that counts as an improvement.
    #[serde(default)]
    pub min_delta: f64,
}

/// Which weights the final evaluation and the saved adapter use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalWeights {
    Best,
    Last,
}

/// The best validation so far (kept in each checkpoint's run state, so a resume continues the selection).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Best {
    pub metric: String,
    pub value: f64,
    pub step: usize,
}

/// What one validation means for the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// A new best: checkpoint it and keep it as `best/`.
    pub best: Option<Best>,
    pub evals_since_best: usize,
    /// Patience ran out: stop training.
    pub stop: bool,
}

/// Checks the selection settings (called with the rest of the config's validation).
pub fn validate(
    select_best: Option<&str>,
    early: Option<&EarlyStopping>,
    final_weights: Option<FinalWeights>,
    eval_every: usize,
    meteor_skipped: bool,
) -> Result<(), TrainError> {
    let bad = |m: String| Err(TrainError::Config(m));
    match select_best {
        Some(m) if !METRICS.contains(&m) => {
            return bad(format!(
                "train.select_best = \"{m}\": expected one of {}",
                METRICS.join(", ")
            ));
        }
        Some("METEOR") if meteor_skipped => {
            return bad("train.select_best = \"METEOR\", but eval.meteor = \"skip\"".into())
        }
        Some(_) if eval_every == 0 => {
            return bad(
                "train.select_best needs validations during training: set train.eval_every".into()
            )
        }
        None if early.is_some() => {
            return bad(
                "train.early_stopping needs train.select_best (the metric it watches)".into()
            )
        }
        None if final_weights == Some(FinalWeights::Best) => {
            return bad("train.final_weights = \"best\" needs train.select_best".into())
        }
        _ => {}
    }
    if let Some(e) = early {
        if e.patience == 0 {
            return bad("train.early_stopping.patience = 0: expected at least 1".into());
        }
        if !(e.min_delta.is_finite() && e.min_delta >= 0.0) {
            return bad(format!(
                "train.early_stopping.min_delta = {}: expected a number >= 0",
                e.min_delta
            ));
        }
    }
    Ok(())
}

/// The value of `metric` among an evaluation's metrics (an approximated METEOR counts: its name says so).
pub fn value_of(metric: &str, metrics: &[(String, f64)]) -> Option<f64> {
    let qualified = format!("{metric} (");
    metrics.iter().find(|(n, _)| n == metric || n.starts_with(&qualified)).map(|(_, v)| *v)
}

/// Judges a validation at `step` against the best so far.
pub fn judge(
    best: Option<&Best>,
    evals_since_best: usize,
    metric: &str,
    value: f64,
    step: usize,
    early: Option<&EarlyStopping>,
) -> Verdict {
    let min_delta = early.map_or(0.0, |e| e.min_delta);
    let improved = value.is_finite() && best.is_none_or(|b| value - b.value > min_delta);
    let evals_since_best = if improved { 0 } else { evals_since_best + 1 };
    Verdict {
        best: improved.then(|| Best { metric: metric.to_string(), value, step }),
        evals_since_best,
        stop: early.is_some_and(|e| evals_since_best >= e.patience),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn improvements_patience_and_min_delta() {
        let early = EarlyStopping { patience: 2, min_delta: 0.01 };
        let v = judge(None, 0, "CIDEr", 0.5, 10, Some(&early));
        let best = v.best.clone().expect("the first validation is the best");
        assert_eq!((v.evals_since_best, v.stop), (0, false));
        // within min_delta: not an improvement
        let v = judge(Some(&best), 0, "CIDEr", 0.505, 20, Some(&early));
        assert_eq!((v.best.is_none(), v.evals_since_best, v.stop), (true, 1, false));
        let v = judge(Some(&best), 1, "CIDEr", 0.4, 30, Some(&early));
        assert_eq!((v.evals_since_best, v.stop), (2, true));
        // without early stopping any gain is a new best, and NaN never is
        assert!(judge(Some(&best), 5, "CIDEr", 0.5001, 40, None).best.is_some());
        assert!(judge(Some(&best), 5, "CIDEr", f64::NAN, 40, None).best.is_none());
    }

    #[test]
    fn metric_names_and_settings() {
        let m = vec![("Bleu_4".to_string(), 0.2), ("METEOR (approx)".to_string(), 0.3)];
        assert_eq!(value_of("METEOR", &m), Some(0.3));
        assert_eq!(value_of("CIDEr", &m), None);
        let e = EarlyStopping { patience: 3, min_delta: 0.0 };
        assert!(validate(Some("CIDEr"), Some(&e), None, 100, false).is_ok());
        let err = |r: Result<(), TrainError>| r.unwrap_err().to_string();
        assert!(
            err(validate(Some("cider"), None, None, 100, false)).contains("expected one of Bleu_1")
        );
        assert!(err(validate(Some("CIDEr"), None, None, 0, false)).contains("train.eval_every"));
        assert!(err(validate(None, Some(&e), None, 100, false)).contains("needs train.select_best"));
        assert!(err(validate(Some("METEOR"), None, None, 100, true)).contains("skip"));
        let zero = EarlyStopping { patience: 0, min_delta: 0.0 };
        assert!(err(validate(Some("CIDEr"), Some(&zero), None, 100, false)).contains("at least 1"));
    }
}
