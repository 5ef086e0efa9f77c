//! Line charts (training curves, metrics over steps, overlaid runs) rendered with plotters to PNG and SVG.
//!
//! Text needs a system font (plotters' `ttf` feature asks fontconfig for a sans-serif face). On a machine
//! without one, drawing text fails; the chart is then drawn again without any text (no title, ticks or legend)
//! and the caller is told, so a report is never lost to a missing font.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::atomic::write_atomic;
use crate::error::ReportError;
use crate::format::significant;

/// Chart size in pixels (PNG) and user units (SVG).
pub const SIZE: (u32, u32) = (960, 540);

/// Tableau 10: distinguishable colours, readable on white.
const PALETTE: [(u8, u8, u8); 10] = [
    (0x4e, 0x79, 0xa7),
    (0xf2, 0x8e, 0x2b),
    (0xe1, 0x57, 0x59),
    (0x76, 0xb7, 0xb2),
    (0x59, 0xa1, 0x4f),
    (0xed, 0xc9, 0x48),
    (0xb0, 0x7a, 0xa1),
    (0xff, 0x9d, 0xa7),
    (0x9c, 0x75, 0x5f),
    (0xba, 0xb0, 0xac),
];

/// The palette colour for index `i` (cycling).
pub fn color(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A line.
    Line,
    /// A line with a dot at every point (sparse data such as evaluations).
    LineDots,
    /// Dots only, larger and outlined (held-out test points).
    Dots,
    /// A thin pale line (raw values under a smoothed line).
    Faint,
}

/// One named series of (x, y) points.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// Palette index.
    pub color: usize,
    pub style: Style,
    /// Plot against the right-hand axis (a metric on another scale, such as CIDEr next to BLEU).
    pub right_axis: bool,
}

impl Series {
    pub fn new(
        label: impl Into<String>,
        points: Vec<(f64, f64)>,
        color: usize,
        style: Style,
    ) -> Self {
        Series { label: label.into(), points, color, style, right_axis: false }
    }

    fn finite_points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite())
    }
}

/// Where the legend goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legend {
    UpperLeft,
    UpperRight,
    LowerRight,
    /// In a panel right of the chart, so it never hides data (many series, long names).
    Outside,
}

/// A chart description.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Label of the right-hand axis, used when a series has `right_axis`.
    pub y2_label: String,
    pub series: Vec<Series>,
    /// Logarithmic left axis (gradient norms that span decades). Non-positive values are left out.
    pub log_y: bool,
    pub legend: Legend,
}

impl Chart {
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        Chart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            y2_label: String::new(),
            series: Vec::new(),
            log_y: false,
            legend: Legend::UpperRight,
        }
    }

    /// Whether any series has a drawable point.
    pub fn has_data(&self) -> bool {
        self.series.iter().any(|s| self.points(s).next().is_some())
    }

    /// A series' points as plotted: y in log10 on a logarithmic axis.
    fn points<'a>(&'a self, s: &'a Series) -> impl Iterator<Item = (f64, f64)> + 'a {
        let log = self.log_y && !s.right_axis;
        s.finite_points()
            .filter(move |&(_, y)| !log || y > 0.0)
            .map(move |(x, y)| (x, if log { y.log10() } else { y }))
    }
}

/// A rendered chart.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub png: Vec<u8>,
    pub svg: String,
    /// `None` when drawn with text; else why text had to be left out.
    pub textless_because: Option<String>,
}

/// The files of a written chart.
#[derive(Debug, Clone)]
pub struct Written {
    pub png: PathBuf,
    pub svg_path: PathBuf,
    pub svg: String,
    pub textless_because: Option<String>,
}

/// Renders `chart`, without text if text cannot be drawn.
pub fn render(chart: &Chart) -> Result<Rendered, String> {
    match render_with(chart, true) {
        Ok((png, svg)) => Ok(Rendered { png, svg, textless_because: None }),
        Err(with_text) => match render_with(chart, false) {
            Ok((png, svg)) => Ok(Rendered { png, svg, textless_because: Some(with_text) }),
            Err(without) => Err(format!("{with_text}; without text: {without}")),
        },
    }
}

/// Renders `chart` and writes `<dir>/<stem>.png` and `<dir>/<stem>.svg` atomically.
pub fn write(chart: &Chart, dir: &Path, stem: &str) -> Result<Written, ReportError> {
    let png = dir.join(format!("{stem}.png"));
    let svg_path = dir.join(format!("{stem}.svg"));
    let r = render(chart).map_err(|message| ReportError::Plot { path: png.clone(), message })?;
    write_atomic(&png, &r.png)?;
    write_atomic(&svg_path, r.svg.as_bytes())?;
    Ok(Written { png, svg_path, svg: r.svg, textless_because: r.textless_because })
}

fn render_with(chart: &Chart, text: bool) -> Result<(Vec<u8>, String), String> {
    let (w, h) = SIZE;
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        draw(&root, chart, text)?;
        root.present().map_err(|e| e.to_string())?;
    }
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        &rgb,
        w,
        h,
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|e| format!("PNG encoding: {e}"))?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        draw(&root, chart, text)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok((png, svg))
}

/// Lines longer than this are thinned before drawing: a 960-pixel-wide chart cannot show more, and the SVG
/// (embedded in report.html) stays small for runs of many thousand steps.
const MAX_LINE_POINTS: usize = 2_000;

/// Thins `points` to at most about `max` by keeping, of each run of consecutive points, the lowest and the
/// highest (in x order), so spikes stay visible.
fn envelope(points: Vec<(f64, f64)>, max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max {
        return points;
    }
    let bucket = points.len().div_ceil(max / 2);
    let mut out = Vec::with_capacity(max + 2);
    for chunk in points.chunks(bucket) {
        let lo = chunk
            .iter()
            .enumerate()
            .min_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
            .map(|(i, _)| i)
            .unwrap_or(0);
        let hi = chunk
            .iter()
            .enumerate()
            .max_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
            .map(|(i, _)| i)
            .unwrap_or(0);
        let (first, second) = if lo <= hi { (lo, hi) } else { (hi, lo) };
        out.push(chunk[first]);
        if second != first {
            out.push(chunk[second]);
        }
    }
    out
}

/// Thins a smooth line (an EMA, a schedule) to at most about `max` evenly spaced points, the last one kept.
fn stride(points: Vec<(f64, f64)>, max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max {
        return points;
    }
    let step = points.len().div_ceil(max);
    let last = points[points.len() - 1];
    let mut out: Vec<(f64, f64)> = points.into_iter().step_by(step).collect();
    if out.last() != Some(&last) {
        out.push(last);
    }
    out
}

/// Axis range of values with a little headroom; a single value gets a unit-wide range around it.
fn padded(values: impl Iterator<Item = f64>, margin: f64) -> Option<std::ops::Range<f64>> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return None;
    }
    if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
        let half = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return Some(lo - half..hi + half);
    }
    let pad = (hi - lo) * margin;
    Some(lo - pad..hi + pad)
}

/// Tick labels: the shortest exact form of each tick (plotters puts ticks on multiples of 1, 2 or 5 × 10^k),
/// scientific for very small or large magnitudes; values within rounding noise of 0 print as "0".
fn tick_format(range: &std::ops::Range<f64>) -> impl Fn(&f64) -> String {
    let zero = (range.end - range.start).abs() * 1e-9;
    move |v: &f64| {
        let v = *v;
        if v.abs() <= zero {
            return "0".to_string();
        }
        let trim = |s: String| -> String {
            if s.contains('.') {
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                s
            }
        };
        if v.abs() >= 1e6 || v.abs() < 1e-3 {
            let sci = format!("{v:.3e}");
            let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
            format!("{}e{exponent}", trim(mantissa.to_string()))
        } else {
            trim(format!("{v:.6}"))
        }
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart,
    text: bool,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;

    let left: Vec<&Series> = chart.series.iter().filter(|s| !s.right_axis).collect();
    let right: Vec<&Series> = chart.series.iter().filter(|s| s.right_axis).collect();
    let x_range = padded(chart.series.iter().flat_map(|s| chart.points(s)).map(|p| p.0), 0.02)
        .ok_or_else(|| "no finite data point to plot".to_string())?;
    let y_range =
        padded(left.iter().flat_map(|s| chart.points(s)).map(|p| p.1), 0.06).unwrap_or(0.0..1.0);
    let has_right = right.iter().any(|s| chart.points(s).next().is_some());
    let y2_range =
        padded(right.iter().flat_map(|s| chart.points(s)).map(|p| p.1), 0.06).unwrap_or(0.0..1.0);

    // Legend entries drawn in a side panel: (label, style, colour) of each labelled series with data.
    let outside: Vec<(&str, Style, RGBColor)> = chart
        .series
        .iter()
        .filter(|s| text && chart.legend == Legend::Outside && !s.label.is_empty())
        .filter(|s| chart.points(s).next().is_some())
        .map(|s| (s.label.as_str(), s.style, color(s.color)))
        .collect();
    let (plot_area, legend_area) = if outside.is_empty() {
        (root.clone(), None)
    } else {
        let font = legend_font();
        let mut longest = 0u32;
        for (label, _, _) in &outside {
            longest = longest.max(root.estimate_text_size(label, &font).map_err(e)?.0);
        }
        let width = (longest as f64 + 60.0).clamp(120.0, SIZE.0 as f64 * 0.4) as i32;
        let (a, b) = root.split_horizontally(SIZE.0 as i32 - width);
        (a, Some(b))
    };

    let mut builder = ChartBuilder::on(&plot_area);
    builder.margin(18);
    if text {
        builder
            .caption(&chart.title, ("sans-serif", 24))
            .x_label_area_size(48)
            .y_label_area_size(78);
        if has_right {
            builder.right_y_label_area_size(78);
        }
    }
    let primary = builder.build_cartesian_2d(x_range.clone(), y_range.clone()).map_err(e)?;
    let mut ctx = primary.set_secondary_coord(x_range.clone(), y2_range.clone());

    let x_fmt = |v: &f64| format!("{v:.0}");
    let y_fmt = tick_format(&y_range);
    let log_fmt = |v: &f64| significant(10f64.powf(*v), 2);
    let y2_fmt = tick_format(&y2_range);
    {
        let mut mesh = ctx.configure_mesh();
        mesh.light_line_style(RGBColor(0xee, 0xee, 0xee))
            .bold_line_style(RGBColor(0xd8, 0xd8, 0xd8));
        if text {
            mesh.x_desc(chart.x_label.as_str())
                .y_desc(chart.y_label.as_str())
                .label_style(("sans-serif", 15))
                .axis_desc_style(("sans-serif", 16))
                .x_label_formatter(&x_fmt)
                .x_labels(10)
                .y_labels(8);
            if chart.log_y {
                mesh.y_label_formatter(&log_fmt);
            } else {
                mesh.y_label_formatter(&y_fmt);
            }
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(e)?;
    }
    if !text {
        // Without tick labels there are no axis lines either; a frame keeps the plotting area readable.
        let frame = [(x_range.start, y_range.start), (x_range.end, y_range.end)];
        ctx.draw_series(std::iter::once(Rectangle::new(frame, RGBColor(0x88, 0x88, 0x88))))
            .map_err(e)?;
    }
    if has_right && text {
        ctx.configure_secondary_axes()
            .y_desc(chart.y2_label.as_str())
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 16))
            .y_label_formatter(&y2_fmt)
            .y_labels(8)
            .draw()
            .map_err(e)?;
    }

    // Right-axis series are mapped onto the left axis' scale so that one drawing path serves both.
    let to_left = |y: f64| {
        y_range.start
            + (y - y2_range.start) / (y2_range.end - y2_range.start) * (y_range.end - y_range.start)
    };
    let mut labelled = false;
    for s in &chart.series {
        let pts: Vec<(f64, f64)> =
            chart.points(s).map(|(x, y)| (x, if s.right_axis { to_left(y) } else { y })).collect();
        let pts = match s.style {
            Style::Faint => envelope(pts, MAX_LINE_POINTS),
            Style::Line => stride(pts, MAX_LINE_POINTS),
            Style::LineDots | Style::Dots => pts,
        };
        if pts.is_empty() {
            // Nothing to draw, and a legend entry for it would suggest otherwise.
            continue;
        }
        let c = color(s.color);
        if s.style == Style::LineDots {
            ctx.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled()))).map_err(e)?;
        }
        let anno = match s.style {
            Style::Line | Style::LineDots => {
                let line = ShapeStyle { color: c.to_rgba(), filled: false, stroke_width: 2 };
                ctx.draw_series(LineSeries::new(pts.iter().copied(), line)).map_err(e)?
            }
            Style::Faint => {
                let faint = ShapeStyle { color: c.mix(0.35), filled: false, stroke_width: 1 };
                ctx.draw_series(LineSeries::new(pts.iter().copied(), faint)).map_err(e)?
            }
            Style::Dots => {
                let dots = pts.iter().map(|&p| {
                    EmptyElement::at(p)
                        + Circle::new((0, 0), 6, c.filled())
                        + Circle::new((0, 0), 6, BLACK)
                });
                ctx.draw_series(dots).map_err(e)?
            }
        };
        if text && !s.label.is_empty() && chart.legend != Legend::Outside {
            labelled = true;
            let anno = anno.label(s.label.as_str());
            match s.style {
                Style::Dots => anno.legend(move |(x, y)| {
                    EmptyElement::at((x + 10, y))
                        + Circle::new((0, 0), 5, c.filled())
                        + Circle::new((0, 0), 5, BLACK)
                }),
                Style::Faint => anno.legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.mix(0.35).stroke_width(2))
                }),
                Style::Line | Style::LineDots => anno.legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3))
                }),
            };
        }
    }
    if labelled {
        ctx.configure_series_labels()
            .position(match chart.legend {
                Legend::UpperLeft => SeriesLabelPosition::UpperLeft,
                Legend::UpperRight => SeriesLabelPosition::UpperRight,
                Legend::LowerRight | Legend::Outside => SeriesLabelPosition::LowerRight,
            })
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(0xbb, 0xbb, 0xbb))
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(e)?;
    }
    if let Some(area) = legend_area {
        draw_side_legend(&area, &outside).map_err(e)?;
    }
    Ok(())
}

fn legend_font() -> TextStyle<'static> {
    ("sans-serif", 14).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center))
}

/// A legend in its own drawing area: one row per entry, a sample of the line or dot, then the label.
fn draw_side_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(&str, Style, RGBColor)],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let font = legend_font();
    for (i, (label, style, c)) in entries.iter().enumerate() {
        let y = 72 + 24 * i as i32;
        let (x0, x1) = (4, 28);
        match style {
            Style::Dots => {
                area.draw(&Circle::new((x0 + 12, y), 5, c.filled()))?;
                area.draw(&Circle::new((x0 + 12, y), 5, BLACK))?;
            }
            Style::Faint => {
                area.draw(&PathElement::new(vec![(x0, y), (x1, y)], c.mix(0.35).stroke_width(2)))?
            }
            Style::Line => {
                area.draw(&PathElement::new(vec![(x0, y), (x1, y)], c.stroke_width(3)))?
            }
            Style::LineDots => {
                area.draw(&PathElement::new(vec![(x0, y), (x1, y)], c.stroke_width(3)))?;
                area.draw(&Circle::new(((x0 + x1) / 2, y), 3, c.filled()))?;
            }
        }
        area.draw(&Text::new(label.to_string(), (x1 + 8, y), font.clone()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_handles_flat_and_empty_data() {
        assert_eq!(padded([3.0, 3.0].into_iter(), 0.1), Some(2.7..3.3));
        assert_eq!(padded([0.0].into_iter(), 0.1), Some(-1.0..1.0));
        assert_eq!(padded(std::iter::empty(), 0.1), None);
        let r = padded([0.0, 10.0].into_iter(), 0.1).unwrap();
        assert!((r.start + 1.0).abs() < 1e-12 && (r.end - 11.0).abs() < 1e-12);
    }

    #[test]
    fn tick_labels_are_short_and_exact() {
        assert_eq!(tick_format(&(0.0..100.0))(&25.0), "25");
        assert_eq!(tick_format(&(0.0..1.0))(&0.30000000000000004), "0.3");
        assert_eq!(tick_format(&(-1.0..1.0))(&1e-17), "0");
        assert_eq!(tick_format(&(0.0..0.0001))(&0.000015), "1.5e-5");
        assert_eq!(tick_format(&(0.0..3e6))(&2.5e6), "2.5e6");
    }

    #[test]
    fn thinning_keeps_extremes_ends_and_the_budget() {
        let pts: Vec<(f64, f64)> = (0..10_000).map(|i| (i as f64, (i % 7) as f64)).collect();
        let mut spiky = pts.clone();
        spiky[5_003].1 = 1e6;
        let thin = envelope(spiky, 2_000);
        assert!(thin.len() <= 2_000, "{}", thin.len());
        assert!(thin.contains(&(5_003.0, 1e6)), "the spike survives");
        assert!(thin.windows(2).all(|w| w[0].0 < w[1].0), "x order kept");
        assert_eq!(thin.first(), Some(&(0.0, 0.0)));
        assert_eq!(envelope(pts[..10].to_vec(), 2_000).len(), 10);
        let thin = stride(pts.clone(), 2_000);
        assert!(thin.len() <= 2_001 && thin.len() >= 1_000, "{}", thin.len());
        assert_eq!((thin[0], thin[thin.len() - 1]), (pts[0], pts[9_999]));
    }

    #[test]
    fn log_axis_drops_non_positive_values() {
        let mut c = Chart::new("t", "x", "y");
        c.log_y = true;
        c.series.push(Series::new("g", vec![(1.0, 0.0), (2.0, 100.0)], 0, Style::Line));
        let pts: Vec<_> = c.points(&c.series[0]).collect();
        assert_eq!(pts, vec![(2.0, 2.0)]);
    }
}
