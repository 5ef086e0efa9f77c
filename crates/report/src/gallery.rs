//! The prediction gallery: for a sample of evaluated images, a thumbnail, the predicted caption and the
//! references, so that a reader sees what the numbers mean.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::base64::data_uri;
use crate::error::ReportError;
use crate::html::escape;
use crate::metrics_log::EvalRecord;
use crate::predictions::{read_predictions, read_references, references_path, Prediction};
use crate::thumbnail::{jpeg_thumbnail, THUMBNAIL_SIDE};

/// How many images the gallery shows at most.
pub const GALLERY_SIZE: usize = 24;

/// One gallery card.
#[derive(Debug, Clone)]
pub struct Entry {
    pub image_id: String,
    pub prediction: String,
    pub references: Vec<String>,
    /// A `data:image/jpeg;base64,…` URI.
    pub thumbnail: Option<String>,
    /// Why there is no thumbnail, when an image was expected.
    pub image_problem: Option<String>,
}

/// The gallery of one evaluation, with notes about anything missing.
#[derive(Debug, Clone, Default)]
pub struct Gallery {
    pub entries: Vec<Entry>,
    /// "test split, step 1200: 24 of 1093 images".
    pub caption: String,
    pub notes: Vec<String>,
}

/// `max` predictions evenly spread over the file (its first and last included), in file order: a sample that
/// covers the whole split rather than its first few images.
pub fn spread<T>(items: &[T], max: usize) -> Vec<&T> {
    let n = items.len();
    if n <= max {
        return items.iter().collect();
    }
    if max == 1 {
        return vec![&items[0]];
    }
    (0..max).map(|i| &items[i * (n - 1) / (max - 1)]).collect()
}

/// The predictions file of `eval`: the path the trainer logged, else the conventional name.
pub fn predictions_path(run_dir: &Path, eval: &EvalRecord) -> PathBuf {
    match &eval.predictions {
        Some(p) => run_dir.join(p),
        None => {
            run_dir.join("predictions").join(format!("step-{:06}-{}.json", eval.step, eval.split))
        }
    }
}

/// Where images are looked up: `image_root` as given, else relative to the run directory.
pub fn resolve_image_root(run_dir: &Path, image_root: Option<&str>) -> Option<PathBuf> {
    let root = Path::new(image_root?);
    if root.is_dir() {
        return Some(root.to_path_buf());
    }
    let inside = run_dir.join(root);
    inside.is_dir().then_some(inside)
}

/// Builds the gallery of `eval`. A missing predictions or references file gives notes; a malformed one is an
/// error naming it.
pub fn build(
    run_dir: &Path,
    eval: &EvalRecord,
    image_root: Option<&str>,
) -> Result<Gallery, ReportError> {
    let mut gallery = Gallery::default();
    let pred_path = predictions_path(run_dir, eval);
    if !pred_path.exists() {
        gallery.notes.push(format!("gallery: predictions file {} not found", pred_path.display()));
        return Ok(gallery);
    }
    let predictions: Vec<Prediction> = read_predictions(&pred_path)?;
    let ref_path = references_path(run_dir, &eval.split);
    let references = read_references(&ref_path)?;
    if references.is_none() {
        gallery.notes.push(format!("gallery: references file {} not found", ref_path.display()));
    }
    let root = resolve_image_root(run_dir, image_root);
    match (image_root, &root) {
        (None, _) => gallery.notes.push(
            "gallery: run.json has no image_root, so captions are shown without images".into(),
        ),
        (Some(r), None) => gallery
            .notes
            .push(format!("gallery: image_root {r} not found, captions shown without images")),
        _ => {}
    }
    let chosen = spread(&predictions, GALLERY_SIZE);
    gallery.caption = format!(
        "{} split, step {}: {} of {} images, evenly spread over the predictions file",
        eval.split,
        eval.step,
        chosen.len(),
        crate::format::grouped(predictions.len() as u64)
    );
    for p in chosen {
        let refs =
            references.as_ref().and_then(|r| r.get(&p.image_id)).cloned().unwrap_or_default();
        let (thumbnail, image_problem) = match &root {
            Some(root) => {
                let path = root.join(&p.image_id);
                match jpeg_thumbnail(&path, THUMBNAIL_SIDE) {
                    Ok(jpeg) => (Some(data_uri("image/jpeg", &jpeg)), None),
                    Err(e) => (None, Some(format!("{}: {e}", path.display()))),
                }
            }
            None => (None, None),
        };
        gallery.entries.push(Entry {
            image_id: p.image_id.clone(),
            prediction: p.caption.clone(),
            references: refs,
            thumbnail,
            image_problem,
        });
    }
    let unreadable = gallery.entries.iter().filter(|e| e.image_problem.is_some()).count();
    if unreadable > 0 {
        let first =
            gallery.entries.iter().find_map(|e| e.image_problem.clone()).unwrap_or_default();
        gallery
            .notes
            .push(format!("gallery: {unreadable} image(s) could not be read (first: {first})"));
    }
    Ok(gallery)
}

/// The gallery as HTML cards.
pub fn to_html(gallery: &Gallery) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<p class=\"caption\">{}</p>\n<div class=\"gallery\">",
        escape(&gallery.caption)
    );
    for e in &gallery.entries {
        out.push_str("<div class=\"card\">");
        match (&e.thumbnail, &e.image_problem) {
            (Some(uri), _) => {
                let _ = write!(out, "<img src=\"{uri}\" alt=\"{}\">", escape(&e.image_id));
            }
            (None, Some(problem)) => {
                let _ = write!(
                    out,
                    "<div class=\"noimg\" title=\"{}\">image unreadable</div>",
                    escape(problem)
                );
            }
            (None, None) => {}
        }
        let _ = write!(
            out,
            "<div class=\"id\">{}</div><div class=\"pred\">{}</div>",
            escape(&e.image_id),
            escape(&e.prediction)
        );
        if e.references.is_empty() {
            out.push_str("<div class=\"caption\">no references</div>");
        } else {
            out.push_str("<ol>");
            for r in &e.references {
                let _ = write!(out, "<li>{}</li>", escape(r));
            }
            out.push_str("</ol>");
        }
        out.push_str("</div>\n");
    }
    out.push_str("</div>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_covers_the_ends_evenly() {
        let v: Vec<usize> = (0..100).collect();
        let s: Vec<usize> = spread(&v, 5).into_iter().copied().collect();
        assert_eq!(s, [0, 24, 49, 74, 99]);
        assert_eq!(spread(&v[..3], 5).len(), 3);
        assert_eq!(spread(&v, 1), [&0]);
        let s: Vec<usize> = spread(&v, 24).into_iter().copied().collect();
        let mut d = s.clone();
        d.dedup();
        assert_eq!(d.len(), 24);
    }
}
