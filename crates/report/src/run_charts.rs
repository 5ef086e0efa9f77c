//! The charts of one run: training loss (raw and smoothed), learning rate, gradient norm, and the caption
//! metrics over steps (validation curves, test evaluations as outlined dots; CIDEr on its own right axis).

use crate::metrics_log::TrainRecord;
use crate::plot::{Chart, Legend, Series, Style};
use crate::run_dir::Run;
use crate::smooth::{ema, span_for};

/// Gradient norms spanning more than this ratio are drawn on a logarithmic axis.
const LOG_AXIS_SPREAD: f64 = 100.0;

/// (file stem, chart) for every chart of the run, including those without data (the caller skips them).
pub fn charts(run: &Run) -> Vec<(&'static str, Chart)> {
    vec![
        ("loss", loss(run)),
        ("lr", lr(run)),
        ("grad_norm", grad_norm(run)),
        ("metrics", metrics(run)),
    ]
}

fn curve(train: &[TrainRecord], field: impl Fn(&TrainRecord) -> Option<f64>) -> Vec<(f64, f64)> {
    train
        .iter()
        .filter_map(|r| field(r).map(|v| (r.step as f64, v)))
        .filter(|p| p.1.is_finite())
        .collect()
}

/// Raw and smoothed lines when there are enough points for smoothing to matter.
fn with_smoothing(chart: &mut Chart, name: &str, points: Vec<(f64, f64)>) {
    let span = span_for(points.len());
    if span > 1 {
        let smooth = ema(&points, span);
        chart.series.push(Series::new(format!("{name} (per step)"), points, 0, Style::Faint));
        chart.series.push(Series::new(
            format!("{name} (EMA, span {span} steps)"),
            smooth,
            0,
            Style::Line,
        ));
    } else {
        chart.series.push(Series::new(name, points, 0, Style::Line));
    }
}

fn loss(run: &Run) -> Chart {
    let mut c =
        Chart::new(format!("{}: training loss", run.name()), "step", "loss (mean token NLL)");
    with_smoothing(&mut c, "loss", curve(&run.log.train, |r| r.loss));
    c
}

fn lr(run: &Run) -> Chart {
    let mut c = Chart::new(format!("{}: learning rate", run.name()), "step", "learning rate");
    c.series.push(Series::new("lr", curve(&run.log.train, |r| r.lr), 4, Style::Line));
    c
}

fn grad_norm(run: &Run) -> Chart {
    let points = curve(&run.log.train, |r| r.grad_norm);
    let positive: Vec<f64> = points.iter().map(|p| p.1).filter(|v| *v > 0.0).collect();
    let (lo, hi) =
        positive.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let log = !positive.is_empty() && hi / lo > LOG_AXIS_SPREAD;
    let y = if log { "gradient norm (log scale)" } else { "gradient norm" };
    let mut c = Chart::new(format!("{}: gradient norm (before clipping)", run.name()), "step", y);
    c.log_y = log;
    with_smoothing(&mut c, "grad norm", points);
    for s in &mut c.series {
        s.color = 2;
    }
    c
}

/// Whether a metric is on CIDEr's scale (up to 10, ×100 = 1000) rather than BLEU's (up to 1).
fn cider_like(name: &str) -> bool {
    name.starts_with("CIDEr")
}

fn metrics(run: &Run) -> Chart {
    let mut c = Chart::new(format!("{}: caption metrics", run.name()), "step", "score ×100");
    c.legend = Legend::Outside;
    let names = run.log.metric_names();
    let split_right = names.iter().any(|n| cider_like(n)) && names.iter().any(|n| !cider_like(n));
    if split_right {
        c.y_label = "score ×100 (BLEU, METEOR, ROUGE-L)".into();
        c.y2_label = "CIDEr ×100".into();
    }
    let mut test_series = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let points_of = |test: bool| -> Vec<(f64, f64)> {
            run.log
                .evals
                .iter()
                .filter(|e| e.is_test() == test)
                .filter_map(|e| e.metric(name).map(|v| (e.step as f64, v * 100.0)))
                .collect()
        };
        let right = split_right && cider_like(name);
        let label = if right { format!("{name} (right axis)") } else { name.clone() };
        let mut val = Series::new(label, points_of(false), i, Style::LineDots);
        val.right_axis = right;
        c.series.push(val);
        let mut test = Series::new(String::new(), points_of(true), i, Style::Dots);
        test.right_axis = right;
        test_series.push(test);
    }
    // One legend entry explains every outlined dot.
    if let Some(first) = test_series.iter_mut().find(|s| !s.points.is_empty()) {
        first.label = "test split (outlined dots)".into();
    }
    c.series.extend(test_series);
    c
}
