//! `report::build` and `report::final_metrics_table` on synthetic run directories: the report shows the
//! hand-computed numbers, escapes captions, embeds the gallery, writes valid plots, and bad input fails with
//! errors that name the file and line or key.

mod common;

use common::*;
use report::ReportError;

#[test]
fn full_report_shows_the_numbers_gallery_and_plots() {
    let dir = scratch("full");
    full_run(&dir);
    let path = report::build(&dir).unwrap();
    assert_eq!(path, dir.join("report.html"));
    let html = read(&path);

    // Final table: the test evaluation ×100 (hand-computed), the baseline and the difference.
    for want in ["61.23", "12.35", "45.00", "87.65", "10.00", "+77.65", "−", "75.0 %"] {
        assert!(html.contains(want), "report lacks {want}");
    }
    assert!(html.contains("Test split at step 40, 3 images"));
    assert!(html.contains("baseline: blind (most frequent caption)"));
    assert!(html.contains("Scores ×100"));
    // Header facts: 20480 of 2,000,000 trainable = 1.024 %; 12 min 5 s between start and finish.
    assert!(html.contains("20.5 k of 2.00 M (1.02 %)"), "params");
    assert!(html.contains("12 min 05 s"), "wall time");
    assert!(html.contains("LoRA") && html.contains("paligemma-tiny") && html.contains("cpu / f32"));
    assert!(html.contains("badge finished"));
    // Memory plan in the trainer's order with the total last: 8,000,000 B = 7.63 MiB.
    let w = html.find("<td>weights</td>").unwrap();
    let g = html.find("<td>gradients</td>").unwrap();
    let o = html.find("<td>optimizer state</td>").unwrap();
    let t = html.find("<td>total</td>").unwrap();
    assert!(w < g && g < o && o < t, "memory plan in file order, total last");
    assert!(html.contains("7.63 MiB"));

    // Captions and config are escaped.
    assert!(html.contains("a &lt;b&gt;road&lt;/b&gt; &amp; river"));
    assert!(!html.contains("<b>road</b>"));
    assert!(html.contains("the river &amp; the road"));
    assert!(html.contains("prefix = &quot;caption &lt;en&gt; &amp; more&quot;"));

    // Gallery: three cards, two thumbnails (the third image is missing and says so).
    assert_eq!(html.matches("<div class=\"card\">").count(), 3);
    let thumbs = data_uris(&html, "image/jpeg");
    assert_eq!(thumbs.len(), 2);
    let sizes: Vec<(u32, u32)> = thumbs
        .iter()
        .map(|jpeg| {
            image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg)
                .unwrap()
                .to_rgb8()
                .dimensions()
        })
        .collect();
    assert_eq!(sizes, [(160, 80), (64, 64)], "400×200 scaled to fit 160, 64×64 kept");
    assert!(html.contains("image unreadable"));
    assert!(html.contains("1 image(s) could not be read"));

    // Self-contained: every src is a data: URI; no external resource.
    for (i, _) in html.match_indices("src=\"") {
        assert!(html[i + 5..].starts_with("data:"), "external src at {i}");
    }
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<link"));

    // Plots: PNG and SVG for each chart, with the expected line colours; the SVGs are embedded too.
    for (stem, color) in [("loss", 0), ("lr", 4), ("grad_norm", 2), ("metrics", 0)] {
        assert_png_chart(&dir.join(format!("plots/{stem}.png")), color);
        assert_svg_chart(&dir.join(format!("plots/{stem}.svg")));
        assert!(html.contains(&format!("href=\"plots/{stem}.png\"")));
    }
    let svgs = data_uris(&html, "image/svg+xml");
    assert_eq!(svgs.len(), 4);
    assert_eq!(svgs[0], std::fs::read(dir.join("plots/loss.svg")).unwrap());
    let metrics_svg = read(&dir.join("plots/metrics.svg"));
    for label in ["Bleu_1", "CIDEr (right axis)", "test split (outlined dots)", "CIDEr ×100"] {
        assert!(metrics_svg.contains(label), "metrics plot lacks {label}");
    }
    // No temporary files left behind.
    for d in [dir.clone(), dir.join("plots")] {
        for entry in std::fs::read_dir(d).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.contains(".tmp-"), "leftover {name}");
        }
    }
}

#[test]
fn same_run_gives_the_same_bytes() {
    let dir = scratch("deterministic");
    full_run(&dir);
    report::build(&dir).unwrap();
    let first =
        (read(&dir.join("report.html")), std::fs::read(dir.join("plots/metrics.png")).unwrap());
    report::build(&dir).unwrap();
    let second =
        (read(&dir.join("report.html")), std::fs::read(dir.join("plots/metrics.png")).unwrap());
    assert!(first == second, "rebuilding changed the output");
}

#[test]
fn final_metrics_table_for_the_terminal() {
    let dir = scratch("table");
    full_run(&dir);
    let text = report::final_metrics_table(&dir).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "tiny-lora: test split at step 40, 3 images");
    let header: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(header, ["Bleu_1", "Bleu_4", "ROUGE_L", "CIDEr", "Distinct"]);
    let row = |label: &str| -> Vec<String> {
        let line =
            lines.iter().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no {label} row"));
        line[label.len()..]
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect()
    };
    assert_eq!(row("tiny-lora "), ["61.23", "12.35", "45.00", "87.65", "75.0 %"]);
    assert_eq!(
        row("baseline: blind (most frequent caption)"),
        ["30.00", "5.00", "—", "10.00", "—"]
    );
    assert_eq!(row("Δ (run − baseline)"), ["+31.23", "+7.35", "—", "+77.65", "—"]);
    // Columns line up: every row is as wide as the rule (all cells right-aligned to the same edge).
    let width = lines[2].chars().count();
    for l in &lines[3..6] {
        assert_eq!(l.chars().count(), width, "{l:?}");
    }
    assert!(text.contains("Scores ×100"));
}

#[test]
fn missing_optional_parts_degrade_gracefully() {
    let dir = scratch("minimal");
    write(&dir.join("metrics.jsonl"), &train_lines(5));
    let html = read(&report::build(&dir).unwrap());
    assert!(html.contains("No evaluation recorded yet."));
    assert!(html.contains("run.json not found"));
    assert!(html.contains("config.toml not found."));
    assert!(dir.join("plots/loss.png").exists());
    assert!(!dir.join("plots/metrics.png").exists());
    match report::final_metrics_table(&dir) {
        Err(ReportError::NoEvaluation { path }) => assert_eq!(path, dir.join("metrics.jsonl")),
        other => panic!("expected NoEvaluation, got {other:?}"),
    }

    // run.json only (a run that died before its first step).
    let dir = scratch("info-only");
    write(&dir.join("run.json"), r#"{"name": "early", "status": "failed", "steps": 100}"#);
    let html = read(&report::build(&dir).unwrap());
    assert!(html.contains("metrics.jsonl not found"));
    assert!(html.contains("0 of 100") && html.contains("badge failed"));
    assert!(html.contains("Nothing to plot yet."));

    // An evaluation whose predictions, references and images are gone: metrics still shown, gallery notes.
    let dir = scratch("no-predictions");
    full_run(&dir);
    std::fs::remove_dir_all(dir.join("predictions")).unwrap();
    let html = read(&report::build(&dir).unwrap());
    assert!(html.contains("87.65"));
    assert!(html.contains("predictions file") && html.contains("not found"));

    // References gone, image root absent: text-only gallery with a note.
    let dir = scratch("no-images");
    full_run(&dir);
    std::fs::remove_file(dir.join("predictions/references-test.json")).unwrap();
    std::fs::remove_dir_all(dir.join("images")).unwrap();
    let html = read(&report::build(&dir).unwrap());
    assert_eq!(html.matches("<div class=\"card\">").count(), 3);
    assert!(data_uris(&html, "image/jpeg").is_empty());
    assert!(html.contains("no references"));
    assert!(html.contains("references file") && html.contains("captions shown without images"));
}

#[test]
fn stale_plots_are_removed_when_their_data_is_gone() {
    let dir = scratch("stale");
    full_run(&dir);
    report::build(&dir).unwrap();
    assert!(dir.join("plots/metrics.svg").exists());
    write(&dir.join("metrics.jsonl"), &train_lines(10));
    report::build(&dir).unwrap();
    assert!(!dir.join("plots/metrics.svg").exists() && !dir.join("plots/metrics.png").exists());
    assert!(dir.join("plots/loss.svg").exists());
}

#[test]
fn malformed_input_names_file_and_line_or_key() {
    let dir = scratch("malformed-jsonl");
    full_run(&dir);
    let mut lines: Vec<String> =
        read(&dir.join("metrics.jsonl")).lines().map(String::from).collect();
    lines[6] = "{\"kind\":\"train\",\"step\":7,\"loss\":0.5".into();
    write(&dir.join("metrics.jsonl"), &(lines.join("\n") + "\n"));
    let before = read(&dir.join("run.json"));
    let e = report::build(&dir).unwrap_err().to_string();
    assert!(e.contains("metrics.jsonl:7: not valid JSON"), "{e}");
    assert!(!dir.join("report.html").exists(), "nothing written on error");
    assert_eq!(read(&dir.join("run.json")), before);

    let dir = scratch("malformed-jsonl-field");
    full_run(&dir);
    let mut text = read(&dir.join("metrics.jsonl"));
    text.insert_str(
        0,
        "{\"kind\":\"eval\",\"step\":1,\"split\":\"val\",\"metrics\":{\"CIDEr\":\"high\"}}\n",
    );
    write(&dir.join("metrics.jsonl"), &text);
    let e = report::final_metrics_table(&dir).unwrap_err().to_string();
    assert!(e.contains("metrics.jsonl:1: eval record at key `metrics.CIDEr`"), "{e}");

    let dir = scratch("malformed-run-json");
    full_run(&dir);
    write(&dir.join("run.json"), "{\"name\": \"x\",\n \"trainable_params\": \"many\"}");
    let e = report::build(&dir).unwrap_err().to_string();
    assert!(
        e.contains("run.json") && e.contains("at key `trainable_params`") && e.contains("line 2"),
        "{e}"
    );

    let dir = scratch("malformed-predictions");
    full_run(&dir);
    write(&dir.join("predictions/step-000040-test.json"), "[{\"image_id\": \"a.jpg\"}]");
    let e = report::build(&dir).unwrap_err().to_string();
    assert!(e.contains("step-000040-test.json") && e.contains("caption"), "{e}");

    let dir = scratch("not-a-run");
    let e = report::build(&dir).unwrap_err();
    assert!(matches!(e, ReportError::NotARunDir { .. }), "{e}");
    assert!(e.to_string().contains("neither run.json nor metrics.jsonl"));
    let e = report::build(&dir.join("absent")).unwrap_err().to_string();
    assert!(e.contains("absent"), "{e}");
}

#[test]
fn an_interrupted_run_with_a_cut_line_still_reports() {
    let dir = scratch("interrupted");
    full_run(&dir);
    let mut text = read(&dir.join("metrics.jsonl"));
    text.push_str("{\"kind\":\"train\",\"step\":41,\"lo");
    write(&dir.join("metrics.jsonl"), &text);
    let info = read(&dir.join("run.json"))
        .replace("\"finished\": \"2024-05-01T12:12:05Z\"", "\"finished\": null")
        .replace("\"status\": \"finished\"", "\"status\": \"interrupted\"");
    write(&dir.join("run.json"), &info);
    let html = read(&report::build(&dir).unwrap());
    assert!(html.contains("last line is incomplete"));
    assert!(html.contains("badge interrupted"));
    // No finish time: wall time is the last logged time_s (40 × 1.5 s), marked as so far.
    assert!(html.contains("1 min 00 s so far"), "wall time");
}

#[test]
fn gallery_thumbnails_of_real_tiff_images() {
    let Some(shared) = shared_dir("gallery_thumbnails_of_real_tiff_images") else { return };
    let images = shared.join("data/remote-sensing/UCM/images/Jbarata98");
    let dir = scratch("real-images");
    full_run(&dir);
    let info = read(&dir.join("run.json"));
    let start = info.find("\"image_root\": ").unwrap() + "\"image_root\": ".len();
    let end = start + info[start..].find(',').unwrap();
    let info = format!("{}{:?}{}", &info[..start], images.to_str().unwrap(), &info[end..]);
    write(&dir.join("run.json"), &info);
    write(
        &dir.join("predictions/step-000040-test.json"),
        r#"[{"image_id": "1.tif", "caption": "a river"}, {"image_id": "2.tif", "caption": "a farm"}]"#,
    );
    let html = read(&report::build(&dir).unwrap());
    let thumbs = data_uris(&html, "image/jpeg");
    assert_eq!(thumbs.len(), 2, "both UCM TIFFs become thumbnails");
    for jpeg in thumbs {
        let img = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg).unwrap();
        assert_eq!(img.width().max(img.height()), 160);
    }
}
