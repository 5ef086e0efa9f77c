//! Pinned snapshots, for data kept in hub repos (`cargo xtask download rsicd`): a branch moves, and a file of it
//! may be replaced under the same name, so a dataset that results are reported on is fixed by a commit and by the
//! size and sha256 of each of its files.
//!
//! - **Pinned** (pins given): the revision must be a commit sha, and exactly the pinned files are fetched (no file
//!   list is asked for: the pins are the list). Each must have its pinned size and sha256. For a file still to be
//!   downloaded, what the hub announces (its size, and an LFS file's sha256, which is its ETag) is compared before
//!   any byte is fetched, so a wrong pin fails at once rather than after gigabytes; the file in the snapshot is then
//!   checked. A snapshot that already holds every pinned file costs no request at all.
//! - **Unpinned** (no pins): every file the filter selects at the revision is fetched as [`crate::download`] does,
//!   and the commit the revision pointed to is recorded with each file's size and sha256: a pin, ready to be copied
//!   into a table.
//!
//! A file's sha256 is computed on the file in the snapshot, except for an LFS file downloaded by this very call:
//! the download already checked its bytes against the sha256 the hub announced (`fetch::Fetched`), and hashing
//! several GB twice buys nothing.
use std::path::{Path, PathBuf};

use crate::cache::{is_commit, CacheRepo};
use crate::error::PinMismatch;
use crate::{fetch, http, HubError, Options, Repo};

/// One file of a snapshot: its path in the repo (`data/train-00000-of-00001.parquet`), its size in bytes and the
/// lowercase hex sha256 of its contents. What a pin says, and what [`download_pinned`] found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pin {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// The result of [`download_pinned`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// `<cache>/<repo folder>/snapshots/<commit>`.
    pub dir: PathBuf,
    /// The commit the files belong to: the pinned one, or the one the revision pointed to.
    pub commit: String,
    /// The files, as found: in pin order when pinned (each equal to its pin), else sorted by path.
    pub files: Vec<Pin>,
    /// True when the files were checked against pins, false when they were only recorded.
    pub pinned: bool,
}

/// `repo` at `revision`: with `pins`, exactly those files of that commit, each checked (`allow` is not used: the
/// pins are the selection); without, every file `allow` selects, each recorded with the commit (module header). Offline, or with the hub unreachable, an unpinned
/// download records what the cached snapshot of the revision holds; a pinned one needs every pinned file cached.
pub fn download_pinned(
    repo: &Repo,
    revision: &str,
    pins: &[Pin],
    allow: &dyn Fn(&str) -> bool,
    opts: &Options,
) -> Result<Snapshot, HubError> {
    if pins.is_empty() {
        unpinned(repo, revision, allow, opts)
    } else {
        pinned(repo, revision, pins, opts)
    }
}

fn pinned(repo: &Repo, revision: &str, pins: &[Pin], opts: &Options) -> Result<Snapshot, HubError> {
    check_pins(repo, revision, pins)?;
    let commit = revision.to_ascii_lowercase();
    let cache = CacheRepo::new(&opts.cache_dir, repo);
    let dir = cache.snapshot(&commit);
    let missing: Vec<&str> =
        pins.iter().map(|p| p.path.as_str()).filter(|f| !dir.join(f).is_file()).collect();
    if opts.offline && !missing.is_empty() {
        return Err(HubError::Offline {
            repo: repo.id.clone(),
            revision: commit.clone(),
            path: cache.dir.clone(),
            why: format!("the snapshot lacks {}", missing.join(", ")),
        });
    }
    // Building the client sends nothing: a snapshot that holds every pinned file costs no request.
    let client = http::Client::new(opts, repo);
    let mut files = Vec::with_capacity(pins.len());
    for pin in pins {
        let verified = if missing.contains(&pin.path.as_str()) {
            let meta = client.file_meta(&commit, &pin.path)?;
            check_announced(repo, &commit, pin, &meta)?;
            fetch::fetch_described(&client, &cache, &commit, &pin.path, &meta)?.verified_sha256
        } else {
            None
        };
        let found = record(&dir, &pin.path, verified)?;
        check_found(repo, &commit, pin, &found, &dir)?;
        files.push(found);
    }
    Ok(Snapshot { dir, commit, files, pinned: true })
}

fn unpinned(
    repo: &Repo,
    revision: &str,
    allow: &dyn Fn(&str) -> bool,
    opts: &Options,
) -> Result<Snapshot, HubError> {
    let resolved = crate::resolve_snapshot(repo, revision, allow, opts)?;
    let mut files = match resolved.files {
        Some(files) => files,
        // The cache answered alone: what the snapshot holds is all there is to record.
        None => crate::snapshot_files(&resolved.dir)?
            .into_iter()
            .filter(|f| allow(f))
            .map(|f| (f, None))
            .collect(),
    };
    if files.is_empty() {
        return Err(HubError::Incomplete {
            repo: repo.id.clone(),
            revision: revision.to_string(),
            dir: resolved.dir,
            missing: vec!["every file selected here (it holds none)".into()],
        });
    }
    files.sort();
    let files = files
        .into_iter()
        .map(|(file, verified)| record(&resolved.dir, &file, verified))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Snapshot { dir: resolved.dir, commit: resolved.commit, files, pinned: false })
}

/// Pins describe one commit's files: a commit sha as the revision, well-formed values, each path once.
fn check_pins(repo: &Repo, revision: &str, pins: &[Pin]) -> Result<(), HubError> {
    let invalid = |why: String| HubError::InvalidPins { repo: repo.id.clone(), why };
    if !is_commit(revision) {
        return Err(invalid(format!(
            "the revision {revision:?} is not a full commit sha (40 hex digits): pins describe the files of one \
             commit, and a branch or tag moves"
        )));
    }
    for (i, pin) in pins.iter().enumerate() {
        if !crate::is_safe_file_name(&pin.path) {
            return Err(invalid(format!(
                "the path {:?} would leave the snapshot folder",
                pin.path
            )));
        }
        if !fetch::is_sha256(&pin.sha256) {
            return Err(invalid(format!(
                "{}: the sha256 {:?} is not 64 hex digits",
                pin.path, pin.sha256
            )));
        }
        if pins[..i].iter().any(|p| p.path == pin.path) {
            return Err(invalid(format!("{} is pinned twice", pin.path)));
        }
    }
    Ok(())
}

/// What the hub announces for a file still to be downloaded, against its pin.
fn check_announced(
    repo: &Repo,
    commit: &str,
    pin: &Pin,
    meta: &http::FileMeta,
) -> Result<(), HubError> {
    let sha256 = fetch::is_sha256(&meta.etag).then(|| meta.etag.to_ascii_lowercase());
    let fix = "The pin is wrong: a commit's files never change on the hub. Download the same commit unpinned to see \
               the real values";
    compare(
        (repo, commit, pin),
        (meta.size, sha256.as_deref()),
        "as the hub announces it (nothing was downloaded)",
        fix,
    )
}

/// The file in the snapshot against its pin.
fn check_found(
    repo: &Repo,
    commit: &str,
    pin: &Pin,
    found: &Pin,
    dir: &Path,
) -> Result<(), HubError> {
    let entry = dir.join(&pin.path);
    // The bytes live in the blob the snapshot links to: that is the file to delete.
    let blob = std::fs::canonicalize(&entry).unwrap_or(entry);
    let fix = format!(
        "Either the pin is wrong (a commit's files never change on the hub: download the same commit unpinned to \
         see the real values), or the cached copy was altered: delete {} and run the same command again",
        blob.display()
    );
    compare(
        (repo, commit, pin),
        (Some(found.size), Some(&found.sha256)),
        &format!("in {}", blob.display()),
        &fix,
    )
}

/// A file's size and sha256 (each where known) against its pin; a mismatch says where the found value comes from
/// (`source`) and what to do (`fix`).
fn compare(
    (repo, commit, pin): (&Repo, &str, &Pin),
    (size, sha256): (Option<u64>, Option<&str>),
    source: &str,
    fix: &str,
) -> Result<(), HubError> {
    let mismatch = |what, expected: String, found: String| {
        Err(HubError::PinMismatch(Box::new(PinMismatch {
            repo: repo.id.clone(),
            commit: commit.to_string(),
            file: pin.path.clone(),
            what,
            expected,
            found: format!("{found} {source}"),
            fix: fix.to_string(),
        })))
    };
    if let Some(size) = size.filter(|&s| s != pin.size) {
        return mismatch("size", format!("{} bytes", pin.size), format!("{size} bytes"));
    }
    match sha256 {
        Some(sha) if !sha.eq_ignore_ascii_case(&pin.sha256) => {
            mismatch("sha256", pin.sha256.clone(), sha.to_ascii_lowercase())
        }
        _ => Ok(()),
    }
}

/// `file` of the snapshot: its size, and its sha256 (`verified`, when the download already checked it, else
/// computed).
fn record(dir: &Path, file: &str, verified: Option<String>) -> Result<Pin, HubError> {
    let path = dir.join(file);
    let size = std::fs::metadata(&path).map_err(|e| HubError::io(&path, e))?.len();
    let sha256 = match verified {
        Some(sha) => sha,
        None => fetch::sha256_file(&path)?,
    };
    Ok(Pin { path: file.to_string(), size, sha256 })
}
