//! Errors of weight loading; each names the file and the key it is about.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    // Messages include their cause instead of chaining it as a `source`: `{:#}` would print it twice.
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}: not a valid safetensors file ({msg}); the file may be truncated or damaged, download it again")]
    Format { path: PathBuf, msg: String },
    #[error("{path}: {msg}")]
    Index { path: PathBuf, msg: String },
    #[error("no weights found in {path}: expected model.safetensors, model.safetensors.index.json or *.safetensors")]
    NoWeights { path: PathBuf },
    #[error("missing key `{key}` in {path}{}", more_suffix(*.more))]
    MissingKey { key: String, path: PathBuf, more: usize },
    #[error("unexpected key `{key}` in {path}: it matches no parameter of this model{}", more_suffix(*.more))]
    UnexpectedKey { key: String, path: PathBuf, more: usize },
    #[error("key `{key}` in {path} has shape {found:?}, the model expects {expected:?}")]
    Shape { key: String, path: PathBuf, expected: Vec<i64>, found: Vec<i64> },
    #[error("key `{key}` in {path} has dtype {dtype}, expected a floating-point tensor (F32, F16 or BF16)")]
    DType { key: String, path: PathBuf, dtype: String },
    #[error("unsupported dtype `{0}`: expected one of f32, bf16, f16 (or `auto` to keep the stored dtype)")]
    BadDTypeRequest(String),
    #[error("{path}: tensors are stored in several dtypes ({found}); ask for one explicitly (f32, bf16 or f16)")]
    MixedDTypes { path: PathBuf, found: String },
    #[error("libtorch: {0}")]
    Torch(tch::TchError),
}

crate::torch_error_from!(WeightsError);

/// `impl From<tch::TchError>` into an error type's `Torch(tch::TchError)` variant. By hand rather than with
/// thiserror's `#[from]`, which would also make it the error's `source`, and `{:#}` would print the libtorch message
/// twice ("libtorch: X: X").
#[macro_export]
macro_rules! torch_error_from {
    ($t:ty) => {
        impl From<tch::TchError> for $t {
            fn from(e: tch::TchError) -> Self {
                Self::Torch(e)
            }
        }
    };
}

fn more_suffix(more: usize) -> String {
    if more == 0 {
        String::new()
    } else {
        format!(" (and {more} more)")
    }
}
