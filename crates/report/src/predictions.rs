//! Prediction files of an evaluation: `predictions/step-<step>-<split>.json` (COCO results,
//! `[{"image_id", "caption"}]`) and `predictions/references-<split>.json` (`{"<image_id>": ["ref", …]}`).

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::ReportError;
use crate::json_file;

/// One predicted caption.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub image_id: String,
    pub caption: String,
}

#[derive(Deserialize)]
struct RawPrediction {
    image_id: ImageId,
    caption: String,
}

/// COCO ids are integers; this project uses file names. Both are accepted.
#[derive(Deserialize)]
#[serde(untagged)]
enum ImageId {
    Name(String),
    Number(u64),
}

/// Reads a COCO results file.
pub fn read_predictions(path: &Path) -> Result<Vec<Prediction>, ReportError> {
    let raw: Vec<RawPrediction> = json_file::read(path)?;
    Ok(raw
        .into_iter()
        .map(|p| Prediction {
            image_id: match p.image_id {
                ImageId::Name(s) => s,
                ImageId::Number(n) => n.to_string(),
            },
            caption: p.caption,
        })
        .collect())
}

/// Reads a references file; `Ok(None)` when it does not exist.
pub fn read_references(path: &Path) -> Result<Option<HashMap<String, Vec<String>>>, ReportError> {
    json_file::read_optional(path)
}

/// Path of the references of `split` inside a run directory.
pub fn references_path(run_dir: &Path, split: &str) -> std::path::PathBuf {
    run_dir.join("predictions").join(format!("references-{split}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_string_and_numeric_ids_and_names_bad_keys() {
        let dir = std::env::temp_dir().join(format!("report-pred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("p.json");
        std::fs::write(&p, r#"[{"image_id":"a.jpg","caption":"x"},{"image_id":7,"caption":"y"}]"#)
            .unwrap();
        let preds = read_predictions(&p).unwrap();
        assert_eq!(preds[1], Prediction { image_id: "7".into(), caption: "y".into() });
        std::fs::write(&p, "[{\"image_id\":\"a.jpg\",\n\"caption\":3}]").unwrap();
        let e = read_predictions(&p).unwrap_err().to_string();
        assert!(
            e.contains("p.json") && e.contains("at key `[0].caption`") && e.contains("line 2"),
            "{e}"
        );
        assert!(read_references(&dir.join("absent.json")).unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
