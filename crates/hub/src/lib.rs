//! Hugging Face hub models and datasets, in the huggingface_hub cache (layout:
//! https://huggingface.co/docs/huggingface_hub/guides/manage-cache; environment variables:
//! https://huggingface.co/docs/huggingface_hub/package_reference/environment_variables), so what Python already
//! downloaded is used where it lies and what this crate downloads is Python's too.
//!
//! [`resolve_model`] turns what a user gave as a model into a directory, in this order: an existing local
//! directory; a hub id (`google/paligemma-3b-pt-224`, optionally `@revision`) whose cached snapshot already holds
//! the model files (no request at all); else a download of the missing files through the hub's HTTP API into that
//! same cache ([`download`]). `HF_HUB_OFFLINE=1` stops at the cache. Downloads resume with `Range` (after a cut
//! connection or Ctrl-C), are checked against the announced size and an LFS file's sha256, and reach their final
//! name only when complete (docs/hub.md).
//!
//! [`download_pinned`] serves datasets kept in hub repos (`cargo xtask download rsicd`): a commit and the exact
//! files with their sizes and sha256, checked; or, unpinned, the files of a revision with the commit and sha256
//! recorded so they can be pinned. [`export`] puts a snapshot's files into a plain directory (`--out`).
//!
//! No libtorch here: xtask uses this crate to download before libtorch is installed.
mod cache;
mod error;
mod export;
mod fetch;
mod http;
mod options;
mod pin;

use std::path::{Path, PathBuf};

pub use error::{HubError, PinMismatch};
pub use export::{check_out, export, snapshot_files, LINK_FROM_BYTES};
pub use options::{Options, DEFAULT_ENDPOINT};
pub use pin::{download_pinned, Pin, Snapshot};

use cache::CacheRepo;

/// The kind of hub repo; each has its own cache folders (`models--…`, `datasets--…`) and URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoType {
    Model,
    Dataset,
}

impl RepoType {
    fn name(self) -> &'static str {
        match self {
            RepoType::Model => "model",
            RepoType::Dataset => "dataset",
        }
    }

    /// `/api/<this>/…`
    fn api_segment(self) -> &'static str {
        match self {
            RepoType::Model => "models",
            RepoType::Dataset => "datasets",
        }
    }

    /// Before the repo id in page and `resolve` URLs.
    fn url_prefix(self) -> &'static str {
        match self {
            RepoType::Model => "",
            RepoType::Dataset => "datasets/",
        }
    }
}

/// A hub repo: `<org>/<name>` and its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub id: String,
    pub kind: RepoType,
}

impl Repo {
    pub fn model(id: impl Into<String>) -> Repo {
        Repo { id: id.into(), kind: RepoType::Model }
    }

    pub fn dataset(id: impl Into<String>) -> Repo {
        Repo { id: id.into(), kind: RepoType::Dataset }
    }

    /// `models--<org>--<name>`, huggingface_hub's `repo_folder_name`.
    fn cache_folder(&self) -> String {
        format!("{}s--{}", self.kind.name(), self.id.replace('/', "--"))
    }
}

/// The default revision, as in huggingface_hub.
pub const DEFAULT_REVISION: &str = "main";

/// True for `<org>/<name>` or `<org>/<name>@<revision>` that is not an existing path: what the model loaders
/// treat as a hub id rather than a directory.
pub fn is_repo_id(spec: &str) -> bool {
    !Path::new(spec).exists() && split_spec(spec).is_ok()
}

/// `<org>/<name>[@revision]` into the id and the revision (default `main`), checked as the hub checks ids
/// (huggingface_hub's `validate_repo_id`: letters, digits, `-`, `_`, `.`; no `--` or `..`; at most 96 characters
/// a part).
fn split_spec(spec: &str) -> Result<(&str, &str), String> {
    let (id, revision) = spec.split_once('@').unwrap_or((spec, DEFAULT_REVISION));
    let Some((org, name)) = id.split_once('/') else {
        return Err("a hub id has the form <org>/<name>".into());
    };
    for part in [org, name] {
        let ok_chars = part.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        let ok_ends = !part.starts_with(['-', '.']) && !part.ends_with(['-', '.']);
        if part.is_empty()
            || part.len() > 96
            || !ok_chars
            || !ok_ends
            || part.contains("--")
            || part.contains("..")
        {
            return Err(format!("{part:?} is not a valid hub name"));
        }
    }
    check_revision(revision)?;
    Ok((id, revision))
}

/// A revision names a file under `refs/`: it must stay inside it.
fn check_revision(revision: &str) -> Result<(), String> {
    let bad_part = revision.split('/').any(|p| p.is_empty() || p == "." || p == "..");
    if bad_part || revision.contains('\\') {
        return Err(format!("{revision:?} is not a usable revision"));
    }
    Ok(())
}

/// What a PaliGemma model directory needs from a hub repo: the top-level `*.safetensors` (one file or the shards)
/// and `*.json` (config.json, model.safetensors.index.json, tokenizer.json and the small processor, generation and
/// tokenizer configs); not `*.bin`, `*.npz`, `tokenizer.model`, README.md, .gitattributes or anything in a
/// subfolder.
pub fn default_model_files(file: &str) -> bool {
    !file.contains('/') && (file.ends_with(".safetensors") || file.ends_with(".json"))
}

/// A model directory for `spec`: the directory itself when it exists; for a hub id, its cached snapshot when that
/// already holds config.json, tokenizer.json and every weight file (no request at all), else the snapshot after
/// downloading what [`default_model_files`] selects. With `opts.offline` the cache must hold it.
pub fn resolve_model(spec: &str, opts: &Options) -> Result<PathBuf, HubError> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let invalid = |why: String| HubError::InvalidSpec { spec: spec.to_string(), why };
    if path.exists() {
        return Err(invalid("it is a file, not a directory".into()));
    }
    let (id, revision) = split_spec(spec).map_err(invalid)?;
    let repo = Repo::model(id);
    let cache = CacheRepo::new(&opts.cache_dir, &repo);
    if let Some(dir) = cache.cached_snapshot(revision) {
        let missing = missing_model_files(&dir);
        if missing.is_empty() {
            return Ok(dir);
        }
        if opts.offline {
            return Err(HubError::Incomplete {
                repo: repo.id,
                revision: revision.into(),
                dir,
                missing,
            });
        }
    }
    download(&repo, revision, &default_model_files, opts)
}

/// The files a model directory lacks: config.json, tokenizer.json, and the weights (every shard the
/// `model.safetensors.index.json` names, else `model.safetensors`).
fn missing_model_files(dir: &Path) -> Vec<String> {
    let index = dir.join("model.safetensors.index.json");
    let weights = match std::fs::read_to_string(&index) {
        Ok(text) => shards(&text).unwrap_or_else(|| vec![index_name()]),
        Err(_) => vec!["model.safetensors".to_string()],
    };
    ["config.json".to_string(), "tokenizer.json".to_string()]
        .into_iter()
        .chain(weights)
        .filter(|f| !dir.join(f).is_file())
        .collect()
}

/// Named as missing when the index cannot be read: it has to be downloaded again.
fn index_name() -> String {
    "a readable model.safetensors.index.json".to_string()
}

/// The shard files of a safetensors index (`weight_map` values), each once.
fn shards(index_json: &str) -> Option<Vec<String>> {
    let value: serde_json::Value = serde_json::from_str(index_json).ok()?;
    let mut files: Vec<String> = value
        .get("weight_map")?
        .as_object()?
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    files.sort();
    files.dedup();
    Some(files)
}

/// The snapshot of `repo` at `revision` (a branch, tag or commit) with every file `allow` selects, downloading
/// what the cache lacks, as huggingface_hub's `snapshot_download`: one request for the revision's commit and
/// file list, then one per missing file; files already linked in the snapshot cost nothing. Returns
/// `<cache>/<repo folder>/snapshots/<commit>`.
///
/// Offline (`opts.offline`), or when the hub cannot be reached at all, the cached snapshot of the revision is
/// returned as it is (the hub being unreachable is reported on stderr).
pub fn download(
    repo: &Repo,
    revision: &str,
    allow: &dyn Fn(&str) -> bool,
    opts: &Options,
) -> Result<PathBuf, HubError> {
    resolve_snapshot(repo, revision, allow, opts).map(|r| r.dir)
}

/// What [`download`] found, for callers that record it ([`download_pinned`]).
pub(crate) struct Resolved {
    pub dir: PathBuf,
    pub commit: String,
    /// Each wanted file of the commit, with its sha256 when this call downloaded it and checked it against its LFS
    /// ETag (`fetch::Fetched`). `None` when the cache answered alone (offline, or the hub unreachable): the
    /// commit's file list is then unknown, and the snapshot holds what it holds.
    pub files: Option<Vec<(String, Option<String>)>>,
}

pub(crate) fn resolve_snapshot(
    repo: &Repo,
    revision: &str,
    allow: &dyn Fn(&str) -> bool,
    opts: &Options,
) -> Result<Resolved, HubError> {
    let spec = format!("{}@{revision}", repo.id);
    split_spec(&spec).map_err(|why| HubError::InvalidSpec { spec: spec.clone(), why })?;
    let cache = CacheRepo::new(&opts.cache_dir, repo);
    let cached = || {
        let commit = cache.commit_of(revision)?;
        let dir = Some(cache.snapshot(&commit)).filter(|d| d.is_dir())?;
        Some(Resolved { dir, commit, files: None })
    };
    if opts.offline {
        return cached().ok_or_else(|| offline_miss(repo, revision, &cache));
    }
    let client = http::Client::new(opts, repo);
    let info = match client.revision_info(revision) {
        Ok(info) => info,
        Err(e @ HubError::Unreachable { .. }) => {
            let Some(resolved) = cached() else { return Err(e) };
            client.note(&format!("{e}; using the cached snapshot {}", resolved.dir.display()));
            return Ok(resolved);
        }
        Err(e) => return Err(e),
    };
    cache.write_ref(revision, &info.sha)?;
    let files = fetch_missing(&client, &cache, &info, allow)?;
    Ok(Resolved { dir: cache.snapshot(&info.sha), commit: info.sha, files: Some(files) })
}

/// Every wanted file of the commit that the snapshot lacks, fetched and linked; each wanted file with the sha256
/// checked while downloading it, if it was.
fn fetch_missing(
    client: &http::Client,
    cache: &CacheRepo,
    info: &http::RevisionInfo,
    allow: &dyn Fn(&str) -> bool,
) -> Result<Vec<(String, Option<String>)>, HubError> {
    let wanted: Vec<&String> = info.files.iter().filter(|f| allow(f)).collect();
    if wanted.is_empty() {
        let some: Vec<&String> = info.files.iter().take(10).collect();
        let message =
            format!("none of its {} files is wanted here (first ones: {some:?})", info.files.len());
        return Err(client.download_error(&client.page(), "(no file selected)", message));
    }
    let snapshot = cache.snapshot(&info.sha);
    let mut files = Vec::with_capacity(wanted.len());
    for file in wanted {
        check_file_name(client, &info.sha, file)?;
        let verified = if snapshot.join(file).is_file() {
            None
        } else {
            fetch::fetch_file(client, cache, &info.sha, file)?.verified_sha256
        };
        files.push((file.clone(), verified));
    }
    Ok(files)
}

/// A file name from the hub becomes a path under the snapshot: it must stay inside it.
fn check_file_name(client: &http::Client, commit: &str, file: &str) -> Result<(), HubError> {
    if !is_safe_file_name(file) {
        let url = client.resolve_url(commit, file);
        let message = "the file name would leave the snapshot folder; refused".to_string();
        return Err(client.download_error(&url, file, message));
    }
    Ok(())
}

/// A repo-relative path with no empty, `.` or `..` part and no backslash: joined to a snapshot folder, it stays
/// inside it.
pub(crate) fn is_safe_file_name(file: &str) -> bool {
    !(file.split('/').any(|p| p.is_empty() || p == "." || p == "..") || file.contains('\\'))
}

fn offline_miss(repo: &Repo, revision: &str, cache: &CacheRepo) -> HubError {
    let why = match cache.commit_of(revision) {
        None => format!("no refs/{revision} and no snapshot"),
        Some(commit) => format!("refs/{revision} points to {commit}, whose snapshot is missing"),
    };
    HubError::Offline {
        repo: repo.id.clone(),
        revision: revision.to_string(),
        path: cache.dir.clone(),
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_and_revisions() {
        assert_eq!(
            split_spec("google/paligemma-3b-pt-224"),
            Ok(("google/paligemma-3b-pt-224", "main"))
        );
        assert_eq!(
            split_spec("google/paligemma2-3b-pt-448@refs/pr/1"),
            Ok(("google/paligemma2-3b-pt-448", "refs/pr/1"))
        );
        for bad in [
            "paligemma",
            "a/b/c",
            "./x",
            "/abs/dir",
            "a--b/c",
            "a/b..c",
            "a/-b",
            "a/b@",
            "a/b@../x",
            "a/b c",
        ] {
            assert!(split_spec(bad).is_err(), "{bad} accepted");
        }
        assert!(is_repo_id("google/paligemma-3b-pt-224"));
        assert!(!is_repo_id(env!("CARGO_MANIFEST_DIR")));
        // Shaped like an id, but a path that exists (tests run in the crate's folder).
        assert!(split_spec("src/lib.rs").is_ok() && !is_repo_id("src/lib.rs"));
    }

    #[test]
    fn cache_folders_and_the_default_filter() {
        assert_eq!(
            Repo::model("google/paligemma-3b-pt-224").cache_folder(),
            "models--google--paligemma-3b-pt-224"
        );
        assert_eq!(Repo::dataset("arampacha/rsicd").cache_folder(), "datasets--arampacha--rsicd");
        for yes in [
            "config.json",
            "tokenizer.json",
            "model-00001-of-00003.safetensors",
            "model.safetensors.index.json",
        ] {
            assert!(default_model_files(yes), "{yes}");
        }
        for no in [
            "pytorch_model.bin",
            "README.md",
            ".gitattributes",
            "tokenizer.model",
            "x.npz",
            "onnx/config.json",
        ] {
            assert!(!default_model_files(no), "{no}");
        }
    }

    #[test]
    fn shards_of_an_index() {
        let index = r#"{"weight_map": {"a": "m-2.safetensors", "b": "m-1.safetensors", "c": "m-1.safetensors"}}"#;
        assert_eq!(
            shards(index),
            Some(vec!["m-1.safetensors".to_string(), "m-2.safetensors".to_string()])
        );
        assert_eq!(shards("{}"), None);
    }
}
