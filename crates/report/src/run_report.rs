//! `report.html` of one run: header facts, final metric table (with baseline), all evaluations, plots (also
//! written to `plots/` as PNG and SVG), memory plan, prediction gallery and the resolved config, in one
//! self-contained file. The same run directory always gives the same bytes.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::atomic::{remove_if_exists, write_atomic};
use crate::base64::data_uri;
use crate::error::ReportError;
use crate::final_table::{all_evals_table, final_table, SCORE_NOTE};
use crate::format;
use crate::gallery;
use crate::html::{escape, facts, notes, page};
use crate::plot;
use crate::run_charts::charts;
use crate::run_dir::Run;
use crate::table::Table;

/// A plot written next to the report, as the report embeds and links it.
pub(crate) struct PlotRef {
    pub stem: String,
    pub title: String,
    pub svg: String,
}

/// Builds `plots/*` and `report.html` for `run_dir`; returns the path of the report.
pub fn build(run_dir: &Path) -> Result<PathBuf, ReportError> {
    let run = Run::load(run_dir)?;
    let mut notes_out = run.notes.clone();
    let plots_dir = run_dir.join("plots");
    let mut plots = Vec::new();
    let mut textless = Vec::new();
    for (stem, chart) in charts(&run) {
        if !chart.has_data() {
            // A plot left from an earlier build would show data the run no longer has.
            remove_if_exists(&plots_dir.join(format!("{stem}.png")))?;
            remove_if_exists(&plots_dir.join(format!("{stem}.svg")))?;
            continue;
        }
        let written = plot::write(&chart, &plots_dir, stem)?;
        if let Some(why) = written.textless_because {
            textless.push((stem.to_string(), why));
        }
        plots.push(PlotRef { stem: stem.to_string(), title: chart.title, svg: written.svg });
    }
    notes_out.extend(textless_note(&textless));

    let gallery = match run.final_eval() {
        Some(eval) => {
            let g = gallery::build(run_dir, eval, run.info.image_root.as_deref())?;
            notes_out.extend(g.notes.iter().cloned());
            Some(g)
        }
        None => None,
    };

    let body = body(&run, &plots, gallery.as_ref(), &notes_out);
    let html = page(&format!("{}: run report", run.name()), &body);
    let path = run_dir.join("report.html");
    write_atomic(&path, html.as_bytes())?;
    Ok(path)
}

/// One note for all plots drawn without text: which ones, and why.
pub(crate) fn textless_note(textless: &[(String, String)]) -> Option<String> {
    let (_, why) = textless.first()?;
    let stems: Vec<&str> = textless.iter().map(|(s, _)| s.as_str()).collect();
    Some(format!(
        "plots {} drawn without text (titles, ticks, legends) because text rendering failed: {why}. \
         Install a font (for example the DejaVu fonts with fontconfig) and rebuild the report.",
        stems.join(", ")
    ))
}

/// The strategy as the trainer describes it in run.json (`strategy_label`; the bare name for older runs).
pub(crate) fn strategy_name(run: &Run) -> String {
    run.info
        .strategy_label
        .clone()
        .or_else(|| run.info.strategy.clone())
        .unwrap_or_else(|| "unknown".into())
}

pub(crate) fn or_unknown(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "unknown".into())
}

/// "1.23 M of 2.92 B (0.0421 %)".
pub(crate) fn params(run: &Run) -> String {
    match (run.info.trainable_params, run.info.total_params) {
        (Some(t), Some(total)) => {
            format!(
                "{} of {} ({})",
                format::count(t),
                format::count(total),
                format::share(t, total)
            )
        }
        (Some(t), None) => format::count(t),
        _ => "unknown".into(),
    }
}

/// "120 of 1,000 (epoch 2.40)".
pub(crate) fn steps(run: &Run) -> String {
    let mut s = match (run.last_step(), run.info.steps) {
        (Some(done), Some(planned)) if done != planned => {
            format!("{} of {}", format::grouped(done), format::grouped(planned))
        }
        (Some(done), _) => format::grouped(done),
        (None, Some(planned)) => format!("0 of {}", format::grouped(planned)),
        (None, None) => "none logged".into(),
    };
    if let Some(epoch) = run.log.train.last().and_then(|r| r.epoch) {
        s.push_str(&format!(" (epoch {epoch:.2})"));
    }
    s
}

pub(crate) fn wall_time(run: &Run) -> String {
    match run.wall_time_s() {
        Some(t) if run.info.finished.is_none() => format!("{} so far", format::duration(t)),
        Some(t) => format::duration(t),
        None => "unknown".into(),
    }
}

fn body(
    run: &Run,
    plots: &[PlotRef],
    gallery: Option<&gallery::Gallery>,
    run_notes: &[String],
) -> String {
    let mut out = String::new();
    let status = run.info.status.clone().unwrap_or_else(|| "unknown".into());
    let _ = writeln!(
        out,
        "<h1>{}<span class=\"badge {}\">{}</span></h1>\n<p class=\"sub\">{}</p>",
        escape(&run.name()),
        escape(&status),
        escape(&status),
        escape(&run.dir_name())
    );

    let mut items: Vec<(&str, String)> = vec![
        ("Strategy", strategy_name(run)),
        ("Model", or_unknown(&run.info.model)),
        ("Dataset", or_unknown(&run.info.dataset)),
        (
            "Device / dtype",
            format!("{} / {}", or_unknown(&run.info.device), or_unknown(&run.info.dtype)),
        ),
        ("Trainable parameters", params(run)),
        ("Steps", steps(run)),
        ("Wall time", wall_time(run)),
    ];
    if let Some(t) = run.median_tokens_per_s() {
        items.push((
            "Throughput",
            format!("{} tokens/s (median over steps)", format::significant(t, 3)),
        ));
    }
    if let Some(l) = run.log.train.iter().rev().find_map(|r| r.loss) {
        items.push(("Last training loss", format::significant(l, 4)));
    }
    if let Some(w) = run.info.evaluated_weights() {
        items.push(("Evaluated weights", w));
    }
    if let Some(e) = run.info.early_stop() {
        items.push(("Early stopping", e));
    }
    items.push(("Started", or_unknown(&run.info.started)));
    if let Some(f) = &run.info.finished {
        items.push(("Finished", f.clone()));
    }
    out.push_str(&facts(&items));
    out.push_str(&notes(run_notes));

    out.push_str("<h2>Final metrics</h2>\n");
    match final_table(run) {
        Some(t) => {
            let _ = writeln!(
                out,
                "<p class=\"caption\">{}. {}</p>",
                escape(&capitalize(&t.heading)),
                escape(SCORE_NOTE)
            );
            out.push_str(&t.table.to_html("metrics"));
            let all = all_evals_table(run);
            let _ =
                writeln!(out, "<details><summary>All evaluations ({})</summary>", all.rows.len());
            out.push_str(&all.to_html("metrics"));
            out.push_str("</details>\n");
        }
        None => out.push_str("<p>No evaluation recorded yet.</p>\n"),
    }

    out.push_str("<h2>Curves</h2>\n");
    if plots.is_empty() {
        out.push_str("<p>Nothing to plot yet.</p>\n");
    } else {
        out.push_str(&plots_html(plots, "plots/"));
    }

    if let Some(plan) = run.info.memory_plan.as_ref().filter(|p| !p.is_empty()) {
        out.push_str("<h2>Memory plan</h2>\n<p class=\"caption\">As planned by the trainer before step 1.</p>\n");
        let table = Table {
            header: vec!["Item".into(), "Size".into(), "Bytes".into()],
            // The trainer's order, except that a total goes last wherever the JSON writer put it.
            rows: plan
                .iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("total"))
                .chain(plan.iter().filter(|(k, _)| k.eq_ignore_ascii_case("total")))
                .map(|(k, v)| {
                    vec![k.to_string(), format::bytes(*v), format::grouped(v.max(0.0) as u64)]
                })
                .collect(),
            numeric: vec![false, true, true],
        };
        out.push_str(&table.to_html("memory"));
    }

    if let Some(g) = gallery.filter(|g| !g.entries.is_empty()) {
        out.push_str("<h2>Predictions</h2>\n");
        out.push_str(&gallery::to_html(g));
    }

    out.push_str("<h2>Configuration</h2>\n");
    match &run.config {
        Some(c) => {
            let _ = writeln!(
                out,
                "<details><summary>config.toml (resolved)</summary><pre>{}</pre></details>",
                escape(c)
            );
        }
        None => out.push_str("<p>config.toml not found.</p>\n"),
    }
    out
}

/// Figures embedding each plot's SVG, with links to the PNG and SVG files under `prefix`.
pub(crate) fn plots_html(plots: &[PlotRef], prefix: &str) -> String {
    let mut out = String::from("<div class=\"plots\">\n");
    for p in plots {
        let _ = writeln!(
            out,
            "<figure><img src=\"{}\" alt=\"{}\"><figcaption>{} · <a href=\"{prefix}{stem}.png\">PNG</a> · \
             <a href=\"{prefix}{stem}.svg\">SVG</a></figcaption></figure>",
            data_uri("image/svg+xml", p.svg.as_bytes()),
            escape(&p.title),
            escape(&p.title),
            prefix = escape(prefix),
            stem = escape(&p.stem),
        );
    }
    out.push_str("</div>\n");
    out
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
