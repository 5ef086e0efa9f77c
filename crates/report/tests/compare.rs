//! `report::compare`: ranking, the Markdown table, overlaid curves and errors.

mod common;

use std::path::PathBuf;

use common::*;
use report::ReportError;

/// A run named `name` with validation CIDEr rising to `cider` and, when `test` is set, a test evaluation.
fn run_with(
    root: &std::path::Path,
    name: &str,
    strategy: &str,
    cider: Option<f64>,
    test: bool,
) -> PathBuf {
    let dir = root.join(format!("{name}-20240501-120000"));
    write(
        &dir.join("run.json"),
        &format!(
            r#"{{"name": "{name}", "strategy": "{strategy}", "status": "finished", "steps": 20}}"#
        ),
    );
    let mut log = train_lines_shifted(20, cider.unwrap_or(0.0) + name.len() as f64 * 0.1);
    if let Some(c) = cider {
        log += &eval_line(10, "val", &[("Bleu_4", c / 8.0), ("CIDEr", c / 2.0)], 4);
        log += &eval_line(20, "val", &[("Bleu_4", c / 4.0), ("CIDEr", c)], 4);
        if test {
            log += &eval_line(20, "test", &[("Bleu_4", c / 5.0), ("CIDEr", c * 0.9)], 4);
        }
    }
    write(&dir.join("metrics.jsonl"), &log);
    dir
}

fn md_rows(md: &str) -> Vec<Vec<String>> {
    md.lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| #"))
        .map(|l| l.trim_matches('|').split(" | ").map(|c| c.trim().to_string()).collect())
        .collect()
}

#[test]
fn ranks_by_metric_and_writes_table_page_and_curves() {
    let root = scratch("compare-rank");
    let runs = vec![
        run_with(&root, "hard", "hard_prompt", Some(0.5), true),
        run_with(&root, "lora", "lora", Some(0.9), true),
        run_with(&root, "fresh", "soft_prompt", None, false),
        run_with(&root, "soft", "soft_prompt", Some(0.7), false),
    ];
    report::build(&runs[1]).unwrap();
    let out = root.join("cmp");
    let html_path = report::compare(&runs, &out, Some("cider")).unwrap();
    assert_eq!(html_path, out.join("compare.html"));
    let md = read(&out.join("compare.md"));
    let rows = md_rows(&md);
    let order: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(
        order,
        [
            "lora-20240501-120000",
            "soft-20240501-120000",
            "hard-20240501-120000",
            "fresh-20240501-120000"
        ]
    );
    // lora: test CIDEr 0.9 × 0.9 = 0.81; soft has no test split, so its last validation (0.7) counts.
    assert_eq!(
        rows[0],
        ["1", "lora-20240501-120000", "lora", "test @ step 20", "18.00", "81.00", "75.0 %"]
    );
    assert_eq!(rows[1][3..6], ["val @ step 20", "17.50", "70.00"]);
    assert_eq!(rows[2][5], "45.00");
    assert_eq!(rows[3][3..], ["none yet", "—", "—", "—"]);
    assert!(md.contains("ranked by CIDEr, best first"));
    assert!(md.contains("| # | Run | Strategy | Evaluation | Bleu_4 | CIDEr | Distinct |"));

    let html = read(&html_path);
    assert!(
        html.contains("href=\"../lora-20240501-120000/report.html\""),
        "link to the built report"
    );
    assert_eq!(html.matches(">not built<").count(), 3);
    for stem in ["loss", "metric-bleu-4", "metric-cider"] {
        assert_png_chart(&out.join(format!("{stem}.png")), 0);
        assert_svg_chart(&out.join(format!("{stem}.svg")));
    }
    // Every run has its colour in the overlaid loss chart; the legend names the runs.
    let loss = image::open(out.join("loss.png")).unwrap().to_rgb8();
    for i in 0..4 {
        let c = report::plot::color(i);
        assert!(
            loss.pixels().filter(|p| p.0 == [c.0, c.1, c.2]).count() > 100,
            "run {i} missing from loss plot"
        );
    }
    assert!(read(&out.join("metric-cider.svg")).contains("lora-20240501-120000"));
}

#[test]
fn without_rank_keeps_the_given_order() {
    let root = scratch("compare-order");
    let runs = vec![
        run_with(&root, "b", "lora", Some(0.2), true),
        run_with(&root, "a", "lora", Some(0.8), true),
    ];
    report::compare(&runs, &root.join("out"), None).unwrap();
    let md = read(&root.join("out/compare.md"));
    let order: Vec<String> = md_rows(&md).into_iter().map(|r| r[1].clone()).collect();
    assert_eq!(order, ["b-20240501-120000", "a-20240501-120000"]);
    assert!(md.contains("in the order given"));
}

#[test]
fn same_directory_names_are_told_apart() {
    let root = scratch("compare-dupes");
    let a = run_with(&root.join("x"), "same", "lora", Some(0.2), true);
    let b = run_with(&root.join("y"), "same", "lora", Some(0.4), true);
    report::compare(&[a, b], &root.join("out"), Some("CIDEr")).unwrap();
    let order: Vec<String> =
        md_rows(&read(&root.join("out/compare.md"))).into_iter().map(|r| r[1].clone()).collect();
    assert_eq!(order, ["same-20240501-120000", "same-20240501-120000 (2)"]);
}

#[test]
fn errors_name_what_is_wrong() {
    let root = scratch("compare-errors");
    let run = run_with(&root, "r", "lora", Some(0.5), true);
    match report::compare(std::slice::from_ref(&run), &root.join("out"), Some("SPICE")) {
        Err(ReportError::UnknownMetric { metric, available }) => {
            assert_eq!(metric, "SPICE");
            assert_eq!(available, ["Bleu_4", "CIDEr"]);
        }
        other => panic!("expected UnknownMetric, got {other:?}"),
    }
    assert!(matches!(report::compare(&[], &root.join("out"), None), Err(ReportError::NoRuns)));
    let bad = root.join("bad");
    write(
        &bad.join("metrics.jsonl"),
        "{\"kind\":\"train\",\"step\":1}\n{\"kind\":\"train\",\"step\":\"two\"}\n",
    );
    let e = report::compare(&[run, bad], &root.join("out"), None).unwrap_err().to_string();
    assert!(e.contains("bad/metrics.jsonl:2: train record at key `step`"), "{e}");
}
