//! The huggingface_hub cache layout (https://huggingface.co/docs/huggingface_hub/guides/manage-cache), exactly,
//! so Python and this crate share one cache:
//!
//! ```text
//! <cache>/models--<org>--<name>/            (datasets--<org>--<name> for a dataset)
//!     refs/<revision>                        the commit sha the revision pointed to when last resolved
//!     blobs/<etag>                           file contents, named by ETag (an LFS file's sha256, else its git sha1)
//!     blobs/<etag>.incomplete                a download under way or cut short, resumed with Range
//!     snapshots/<commit>/<file>              -> ../../blobs/<etag>, a relative symlink
//! <cache>/.locks/models--<org>--<name>/<etag>.lock
//! ```
use std::path::{Path, PathBuf};

use crate::{HubError, Repo};

/// One repo's folder in the cache.
pub(crate) struct CacheRepo {
    pub dir: PathBuf,
    lock_dir: PathBuf,
}

/// A full commit sha, as `refs/<revision>` holds and `snapshots/` is named by.
pub(crate) fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

impl CacheRepo {
    pub fn new(cache_dir: &Path, repo: &Repo) -> CacheRepo {
        let folder = repo.cache_folder();
        CacheRepo { dir: cache_dir.join(&folder), lock_dir: cache_dir.join(".locks").join(folder) }
    }

    pub fn snapshot(&self, commit: &str) -> PathBuf {
        self.dir.join("snapshots").join(commit)
    }

    pub fn blob(&self, etag: &str) -> PathBuf {
        self.dir.join("blobs").join(etag)
    }

    /// Where huggingface_hub keeps the bytes of a download until they are complete.
    pub fn incomplete(&self, etag: &str) -> PathBuf {
        self.dir.join("blobs").join(format!("{etag}.incomplete"))
    }

    pub fn lock_file(&self, etag: &str) -> PathBuf {
        self.lock_dir.join(format!("{etag}.lock"))
    }

    /// The commit `revision` stands for without asking the hub: itself when it is a commit sha, else what
    /// `refs/<revision>` recorded.
    pub fn commit_of(&self, revision: &str) -> Option<String> {
        if is_commit(revision) {
            return Some(revision.to_ascii_lowercase());
        }
        let text = std::fs::read_to_string(self.dir.join("refs").join(revision)).ok()?;
        Some(text.trim().to_string()).filter(|c| is_commit(c))
    }

    /// The cached snapshot folder of `revision`, if there is one.
    pub fn cached_snapshot(&self, revision: &str) -> Option<PathBuf> {
        self.commit_of(revision).map(|c| self.snapshot(&c)).filter(|d| d.is_dir())
    }

    /// Records `refs/<revision>` = `commit` (written whole, then renamed: a reader never sees half a sha).
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<(), HubError> {
        if is_commit(revision) || self.commit_of(revision).as_deref() == Some(commit) {
            return Ok(());
        }
        let path = self.dir.join("refs").join(revision);
        let tmp = sibling_tmp(&path);
        let parent = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent).map_err(|e| HubError::io(parent, e))?;
        std::fs::write(&tmp, commit).map_err(|e| HubError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| HubError::io(&path, e))
    }

    /// `snapshots/<commit>/<file>` -> `../../blobs/<etag>` (one more `..` per folder in `file`), made under a
    /// temporary name and renamed over whatever was there.
    pub fn link(&self, commit: &str, file: &str, etag: &str) -> Result<PathBuf, HubError> {
        let pointer = self.snapshot(commit).join(file);
        let parent = pointer.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent).map_err(|e| HubError::io(parent, e))?;
        let ups = 2 + file.matches('/').count();
        let target = PathBuf::from("../".repeat(ups)).join("blobs").join(etag);
        let tmp = sibling_tmp(&pointer);
        let _ = std::fs::remove_file(&tmp);
        make_link(&target, &self.blob(etag), &tmp).map_err(|e| HubError::io(&tmp, e))?;
        std::fs::rename(&tmp, &pointer).map_err(|e| HubError::io(&pointer, e))?;
        Ok(pointer)
    }
}

/// `<dir>/.<name>.<pid>.tmp`: unique per process, hidden, and on the same filesystem for the rename.
fn sibling_tmp(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

#[cfg(unix)]
fn make_link(relative_target: &Path, _blob: &Path, at: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(relative_target, at)
}

/// Without symlinks huggingface_hub keeps a copy in the snapshot; a hard link is the same bytes for free.
#[cfg(not(unix))]
fn make_link(_relative_target: &Path, blob: &Path, at: &Path) -> std::io::Result<()> {
    std::fs::hard_link(blob, at).or_else(|_| std::fs::copy(blob, at).map(|_| ()))
}

/// Holds huggingface_hub's lock on one blob until dropped: `flock(2)` on `.locks/<folder>/<etag>.lock`, the call
/// Python's `filelock` makes on Unix, so neither this process, another rank, nor Python writes the same
/// `.incomplete` at the same time.
pub(crate) struct BlobLock {
    _file: std::fs::File,
}

impl BlobLock {
    pub fn acquire(path: &Path) -> Result<BlobLock, HubError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| HubError::io(parent, e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| HubError::io(path, e))?;
        if !try_lock(&file, false).map_err(|e| HubError::io(path, e))? {
            eprintln!(
                "waiting for another process downloading the same file (lock {})",
                path.display()
            );
            try_lock(&file, true).map_err(|e| HubError::io(path, e))?;
        }
        Ok(BlobLock { _file: file })
    }
}

/// Takes the lock: `Ok(false)` when another holder has it and `wait` is false.
#[cfg(unix)]
fn try_lock(file: &std::fs::File, wait: bool) -> std::io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    let op = if wait { libc::LOCK_EX } else { libc::LOCK_EX | libc::LOCK_NB };
    // SAFETY: flock on a descriptor this function borrows; the lock goes with the descriptor when it is closed.
    if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    match err.kind() {
        std::io::ErrorKind::WouldBlock if !wait => Ok(false),
        _ => Err(err),
    }
}

#[cfg(not(unix))]
fn try_lock(_file: &std::fs::File, _wait: bool) -> std::io::Result<bool> {
    Ok(true)
}
