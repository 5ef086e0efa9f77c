//! The final metric table of a run: the last test evaluation (else the last evaluation of any split), with the
//! baseline row and the difference to it when `run.json` names a baseline. Shown in report.html and, as plain
//! text, in the terminal at the end of training.

use crate::format;
use crate::metric_names;
use crate::metrics_log::EvalRecord;
use crate::run_dir::Run;
use crate::table::Table;

/// States the ×100 convention wherever scores are shown.
pub const SCORE_NOTE: &str =
    "Scores ×100, the captioning convention (BLEU-4 0.4531 is shown as 45.31, CIDEr \
                              2.531 as 253.10). Distinct: distinct captions / images.";

/// A titled table.
#[derive(Debug, Clone)]
pub struct TitledTable {
    /// "test split at step 1200, 1093 images".
    pub heading: String,
    pub table: Table,
}

/// "test split at step 1200, 1093 images".
pub fn describe_eval(eval: &EvalRecord) -> String {
    let mut s = format!("{} split at step {}", eval.split, eval.step);
    if let Some(n) = eval.n_images {
        s.push_str(&format!(", {} images", format::grouped(n)));
    }
    s
}

/// The final metric table, or `None` when the run has no evaluation yet.
pub fn final_table(run: &Run) -> Option<TitledTable> {
    let eval = run.final_eval()?;
    let baseline = run.info.baseline.as_ref();
    let names = metric_names::ordered(
        eval.metrics.keys().chain(baseline.into_iter().flat_map(|b| b.metrics.keys())),
    );
    let mut header = vec![String::new()];
    header.extend(names.iter().cloned());
    header.push("Distinct".into());
    let mut rows = Vec::new();
    let mut run_row = vec![run.name()];
    run_row.extend(names.iter().map(|n| format::score(eval.metric(n))));
    run_row.push(format::percent(eval.diversity));
    rows.push(run_row);
    if let Some(b) = baseline {
        let base = |n: &str| b.metrics.get(n).copied().flatten();
        let label = if b.name.is_empty() {
            "baseline".to_string()
        } else {
            format!("baseline: {}", b.name)
        };
        let mut row = vec![label];
        row.extend(names.iter().map(|n| format::score(base(n))));
        row.push(format::MISSING.into());
        rows.push(row);
        let mut delta = vec!["Δ (run − baseline)".to_string()];
        delta.extend(names.iter().map(|n| format::score_delta(eval.metric(n), base(n))));
        delta.push(format::MISSING.into());
        rows.push(delta);
    }
    let numeric = (0..header.len()).map(|i| i > 0).collect();
    Some(TitledTable { heading: describe_eval(eval), table: Table { header, rows, numeric } })
}

/// Every evaluation of the run, in log order.
pub fn all_evals_table(run: &Run) -> Table {
    let names = run.log.metric_names();
    let mut header: Vec<String> = vec!["Step".into(), "Split".into(), "Images".into()];
    header.extend(names.iter().cloned());
    header.push("Distinct".into());
    let rows = run
        .log
        .evals
        .iter()
        .map(|e| {
            let mut row = vec![
                e.step.to_string(),
                e.split.clone(),
                e.n_images.map_or_else(|| format::MISSING.to_string(), format::grouped),
            ];
            row.extend(names.iter().map(|n| format::score(e.metric(n))));
            row.push(format::percent(e.diversity));
            row
        })
        .collect();
    let numeric = header.iter().enumerate().map(|(i, _)| i != 1).collect();
    Table { header, rows, numeric }
}
