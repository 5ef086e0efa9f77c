//! The seed project's RISCM layout: `captions.csv` with the header `source,split,image,caption_1..caption_5`
//! next to an image folder (`resized/`). Columns are found by name, so their order does not matter; every
//! `caption_<n>` column is used (in n order), `source` is optional.
use std::path::Path;

use super::csv;
use crate::{DataError, Item, Split};

pub fn read(path: &Path) -> Result<Vec<Item>, DataError> {
    let text = super::read_text(path)?;
    let records = csv::parse(&text)
        .map_err(|(line, msg)| DataError::parse(path, format!("line {line}"), msg))?;
    let Some((header, rows)) = records.split_first() else {
        return Err(DataError::parse(path, "line 1", "the file is empty: expected a header line"));
    };
    let col = |name: &str| header.fields.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
    let missing = |name: &str| {
        DataError::parse(
            path,
            format!("line {} (header)", header.line),
            format!("missing column {name:?}; the header has {:?}", header.fields),
        )
    };
    let image = col("image").or_else(|| col("filename")).ok_or_else(|| missing("image"))?;
    let split = col("split").ok_or_else(|| missing("split"))?;
    let source = col("source");
    let mut caption_cols: Vec<(u32, usize)> = header
        .fields
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let h = h.trim().to_ascii_lowercase();
            if h == "caption" {
                Some((0, i))
            } else {
                h.strip_prefix("caption_").and_then(|n| n.parse().ok()).map(|n| (n, i))
            }
        })
        .collect();
    caption_cols.sort();
    if caption_cols.is_empty() {
        return Err(missing("caption_1"));
    }
    let mut items = Vec::with_capacity(rows.len());
    for rec in rows {
        if rec.fields.len() != header.fields.len() {
            return Err(DataError::parse(
                path,
                format!("line {}", rec.line),
                format!("{} fields, but the header has {}", rec.fields.len(), header.fields.len()),
            ));
        }
        let f = |i: usize| rec.fields[i].trim().to_string();
        items.push(Item {
            id: 0,
            filename: f(image),
            split: Split::parse(&f(split)),
            // Empty cells are kept: validation reports them rather than hiding a short row.
            captions: caption_cols.iter().map(|&(_, i)| rec.fields[i].clone()).collect(),
            class: None,
            source: source.map(f).filter(|s| !s.is_empty()),
            image_path: None,
            image_bytes: None,
            origin: format!("line {}", rec.line),
        });
    }
    Ok(items)
}
