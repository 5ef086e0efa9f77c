//! Test helpers: scratch directories, a synthetic run directory as the trainer writes it, a base64 decoder
//! (independent of the crate's encoder) and locating the shared data.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A fresh, empty scratch directory for `name` under Cargo's per-target temp dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// One evaluation line of metrics.jsonl.
pub fn eval_line(step: u64, split: &str, metrics: &[(&str, f64)], n_images: u64) -> String {
    let m: Vec<String> = metrics.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!(
        "{{\"kind\":\"eval\",\"step\":{step},\"split\":\"{split}\",\"metrics\":{{{}}},\"diversity\":0.75,\
         \"n_images\":{n_images},\"predictions\":\"predictions/step-{step:06}-{split}.json\"}}\n",
        m.join(",")
    )
}

/// `steps` train lines with a falling loss.
pub fn train_lines(steps: u64) -> String {
    train_lines_shifted(steps, 0.0)
}

/// `steps` train lines with a falling loss, `shift` added to it.
pub fn train_lines_shifted(steps: u64, shift: f64) -> String {
    (1..=steps)
        .map(|s| {
            let loss = shift + 4.0 / (1.0 + s as f64 * 0.1) + 0.05 * ((s * 7919 % 13) as f64 / 13.0);
            let lr = 1e-3 * (s as f64 / steps as f64).min(0.2) * 5.0;
            format!(
                "{{\"kind\":\"train\",\"step\":{s},\"epoch\":{},\"loss\":{loss},\"lr\":{lr},\"grad_norm\":{},\
                 \"tokens_per_s\":{},\"time_s\":{}}}\n",
                s as f64 / 10.0,
                1.0 + 5.0 / s as f64,
                1000 + s % 3,
                s as f64 * 1.5
            )
        })
        .collect()
}

/// An RGB PNG of `w`×`h` pixels with a gradient.
pub fn write_png(path: &Path, w: u32, h: u32) {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 128])
    });
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

/// The fully populated synthetic run used by most tests: 40 train steps, validation every 10 steps, a test
/// evaluation at step 40 with predictions (one caption with markup characters), references, two real images
/// and one missing image, a baseline, a memory plan and a config.
pub fn full_run(dir: &Path) {
    let images = dir.join("images");
    write_png(&images.join("wide.png"), 400, 200);
    write_png(&images.join("small.png"), 64, 64);
    write(
        &dir.join("run.json"),
        &format!(
            r#"{{"name": "tiny-lora", "strategy": "lora", "strategy_label": "LoRA, r 8, alpha 16", "model": "paligemma-tiny", "dataset": "synthetic",
  "image_root": {:?}, "started": "2024-05-01T12:00:00Z", "finished": "2024-05-01T12:12:05Z",
  "status": "finished", "device": "cpu", "dtype": "f32", "trainable_params": 20480, "total_params": 2000000,
  "steps": 40,
  "memory_plan": {{"weights": 8000000, "total": 8245760, "gradients": 81920, "optimizer state": 163840}},
  "baseline": {{"name": "blind (most frequent caption)", "metrics": {{"Bleu_1": 0.3, "Bleu_4": 0.05,
     "CIDEr": 0.1}}}}}}"#,
            images.to_str().unwrap()
        ),
    );
    write(&dir.join("config.toml"), "[prompt]\nprefix = \"caption <en> & more\"\n");
    let mut log = train_lines(40);
    for step in [10, 20, 30, 40] {
        let f = step as f64 / 40.0;
        log += &eval_line(
            step,
            "val",
            &[("Bleu_1", 0.5 * f), ("Bleu_4", 0.1 * f), ("ROUGE_L", 0.4 * f), ("CIDEr", 0.8 * f)],
            8,
        );
    }
    log += &eval_line(
        40,
        "test",
        &[("Bleu_1", 0.61234), ("Bleu_4", 0.123456), ("ROUGE_L", 0.45), ("CIDEr", 0.87654)],
        3,
    );
    write(&dir.join("metrics.jsonl"), &log);
    write(
        &dir.join("predictions/step-000040-test.json"),
        r#"[{"image_id": "wide.png", "caption": "a <b>road</b> & river"},
            {"image_id": "small.png", "caption": "many buildings"},
            {"image_id": "missing.jpg", "caption": "a bare land"}]"#,
    );
    write(
        &dir.join("predictions/references-test.json"),
        r#"{"wide.png": ["a road next to a river", "the river & the road"],
            "small.png": ["many buildings are in a dense area"],
            "missing.jpg": ["bare land"]}"#,
    );
}

/// Standard base64 decoding (RFC 4648), written independently of the crate's encoder.
pub fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a') as u32 + 26,
            b'0'..=b'9' => (c - b'0') as u32 + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c) << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// Every `data:<media>;base64,…` payload in `html`, decoded.
pub fn data_uris(html: &str, media: &str) -> Vec<Vec<u8>> {
    let prefix = format!("data:{media};base64,");
    html.match_indices(&prefix)
        .map(|(i, _)| {
            let rest = &html[i + prefix.len()..];
            let end = rest.find('"').unwrap();
            base64_decode(&rest[..end])
        })
        .collect()
}

/// Checks that `path` is a PNG of the chart size with a drawn picture in which palette colour `color` (the
/// colour of a line the chart must show) covers some pixels.
pub fn assert_png_chart(path: &Path, color: usize) {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{} is not a valid image: {e}", path.display()))
        .to_rgb8();
    assert_eq!(img.dimensions(), report::plot::SIZE, "{}", path.display());
    let non_white = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    assert!(non_white > 2_000, "{}: only {non_white} drawn pixels", path.display());
    let c = report::plot::color(color);
    let line = img.pixels().filter(|p| p.0 == [c.0, c.1, c.2]).count();
    assert!(line > 100, "{}: only {line} pixels of the expected line colour", path.display());
}

/// Checks that `path` is an SVG document of the chart size with at least one drawn line.
pub fn assert_svg_chart(path: &Path) {
    let svg = read(path);
    let (w, h) = report::plot::SIZE;
    assert!(svg.trim_start().starts_with("<svg"), "{}: does not start with <svg", path.display());
    assert!(svg.trim_end().ends_with("</svg>"), "{}: does not end with </svg>", path.display());
    assert!(svg.contains(&format!("width=\"{w}\"")) && svg.contains(&format!("height=\"{h}\"")));
    assert!(
        svg.contains("<polyline") || svg.contains("<path"),
        "{}: no line drawn",
        path.display()
    );
    assert_eq!(svg.matches("<svg").count(), svg.matches("</svg>").count());
}

/// `$PALIGEMMA_SHARED`, else `<repo root>/../shared`. `None` (after a loud message) when absent, unless
/// `PALIGEMMA_REQUIRE_SHARED=1`, which turns absence into a failure (CI sets it).
pub fn shared_dir(test: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("PALIGEMMA_SHARED") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    if dir.join("data").is_dir() {
        return Some(dir);
    }
    if std::env::var("PALIGEMMA_REQUIRE_SHARED").as_deref() == Ok("1") {
        panic!("{test}: shared data not found at {} and PALIGEMMA_REQUIRE_SHARED=1", dir.display());
    }
    eprintln!(
        "\n*** {test} skipped: shared data not found at {} (set PALIGEMMA_SHARED) ***\n",
        dir.display()
    );
    None
}
