//! Reading a JSON file into a typed value with an error that names the file, the key path and the line.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::ReportError;

/// Reads and parses `path`; `Ok(None)` when the file does not exist.
pub fn read_optional<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, ReportError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReportError::io(path, e)),
    };
    parse_str(path, &text).map(Some)
}

/// Reads and parses `path`, which must exist.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|e| ReportError::io(path, e))?;
    parse_str(path, &text)
}

/// Parses `text` (the content of `path`, named in errors).
pub fn parse_str<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ReportError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value: T = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| ReportError::Json { path: path.to_path_buf(), message: describe(&e) })?;
    de.end().map_err(|e| ReportError::Json { path: path.to_path_buf(), message: e.to_string() })?;
    Ok(value)
}

/// "at key `a.b[2]`: <serde message>", or the serde message alone when the fault is at the top level.
pub fn describe(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    if path.is_empty() || path == "." {
        e.inner().to_string()
    } else {
        format!("at key `{path}`: {}", e.inner())
    }
}
