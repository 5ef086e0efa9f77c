//! The Hugging Face parquet export of RSICD (`arampacha/rsicd` layout): one file per split
//! (`data/train-00000-of-00001.parquet`, `valid-…`, `test-…`) with columns `filename` (string), `captions`
//! (list of strings) and `image` (struct `{bytes: binary, path: string}`), the images embedded as JPEG bytes.
//! Read with the `parquet` crate's record API; the split comes from the file name (or a `split` column).
use std::path::Path;
use std::sync::Arc;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row};

use crate::{DataError, Item, Split};

pub fn read(path: &Path) -> Result<Vec<Item>, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let reader = SerializedFileReader::new(file)
        .map_err(|e| DataError::format(path, format!("not a parquet file: {e}")))?;
    let columns: Vec<String> = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    let has = |c: &str| columns.iter().any(|n| n == c);
    for required in ["filename", "captions"] {
        if !has(required) {
            return Err(DataError::format(
                path,
                format!("missing column {required:?}; the file has {columns:?}"),
            ));
        }
    }
    let file_split = path.file_name().and_then(|n| Split::from_file_name(&n.to_string_lossy()));
    // The record reader panics on some corrupt pages instead of returning an error.
    let rows =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<Vec<Row>, String> {
            let iter = reader.get_row_iter(None).map_err(|e| e.to_string())?;
            iter.collect::<Result<Vec<Row>, _>>().map_err(|e| e.to_string())
        }))
        .map_err(|_| DataError::format(path, "corrupt parquet data"))?
        .map_err(|e| DataError::format(path, format!("cannot read rows: {e}")))?;

    let mut items = Vec::with_capacity(rows.len());
    for (r, row) in rows.iter().enumerate() {
        let at = |col: &str| format!("row {r}, column {col:?}");
        let mut filename = None;
        let mut captions = None;
        let mut bytes = None;
        let mut split = file_split.clone();
        for (name, field) in row.get_column_iter() {
            match (name.as_str(), field) {
                ("filename", Field::Str(s)) => filename = Some(s.clone()),
                ("captions", Field::ListInternal(list)) => {
                    let mut caps = Vec::with_capacity(list.len());
                    for (k, f) in list.elements().iter().enumerate() {
                        match f {
                            Field::Str(s) => caps.push(s.clone()),
                            other => {
                                return Err(wrong(
                                    path,
                                    &format!("{} [{k}]", at("captions")),
                                    "a string",
                                    other,
                                ))
                            }
                        }
                    }
                    captions = Some(caps);
                }
                ("image", Field::Group(g)) => {
                    for (k, v) in g.get_column_iter() {
                        if let ("bytes", Field::Bytes(b)) = (k.as_str(), v) {
                            bytes = Some(Arc::<[u8]>::from(b.data()));
                        }
                    }
                }
                ("image", Field::Bytes(b)) => bytes = Some(Arc::<[u8]>::from(b.data())),
                ("image", Field::Null) => {}
                ("split", Field::Str(s)) => split = Some(Split::parse(s)),
                ("filename", other) => return Err(wrong(path, &at("filename"), "a string", other)),
                ("captions", other) => {
                    return Err(wrong(path, &at("captions"), "a list of strings", other))
                }
                ("image", other) => {
                    return Err(wrong(path, &at("image"), "a struct {bytes, path}", other))
                }
                _ => {}
            }
        }
        let filename = filename.ok_or_else(|| DataError::parse(path, at("filename"), "null"))?;
        items.push(Item {
            id: 0,
            filename,
            split: split.unwrap_or_else(|| Split::Other("(missing)".into())),
            captions: captions.ok_or_else(|| DataError::parse(path, at("captions"), "null"))?,
            class: None,
            source: None,
            image_path: None,
            image_bytes: bytes,
            origin: format!(
                "{} row {r}",
                path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
            ),
        });
    }
    Ok(items)
}

fn wrong(path: &Path, at: &str, expected: &str, found: &Field) -> DataError {
    let found = match found {
        Field::Null => "null".to_string(),
        Field::Str(_) => "a string".to_string(),
        Field::Bytes(_) => "binary".to_string(),
        Field::ListInternal(_) => "a list".to_string(),
        Field::Group(_) => "a struct".to_string(),
        other => format!("{other:?}").split('(').next().unwrap_or("another type").to_lowercase(),
    };
    DataError::parse(path, at, format!("expected {expected}, found {found}"))
}
