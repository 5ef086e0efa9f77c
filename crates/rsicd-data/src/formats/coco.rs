//! COCO captions JSON: `{"images": [{"id", "file_name", "split"?}], "annotations": [{"image_id", "caption"}]}`.
//! COCO files rarely carry a split; when images have no `split`, it is taken from the file name
//! (`captions_val2017.json` -> val) and otherwise left unknown for validation to report.
use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::{read_json, Json};
use crate::{DataError, Item, Split};

pub fn read(path: &Path) -> Result<Vec<Item>, DataError> {
    let root = read_json(path)?;
    let j = Json { path };
    let images = j.array(j.field(&root, "(top level)", "images")?, "images")?;
    let annotations = j.array(j.field(&root, "(top level)", "annotations")?, "annotations")?;
    let file_split = path.file_name().and_then(|n| Split::from_file_name(&n.to_string_lossy()));
    let id_of = |v: &Value, at: &str| -> Result<String, DataError> {
        match v {
            Value::Number(n) => Ok(n.to_string()),
            Value::String(s) => Ok(s.clone()),
            other => Err(j.wrong(other, at, "a number or string id")),
        }
    };
    let mut items = Vec::with_capacity(images.len());
    let mut index: HashMap<String, usize> = HashMap::with_capacity(images.len());
    for (i, img) in images.iter().enumerate() {
        let at = format!("images[{i}]");
        let id = id_of(j.field(img, &at, "id")?, &format!("{at}.id"))?;
        let split = match j.opt_string(img, &at, "split")? {
            Some(s) => Split::parse(&s),
            None => file_split.clone().unwrap_or_else(|| Split::Other("(missing)".into())),
        };
        if index.insert(id.clone(), items.len()).is_some() {
            return Err(DataError::parse(
                path,
                format!("{at}.id"),
                format!("image id {id} appears twice"),
            ));
        }
        items.push(Item {
            id: 0,
            filename: j.string(img, &at, "file_name")?,
            split,
            captions: Vec::new(),
            class: j.opt_string(img, &at, "class")?,
            source: None,
            image_path: None,
            image_bytes: None,
            origin: at,
        });
    }
    for (k, ann) in annotations.iter().enumerate() {
        let at = format!("annotations[{k}]");
        let image_id = id_of(j.field(ann, &at, "image_id")?, &format!("{at}.image_id"))?;
        let caption = j.string(ann, &at, "caption")?;
        let Some(&slot) = index.get(&image_id) else {
            return Err(DataError::parse(
                path,
                format!("{at}.image_id"),
                format!("no image has id {image_id}"),
            ));
        };
        items[slot].captions.push(caption);
    }
    Ok(items)
}
