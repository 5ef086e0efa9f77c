//! `cargo xtask eda`: renders `rsicd_data::eda` statistics as `stats.json`, plots (PNG and SVG, plotters),
//! a thumbnail grid and `report.html`, and prints the key numbers as a table.
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use rsicd_data::eda::{compute, EdaOptions, EdaStats};
use rsicd_data::{Dataset, ImagePreprocessor, Resample};

use crate::data::{write_atomic, DatasetArgs};

pub fn run(
    data: &DatasetArgs,
    tokenizer: Option<&Path>,
    out: &Path,
    max_images: usize,
) -> Result<i32> {
    let ds = data.load()?;
    let tok = match tokenizer {
        Some(p) => Some(
            tokenizers::Tokenizer::from_file(p)
                .map_err(|e| anyhow::anyhow!("{}: cannot load tokenizer: {e}", p.display()))?,
        ),
        None => None,
    };
    let count =
        |c: &str| tok.as_ref().map_or(0, |t| t.encode(c, false).map(|e| e.len()).unwrap_or(0));
    let t = std::time::Instant::now();
    let opts = EdaOptions { max_images, ..Default::default() };
    let stats = compute(&ds, &opts, if tok.is_some() { Some(&count) } else { None });
    let elapsed = t.elapsed();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    write_atomic(&out.join("stats.json"), serde_json::to_string_pretty(&stats)?.as_bytes())?;
    let plots = plots(&stats, out)?;
    let thumbs = thumbnails(&ds, &stats, out)?;
    write_atomic(&out.join("report.html"), html(&ds, &stats, &plots, &thumbs).as_bytes())?;
    print_table(&stats);
    if let Some(img) = stats.image_stats.as_ref().filter(|i| i.unreadable > 0) {
        eprintln!(
            "error: {} of {} images cannot be used (truncated, corrupt or unreadable); they are left out of the \
             image statistics. First ones:",
            img.unreadable, img.checked
        );
        for e in &img.unreadable_examples {
            eprintln!("  - {e}");
        }
    }
    println!(
        "\ncomputed in {:.2}s; wrote {}/stats.json, {} plots (PNG+SVG), report.html",
        elapsed.as_secs_f32(),
        out.display(),
        plots.len()
    );
    Ok(0)
}

fn print_table(s: &EdaStats) {
    println!("\n{:<28} {:>10} {:>10}", "split", "images", "captions");
    for (k, c) in &s.per_split {
        println!("{:<28} {:>10} {:>10}", k, c.images, c.captions);
    }
    println!("{:<28} {:>10} {:>10}", "total", s.images, s.captions);
    if !s.per_class.is_empty() {
        println!(
            "\n{} classes, {} to {} images each",
            s.per_class.len(),
            s.per_class.values().min().unwrap_or(&0),
            s.per_class.values().max().unwrap_or(&0)
        );
    }
    let w = &s.words.summary;
    println!(
        "\ncaption length (words)       min {:.0}  median {:.1}  mean {:.2}  p95 {:.1}  max {:.0}",
        w.min, w.median, w.mean, w.p95, w.max
    );
    if let Some(t) = &s.tokens {
        let t = &t.summary;
        println!("caption length (tokens)      min {:.0}  median {:.1}  mean {:.2}  p99 {:.1}  max {:.0}", t.min, t.median, t.mean, t.p99, t.max);
    }
    println!("vocabulary                   {} words", s.vocabulary_size);
    println!(
        "unique captions              {} of {} ({:.1}%)",
        s.unique_captions,
        s.captions,
        100.0 * s.unique_caption_ratio
    );
    println!("images, all refs identical   {}", s.images_all_identical);
    let d: Vec<String> =
        s.ngram_diversity.iter().map(|g| format!("{}: {:.3}", g.n, g.ratio)).collect();
    println!("distinct-n                   {}", d.join("  "));
    let top: Vec<String> =
        s.top_content_words.iter().take(10).map(|(w, c)| format!("{w} {c}")).collect();
    println!("top content words            {}", top.join(", "));
    if let Some(img) = &s.image_stats {
        println!(
            "images checked               {} ({} unreadable); {} decoded for statistics",
            img.checked, img.unreadable, img.decoded
        );
        let sizes: Vec<String> = img.sizes.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        println!("image sizes                  {}", sizes.join(", "));
        println!(
            "RGB mean / std               {:.1} {:.1} {:.1} / {:.1} {:.1} {:.1}",
            img.channel_mean[0],
            img.channel_mean[1],
            img.channel_mean[2],
            img.channel_std[0],
            img.channel_std[1],
            img.channel_std[2]
        );
    }
}

struct Bars<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    labels: Vec<String>,
    values: Vec<f64>,
    /// Categories down the y axis (long labels), else along x.
    horizontal: bool,
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    b: &Bars,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let n = b.values.len().max(1);
    let vmax = b.values.iter().copied().fold(0.0, f64::max).max(1.0) * 1.08;
    let mut builder = ChartBuilder::on(&root);
    builder.caption(b.title, ("sans-serif", 22)).margin(12);
    let label_at = |i: &SegmentValue<usize>| match i {
        SegmentValue::CenterOf(k) | SegmentValue::Exact(k) => {
            b.labels.get(*k).cloned().unwrap_or_default()
        }
        SegmentValue::Last => String::new(),
    };
    let blue = RGBColor(52, 101, 164);
    if b.horizontal {
        let mut chart = builder
            .x_label_area_size(40)
            .y_label_area_size(150)
            .build_cartesian_2d(0.0..vmax, (0..n).into_segmented())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&label_at)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .x_desc(b.y_label)
            .y_desc(b.x_label)
            .draw()?;
        chart.draw_series(b.values.iter().enumerate().map(|(i, &v)| {
            Rectangle::new(
                [(0.0, SegmentValue::Exact(i)), (v, SegmentValue::Exact(i + 1))],
                blue.filled(),
            )
        }))?;
    } else {
        let step = n.div_ceil(30).max(1);
        let mut chart = builder
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((0..n).into_segmented(), 0.0..vmax)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n / step + 1)
            .x_label_formatter(&label_at)
            .y_label_formatter(&|v| format!("{v:.0}"))
            .x_desc(b.x_label)
            .y_desc(b.y_label)
            .draw()?;
        chart.draw_series(b.values.iter().enumerate().map(|(i, &v)| {
            Rectangle::new(
                [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), v)],
                blue.filled(),
            )
        }))?;
    }
    root.present()?;
    Ok(())
}

/// Draws one chart as `<stem>.svg` and `<stem>.png`; returns the stem.
fn save(out: &Path, stem: &str, b: &Bars) -> Result<String> {
    let h = if b.horizontal { (140 + 22 * b.values.len()).clamp(300, 1000) as u32 } else { 480 };
    let svg = out.join(format!("{stem}.svg"));
    draw(SVGBackend::new(&svg, (900, h)).into_drawing_area(), b)
        .map_err(|e| anyhow::anyhow!("{}: {e}", svg.display()))?;
    let png = out.join(format!("{stem}.png"));
    draw(BitMapBackend::new(&png, (900, h)).into_drawing_area(), b)
        .map_err(|e| anyhow::anyhow!("{}: {e}", png.display()))?;
    Ok(stem.to_string())
}

fn plots(s: &EdaStats, out: &Path) -> Result<Vec<(String, String)>> {
    let mut made = Vec::new();
    let hist = |h: &std::collections::BTreeMap<usize, usize>| -> (Vec<String>, Vec<f64>) {
        let max = h.keys().copied().max().unwrap_or(0);
        (
            (0..=max).map(|l| l.to_string()).collect(),
            (0..=max).map(|l| *h.get(&l).unwrap_or(&0) as f64).collect(),
        )
    };
    let (labels, values) = hist(&s.words.histogram);
    let b = Bars {
        title: "Caption length (words)",
        x_label: "words",
        y_label: "captions",
        labels,
        values,
        horizontal: false,
    };
    made.push((save(out, "caption_length_words", &b)?, b.title.to_string()));
    if let Some(t) = &s.tokens {
        let (labels, values) = hist(&t.histogram);
        let b = Bars {
            title: "Caption length (tokenizer tokens, no BOS/EOS)",
            x_label: "tokens",
            y_label: "captions",
            labels,
            values,
            horizontal: false,
        };
        made.push((save(out, "caption_length_tokens", &b)?, b.title.to_string()));
    }
    let b = Bars {
        title: "Images per split",
        x_label: "split",
        y_label: "images",
        labels: s.per_split.keys().cloned().collect(),
        values: s.per_split.values().map(|c| c.images as f64).collect(),
        horizontal: true,
    };
    made.push((save(out, "images_per_split", &b)?, b.title.to_string()));
    for (stem, title, map) in [
        ("images_per_class", "Images per class", &s.per_class),
        ("images_per_source", "Images per source", &s.per_source),
    ] {
        if !map.is_empty() {
            let b = Bars {
                title,
                x_label: "",
                y_label: "images",
                labels: map.keys().cloned().collect(),
                values: map.values().map(|&v| v as f64).collect(),
                horizontal: true,
            };
            made.push((save(out, stem, &b)?, title.to_string()));
        }
    }
    for (stem, title, words) in [
        ("top_words", "Most frequent words", &s.top_words),
        ("top_content_words", "Most frequent words without stop words", &s.top_content_words),
    ] {
        let b = Bars {
            title,
            x_label: "",
            y_label: "occurrences",
            labels: words.iter().map(|w| w.0.clone()).collect(),
            values: words.iter().map(|w| w.1 as f64).collect(),
            horizontal: true,
        };
        made.push((save(out, stem, &b)?, title.to_string()));
    }
    let b = Bars {
        title: "Distinct references per image",
        x_label: "distinct captions",
        y_label: "images",
        labels: s.distinct_per_image.keys().map(|k| k.to_string()).collect(),
        values: s.distinct_per_image.values().map(|&v| v as f64).collect(),
        horizontal: false,
    };
    made.push((save(out, "distinct_captions_per_image", &b)?, b.title.to_string()));
    Ok(made)
}

/// Thumbnails (128 px, bicubic) of the picked items and a grid image; returns (file, item id).
fn thumbnails(ds: &Dataset, s: &EdaStats, out: &Path) -> Result<Vec<(String, usize)>> {
    let Some(img) = &s.image_stats else { return Ok(vec![]) };
    let pre = ImagePreprocessor::new(128, Resample::Bicubic);
    let dir = out.join("thumbnails");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let cols = 4u32;
    let rows = (img.thumbnails.len() as u32).div_ceil(cols);
    let mut grid = image::RgbImage::from_pixel(cols * 132, rows * 132, image::Rgb([255, 255, 255]));
    let mut made = vec![];
    for (k, &id) in img.thumbnails.iter().enumerate() {
        let Ok(decoded) = ds.items[id].decode_image() else { continue };
        let thumb = pre.resize_u8(&rsicd_data::decode::to_rgb8(&decoded));
        let name = format!("thumbnails/{k:02}.png");
        save_image(&thumb, &out.join(&name))?;
        image::imageops::replace(
            &mut grid,
            &thumb,
            i64::from(k as u32 % cols * 132 + 2),
            i64::from(k as u32 / cols * 132 + 2),
        );
        made.push((name, id));
    }
    save_image(&grid, &out.join("thumbnail_grid.png"))?;
    Ok(made)
}

/// Saves a PNG. `image` errors display their io cause and also return it as their source, so they are
/// formatted here (once) rather than chained under a context.
fn save_image(img: &image::RgbImage, path: &Path) -> Result<()> {
    img.save(path).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn html(
    ds: &Dataset,
    s: &EdaStats,
    plots: &[(String, String)],
    thumbs: &[(String, usize)],
) -> String {
    let mut h = String::new();
    let files: Vec<String> =
        ds.annotation_files.iter().map(|p| esc(&p.display().to_string())).collect();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>EDA: {}</title><style>\
         body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
         th{{background:#f3f3f3}}td:first-child{{text-align:left}}img.plot{{max-width:100%}}\
         .thumbs{{display:grid;grid-template-columns:repeat(3,1fr);gap:12px}}.thumbs div{{font-size:12px}}\
         </style></head><body><h1>Dataset report</h1><p>{} ({}), {} images, {} captions.</p>",
        files.join(", "),
        files.join(", "),
        s.format,
        s.images,
        s.captions
    );
    for n in &ds.notes {
        let _ = write!(h, "<p><b>Note:</b> {}</p>", esc(n));
    }
    h.push_str("<h2>Splits</h2><table><tr><th>split</th><th>images</th><th>captions</th></tr>");
    for (k, c) in &s.per_split {
        let _ =
            write!(h, "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", esc(k), c.images, c.captions);
    }
    h.push_str("</table>");
    let row = |h: &mut String, name: &str, sum: &rsicd_data::eda::Summary| {
        let _ = write!(
            h,
            "<tr><td>{name}</td><td>{:.0}</td><td>{:.1}</td><td>{:.2}</td><td>{:.1}</td><td>{:.1}</td><td>{:.0}</td></tr>",
            sum.min, sum.median, sum.mean, sum.p95, sum.p99, sum.max
        );
    };
    h.push_str("<h2>Caption length</h2><table><tr><th></th><th>min</th><th>median</th><th>mean</th><th>p95</th><th>p99</th><th>max</th></tr>");
    row(&mut h, "words", &s.words.summary);
    if let Some(t) = &s.tokens {
        row(&mut h, "tokens", &t.summary);
    }
    h.push_str("</table><p>Words are runs of letters and digits; punctuation is not counted. Token lengths exclude BOS/EOS and the prompt; the sequence length must cover them plus the prefix.</p>");
    let _ = write!(
        h,
        "<h2>Vocabulary and duplicates</h2><table>\
         <tr><td>vocabulary (distinct words)</td><td>{}</td></tr>\
         <tr><td>unique captions (ignoring case and punctuation)</td><td>{} ({:.1}%)</td></tr>\
         <tr><td>images whose references are all the same sentence</td><td>{}</td></tr></table>",
        s.vocabulary_size,
        s.unique_captions,
        100.0 * s.unique_caption_ratio,
        s.images_all_identical
    );
    h.push_str(
        "<table><tr><th>n</th><th>distinct n-grams</th><th>n-grams</th><th>distinct-n</th></tr>",
    );
    for g in &s.ngram_diversity {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td></tr>",
            g.n, g.distinct, g.total, g.ratio
        );
    }
    h.push_str(
        "</table><h3>Most frequent captions</h3><table><tr><th>caption</th><th>count</th></tr>",
    );
    for (c, n) in &s.top_captions {
        let _ = write!(h, "<tr><td>{}</td><td>{n}</td></tr>", esc(c));
    }
    h.push_str("</table>");
    if let Some(img) = &s.image_stats {
        let _ = write!(
            h,
            "<h2>Images</h2><p>{} checked, {} unreadable; {} decoded for statistics ({} failed). RGB mean {:.1} / {:.1} / {:.1}, std {:.1} / {:.1} / {:.1}.</p>",
            img.checked, img.unreadable, img.decoded, img.failed, img.channel_mean[0], img.channel_mean[1], img.channel_mean[2], img.channel_std[0], img.channel_std[1], img.channel_std[2]
        );
        if !img.unreadable_examples.is_empty() {
            h.push_str("<p><b>Errors</b> (unreadable images, left out of the statistics):</p><ul>");
            for e in &img.unreadable_examples {
                let _ = write!(h, "<li>{}</li>", esc(e));
            }
            h.push_str("</ul>");
        }
        h.push_str("<table><tr><th>size</th><th>images</th></tr>");
        for (k, v) in &img.sizes {
            let _ = write!(h, "<tr><td>{k}</td><td>{v}</td></tr>");
        }
        h.push_str("</table><table><tr><th>decoded layout</th><th>images</th></tr>");
        for (k, v) in &img.color_types {
            let _ = write!(h, "<tr><td>{}</td><td>{v}</td></tr>", esc(k));
        }
        h.push_str("</table>");
    }
    h.push_str("<h2>Plots</h2>");
    for (stem, title) in plots {
        let _ = write!(h, "<h3>{}</h3><a href=\"{stem}.png\"><img class=\"plot\" src=\"{stem}.svg\" alt=\"{}\"></a>", esc(title), esc(title));
    }
    if !thumbs.is_empty() {
        h.push_str("<h2>Samples</h2><div class=\"thumbs\">");
        for (file, id) in thumbs {
            let item = &ds.items[*id];
            let _ = write!(
                h,
                "<div><img src=\"{file}\" width=\"128\" height=\"128\"><br><b>{}</b> ({}{})<ul>",
                esc(&item.filename),
                esc(item.split.as_str()),
                item.class.as_deref().map(|c| format!(", {}", esc(c))).unwrap_or_default()
            );
            for c in &item.captions {
                let _ = write!(h, "<li>{}</li>", esc(c));
            }
            h.push_str("</ul></div>");
        }
        h.push_str("</div>");
    }
    h.push_str("</body></html>\n");
    h
}
