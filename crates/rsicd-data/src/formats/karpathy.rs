//! Karpathy-style caption JSON (`dataset_rsicd.json`, `dataset_ucm.json`, `dataset_sydney*.json`, COCO Karpathy
//! splits): `{"images": [{"filename", "split", "sentences": [{"raw", "tokens"}], "class"?, "filepath"?}]}`.
//! Captions come from `raw`; `tokens` is ignored because it is unreliable in RSICD (typos fixed in one and not
//! the other, punctuation dropped).
use std::path::Path;

use super::{read_json, Json};
use crate::{DataError, Item, Split};

pub fn read(path: &Path) -> Result<Vec<Item>, DataError> {
    let root = read_json(path)?;
    let j = Json { path };
    let images = j.array(
        j.field(&root, "(top level)", "images").map_err(|_| {
            DataError::parse(
                path,
                "(top level)",
                "missing \"images\": not a Karpathy-style caption file",
            )
        })?,
        "images",
    )?;
    let mut items = Vec::with_capacity(images.len());
    for (i, img) in images.iter().enumerate() {
        let at = format!("images[{i}]");
        let filename = j.string(img, &at, "filename")?;
        let filename = match j.opt_string(img, &at, "filepath")? {
            Some(dir) if !dir.is_empty() => format!("{dir}/{filename}"),
            _ => filename,
        };
        let split = match j.opt_string(img, &at, "split")? {
            Some(s) => Split::parse(&s),
            None => Split::Other("(missing)".into()),
        };
        let sentences = j.array(j.field(img, &at, "sentences")?, &format!("{at}.sentences"))?;
        let captions = sentences
            .iter()
            .enumerate()
            .map(|(k, s)| j.string(s, &format!("{at}.sentences[{k}]"), "raw"))
            .collect::<Result<Vec<_>, _>>()?;
        items.push(Item {
            id: 0,
            filename,
            split,
            captions,
            class: j.opt_string(img, &at, "class")?,
            source: j.opt_string(img, &at, "source")?,
            image_path: None,
            image_bytes: None,
            origin: at,
        });
    }
    Ok(items)
}
