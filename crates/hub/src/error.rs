//! What can go wrong, each message naming the repo, the file, the URL or path, and what to do about it.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error(
        "{spec:?} is neither an existing local directory nor a hub id: {why} (a model is a directory with \
         config.json, or a hub id <org>/<name>[@revision] such as google/paligemma-3b-pt-224)"
    )]
    InvalidSpec { spec: String, why: String },

    /// HTTP 401/403: gated (PaliGemma is), private, or a refused token.
    #[error("{repo}: access refused (HTTP {status} from {url}). {fix}")]
    Access { repo: String, url: String, status: u16, fix: String },

    /// HTTP 404: the repo, the revision or the file does not exist.
    #[error("{repo}: {what} not found (HTTP 404 from {url}). {fix}")]
    NotFound { repo: String, what: String, url: String, fix: String },

    /// `HF_HUB_OFFLINE` is set and the cache cannot answer.
    #[error(
        "{repo}@{revision}: {why} in the Hugging Face cache ({path}), and HF_HUB_OFFLINE is set so nothing is \
         downloaded. Unset HF_HUB_OFFLINE (or download it where the hub is reachable: `cargo xtask download-model \
         {repo} --revision {revision}` for a model, `cargo xtask download <name>` for a dataset of its --list), or \
         point HF_HUB_CACHE / HF_HOME at the cache that holds it"
    )]
    Offline { repo: String, revision: String, path: PathBuf, why: String },

    /// No connection to the hub at all (DNS, refused, TLS, no answer in time), and nothing cached to fall back on.
    #[error(
        "{repo}: cannot reach the hub at {url}: {message}. Check the network (a proxy is taken from HTTPS_PROXY), \
         HF_ENDPOINT for a mirror, or set HF_HUB_OFFLINE=1 to use only what is cached"
    )]
    Unreachable { repo: String, url: String, message: String },

    /// A request or a download failed for good (after the retries for transient failures).
    #[error("{repo}: {file}: {message} ({url})")]
    Download { repo: String, file: String, url: String, message: String },

    /// The bytes received are not the file the hub announced; they were deleted.
    #[error(
        "{repo}: {file}: {what}: got {got}, the hub announced {expected}. The copy was deleted; run the same \
         command again to download it afresh"
    )]
    Corrupt { repo: String, file: String, what: &'static str, got: String, expected: String },

    /// The hub answered something this client cannot use.
    #[error("{repo}: unexpected answer from {url}: {message}")]
    Protocol { repo: String, url: String, message: String },

    /// `Options::should_stop` asked to stop; the bytes received so far are kept for a resume (`part` is empty when
    /// none had been asked for yet).
    #[error("{file}: stopped{}; run the same command again to resume", kept(part, *bytes))]
    Interrupted { file: String, part: PathBuf, bytes: u64 },

    /// The cached or downloaded directory lacks files a model needs.
    #[error(
        "{repo}@{revision}: {} lacks {}: the repo does not hold them, or the download was cut short (run the \
         same command again)",
        dir.display(),
        missing.join(", ")
    )]
    Incomplete { repo: String, revision: String, dir: PathBuf, missing: Vec<String> },

    /// Pins that cannot describe a snapshot: a revision that is not a commit sha, a malformed sha256, a path
    /// leaving the snapshot, a file pinned twice. Found before any request.
    #[error("{repo}: unusable pins: {why}")]
    InvalidPins { repo: String, why: String },

    /// A file of a pinned snapshot is not what its pin says (boxed: the details would make every `Result` of
    /// this crate larger).
    #[error("{0}")]
    PinMismatch(Box<PinMismatch>),

    /// An export directory that cannot take a snapshot's files: not a directory, or not empty without overwrite.
    #[error("--out {}: {why}", out.display())]
    Out { out: PathBuf, why: String },
}

/// The details of [`HubError::PinMismatch`]: `found` says where the value comes from (what the hub announces,
/// before anything is downloaded; or the file in the cache), `fix` what to do.
#[derive(Debug)]
pub struct PinMismatch {
    pub repo: String,
    pub commit: String,
    pub file: String,
    /// `size` or `sha256`.
    pub what: &'static str,
    pub expected: String,
    pub found: String,
    pub fix: String,
}

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let PinMismatch { repo, commit, file, what, expected, found, fix } = self;
        write!(
            f,
            "{repo}@{commit}: {file}: {what} mismatch: pinned {expected}, found {found}. {fix}"
        )
    }
}

impl HubError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        HubError::Io { path: path.into(), source }
    }
}

/// Where an interrupted download's bytes are, for its message.
fn kept(part: &std::path::Path, bytes: u64) -> String {
    if part.as_os_str().is_empty() {
        " before its download began".to_string()
    } else {
        format!(" with {bytes} bytes kept in {}", part.display())
    }
}
