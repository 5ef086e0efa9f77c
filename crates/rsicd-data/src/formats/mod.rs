//! Readers for each annotation format, plus the shared plumbing: UTF-8 checking with line numbers and JSON
//! access helpers whose errors name the key path (`images[3].sentences[1].raw`).
pub mod coco;
pub mod csv;
pub mod hf_parquet;
pub mod karpathy;
pub mod riscm_csv;

use std::path::Path;

use serde_json::Value;

use crate::DataError;

/// Reads a text file, rejecting non-UTF-8 with the line and column of the first bad byte.
pub(crate) fn read_text(path: &Path) -> Result<String, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        let col = good.len() - good.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
        DataError::parse(
            path,
            format!("line {line}, column {col}"),
            "not valid UTF-8 (save the file as UTF-8)",
        )
    })
}

pub(crate) fn read_json(path: &Path) -> Result<Value, DataError> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|e| {
        DataError::parse(
            path,
            format!("line {}, column {}", e.line(), e.column()),
            format!("invalid JSON: {e}"),
        )
    })
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Typed access to JSON with errors that name the file and key path.
pub(crate) struct Json<'a> {
    pub path: &'a Path,
}

impl Json<'_> {
    pub fn array<'v>(&self, v: &'v Value, at: &str) -> Result<&'v Vec<Value>, DataError> {
        v.as_array().ok_or_else(|| self.wrong(v, at, "an array"))
    }

    pub fn field<'v>(&self, obj: &'v Value, at: &str, key: &str) -> Result<&'v Value, DataError> {
        if !obj.is_object() {
            return Err(self.wrong(obj, at, "an object"));
        }
        obj.get(key).ok_or_else(|| DataError::parse(self.path, format!("{at}.{key}"), "missing"))
    }

    pub fn string(&self, obj: &Value, at: &str, key: &str) -> Result<String, DataError> {
        let v = self.field(obj, at, key)?;
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| self.wrong(v, &format!("{at}.{key}"), "a string"))
    }

    /// An optional string-ish field (numbers are accepted and printed, `null` counts as absent).
    pub fn opt_string(
        &self,
        obj: &Value,
        at: &str,
        key: &str,
    ) -> Result<Option<String>, DataError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(v) => Err(self.wrong(v, &format!("{at}.{key}"), "a string")),
        }
    }

    pub fn wrong(&self, v: &Value, at: &str, expected: &str) -> DataError {
        DataError::parse(self.path, at, format!("expected {expected}, found {}", type_name(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_reports_line_and_column() {
        let p = std::env::temp_dir().join(format!("rsicd-utf8-{}.json", std::process::id()));
        std::fs::write(&p, b"{\n  \"a\": \"caf\xe9\"\n}").unwrap();
        let err = read_text(&p).unwrap_err().to_string();
        let _ = std::fs::remove_file(&p);
        assert!(err.contains("line 2, column 12") && err.contains("UTF-8"), "{err}");
    }
}
