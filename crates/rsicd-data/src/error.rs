//! The one error type of the crate. Every variant names the file (and the line, row or key when there is one)
//! and says what was expected, so a user can fix the input without reading code.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    // The io error is part of the message, not a `source`: `{:#}` chains would print it twice.
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },

    #[error("{}: cannot decode image: {message}", path.display())]
    Decode { path: PathBuf, message: String },

    /// Malformed file contents. `location` is "line 12, column 3", "row 7", `images[3].sentences` and so on.
    #[error("{}: {location}: {message}", path.display())]
    Parse { path: PathBuf, location: String, message: String },

    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },

    /// A download failed; `message` says why and what to do (credentials, retry, checksum).
    #[error("download {url}: {message}")]
    Download { url: String, message: String },

    #[error("{0}")]
    Invalid(String),
}

#[allow(dead_code)] // constructors used by the dataset readers
impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io { path: path.into(), error: source }
    }

    pub(crate) fn parse(
        path: impl Into<PathBuf>,
        location: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        DataError::Parse { path: path.into(), location: location.into(), message: message.into() }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        DataError::Format { path: path.into(), message: message.into() }
    }
}
