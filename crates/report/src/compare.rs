//! Side-by-side comparison of runs: `compare.md` (a Markdown table of each run's final metrics, optionally
//! ranked), `compare.html` (that table, the runs' details, links to their reports, overlaid curves) and the
//! curves as PNG and SVG (`loss.*`, `metric-<name>.*`).

use std::fmt::Write;
use std::path::{Component, Path, PathBuf};

use crate::atomic::write_atomic;
use crate::error::ReportError;
use crate::final_table::SCORE_NOTE;
use crate::format;
use crate::html::{escape, notes, page};
use crate::metric_names;
use crate::plot::{self, Chart, Legend, Series, Style};
use crate::run_dir::Run;
use crate::run_report::{
    or_unknown, params, plots_html, steps, strategy_name, textless_note, wall_time, PlotRef,
};
use crate::smooth::{ema, span_for};
use crate::table::Table;

/// The loaded runs, labelled and ordered as the comparison shows them.
pub struct Comparison {
    pub runs: Vec<Run>,
    /// Unique label per run (its directory name, numbered when two are equal).
    pub labels: Vec<String>,
    /// Metric columns, canonical order.
    pub metrics: Vec<String>,
    /// The metric the rows are ranked by, as spelled in the runs.
    pub ranked_by: Option<String>,
}

impl Comparison {
    /// Loads `run_dirs` and orders them by `rank_by` (descending; runs without the metric last, in given order).
    pub fn load(run_dirs: &[PathBuf], rank_by: Option<&str>) -> Result<Comparison, ReportError> {
        if run_dirs.is_empty() {
            return Err(ReportError::NoRuns);
        }
        let mut runs = run_dirs.iter().map(|d| Run::load(d)).collect::<Result<Vec<_>, _>>()?;
        let metrics = metric_names::ordered(
            runs.iter().filter_map(|r| r.final_eval()).flat_map(|e| e.metrics.keys()),
        );
        let ranked_by = match rank_by {
            Some(wanted) => match metric_names::resolve(wanted, &metrics) {
                Some(m) => Some(m.to_string()),
                None => {
                    return Err(ReportError::UnknownMetric {
                        metric: wanted.into(),
                        available: metrics,
                    })
                }
            },
            None => None,
        };
        if let Some(m) = &ranked_by {
            let key = |r: &Run| r.final_eval().and_then(|e| e.metric(m)).filter(|v| v.is_finite());
            // Stable: ties and runs without the metric keep the order they were given in.
            runs.sort_by(|a, b| match (key(a), key(b)) {
                (Some(x), Some(y)) => y.total_cmp(&x),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            });
        }
        let labels = unique_labels(runs.iter().map(Run::dir_name).collect());
        Ok(Comparison { runs, labels, metrics, ranked_by })
    }

    /// One row per run: rank, run, strategy, evaluation, metrics, distinct captions.
    pub fn table(&self) -> Table {
        let mut header: Vec<String> =
            vec!["#".into(), "Run".into(), "Strategy".into(), "Evaluation".into()];
        header.extend(self.metrics.iter().cloned());
        header.push("Distinct".into());
        let rows = self
            .runs
            .iter()
            .zip(&self.labels)
            .enumerate()
            .map(|(i, (run, label))| {
                let eval = run.final_eval();
                let mut row = vec![
                    (i + 1).to_string(),
                    label.clone(),
                    run.info.strategy.clone().unwrap_or_else(|| "unknown".into()),
                    eval.map_or_else(
                        || "none yet".into(),
                        |e| match run.info.final_checkpoint.as_ref().and_then(|f| f.step) {
                            Some(w) if w != e.step => {
                                format!("{} @ step {} (weights of step {w})", e.split, e.step)
                            }
                            _ => format!("{} @ step {}", e.split, e.step),
                        },
                    ),
                ];
                row.extend(
                    self.metrics.iter().map(|m| format::score(eval.and_then(|e| e.metric(m)))),
                );
                row.push(format::percent(eval.and_then(|e| e.diversity)));
                row
            })
            .collect();
        let numeric = header.iter().enumerate().map(|(i, _)| i == 0 || i >= 4).collect();
        Table { header, rows, numeric }
    }

    /// The sentence above the table.
    pub fn description(&self) -> String {
        let order = match &self.ranked_by {
            Some(m) => format!("ranked by {m}, best first"),
            None => "in the order given".to_string(),
        };
        format!(
            "Final metrics of each run: its last test evaluation, or its last validation where the run has no \
             later test evaluation (column Evaluation), {order}. {SCORE_NOTE}"
        )
    }

    /// compare.md.
    pub fn markdown(&self) -> String {
        format!("# Run comparison\n\n{}\n\n{}", self.description(), self.table().to_markdown())
    }
}

/// Directory names made unique by numbering repeats: "a", "a (2)".
fn unique_labels(names: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let mut label = name.clone();
        let mut k = 2;
        while out.contains(&label) {
            label = format!("{name} ({k})");
            k += 1;
        }
        out.push(label);
    }
    out
}

/// `to` relative to the directory `from` (both made absolute first), for links between pages.
pub fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let abs = |p: &Path| {
        p.canonicalize().unwrap_or_else(|_| std::env::current_dir().unwrap_or_default().join(p))
    };
    let (from, to) = (abs(from), abs(to));
    let f: Vec<Component> = from.components().collect();
    let t: Vec<Component> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c.as_os_str());
    }
    out
}

/// The overlaid curves: smoothed training loss, then each metric over steps.
fn charts(c: &Comparison) -> Vec<(String, Chart)> {
    let mut out = Vec::new();
    let mut loss = Chart::new("Training loss", "step", "loss (mean token NLL)");
    for (i, (run, label)) in c.runs.iter().zip(&c.labels).enumerate() {
        let points: Vec<(f64, f64)> =
            run.log.train.iter().filter_map(|r| r.loss.map(|l| (r.step as f64, l))).collect();
        let span = span_for(points.len());
        let name = if span > 1 { format!("{label} (EMA, span {span})") } else { label.clone() };
        loss.series.push(Series::new(name, ema(&points, span), i, Style::Line));
    }
    out.push(("loss".to_string(), loss));
    let all_metrics = metric_names::ordered(
        c.runs.iter().flat_map(|r| r.log.evals.iter().flat_map(|e| e.metrics.keys())),
    );
    for m in all_metrics {
        let mut chart = Chart::new(format!("{m} over steps"), "step", format!("{m} ×100"));
        chart.legend = Legend::Outside;
        let mut tests = Vec::new();
        for (i, (run, label)) in c.runs.iter().zip(&c.labels).enumerate() {
            let points = |test: bool| -> Vec<(f64, f64)> {
                run.log
                    .evals
                    .iter()
                    .filter(|e| e.is_test() == test)
                    .filter_map(|e| e.metric(&m).map(|v| (e.step as f64, v * 100.0)))
                    .collect()
            };
            chart.series.push(Series::new(label.clone(), points(false), i, Style::LineDots));
            tests.push(Series::new(String::new(), points(true), i, Style::Dots));
        }
        if let Some(first) = tests.iter_mut().find(|s| !s.points.is_empty()) {
            first.label = "test split (outlined dots)".into();
        }
        chart.series.extend(tests);
        out.push((format!("metric-{}", metric_names::slug(&m)), chart));
    }
    out
}

/// Writes compare.md, compare.html and the curves into `out_dir`; returns the path of compare.html.
pub fn compare(
    run_dirs: &[PathBuf],
    out_dir: &Path,
    rank_by: Option<&str>,
) -> Result<PathBuf, ReportError> {
    let c = Comparison::load(run_dirs, rank_by)?;
    std::fs::create_dir_all(out_dir).map_err(|e| ReportError::io(out_dir, e))?;
    write_atomic(&out_dir.join("compare.md"), c.markdown().as_bytes())?;

    let mut page_notes = Vec::new();
    let mut plots = Vec::new();
    let mut textless = Vec::new();
    for (stem, chart) in charts(&c) {
        if !chart.has_data() {
            continue;
        }
        let written = plot::write(&chart, out_dir, &stem)?;
        if let Some(why) = written.textless_because {
            textless.push((stem.clone(), why));
        }
        plots.push(PlotRef { stem, title: chart.title, svg: written.svg });
    }
    page_notes.extend(textless_note(&textless));
    for (run, label) in c.runs.iter().zip(&c.labels) {
        page_notes.extend(run.notes.iter().map(|n| format!("{label}: {n}")));
    }

    let mut body = String::new();
    let _ = writeln!(body, "<h1>Run comparison</h1>\n<p class=\"sub\">{} runs</p>", c.runs.len());
    body.push_str(&notes(&page_notes));
    body.push_str("<h2>Final metrics</h2>\n");
    let _ = writeln!(body, "<p class=\"caption\">{}</p>", escape(&c.description()));
    body.push_str(&c.table().to_html("metrics"));

    body.push_str("<h2>Runs</h2>\n");
    let mut runs_html = String::from(
        "<table class=\"runs\">\n<thead><tr><th>Run</th><th>Strategy</th><th>Model</th><th>Dataset</th>\
         <th>Trainable parameters</th><th>Steps</th><th>Wall time</th><th>Status</th><th>Report</th></tr></thead>\n<tbody>\n",
    );
    for (run, label) in c.runs.iter().zip(&c.labels) {
        let report = run.dir.join("report.html");
        let link = if report.exists() {
            let rel = relative_path(out_dir, &report);
            format!("<a href=\"{}\">report</a>", escape(&rel.to_string_lossy()))
        } else {
            "not built".into()
        };
        let _ = writeln!(
            runs_html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{link}</td></tr>",
            escape(label),
            escape(&strategy_name(run)),
            escape(&or_unknown(&run.info.model)),
            escape(&or_unknown(&run.info.dataset)),
            escape(&params(run)),
            escape(&steps(run)),
            escape(&wall_time(run)),
            escape(&or_unknown(&run.info.status)),
        );
    }
    runs_html.push_str("</tbody>\n</table>\n");
    body.push_str(&runs_html);

    body.push_str("<h2>Curves</h2>\n");
    if plots.is_empty() {
        body.push_str("<p>Nothing to plot.</p>\n");
    } else {
        body.push_str(&plots_html(&plots, ""));
    }

    let path = out_dir.join("compare.html");
    write_atomic(&path, page("Run comparison", &body).as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique() {
        let got = unique_labels(vec!["a".into(), "b".into(), "a".into(), "a".into()]);
        assert_eq!(got, ["a", "b", "a (2)", "a (3)"]);
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative_path(Path::new("/x/runs/cmp"), Path::new("/x/runs/a/report.html")),
            Path::new("../a/report.html")
        );
        assert_eq!(relative_path(Path::new("/x"), Path::new("/x/a.html")), Path::new("a.html"));
    }
}
