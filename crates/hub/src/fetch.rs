//! One file of a snapshot into the cache, as huggingface_hub's `hf_hub_download` does it: the blob is named by
//! its ETag, so a file shared by several commits (or already fetched by Python) is downloaded once; bytes go to
//! `blobs/<etag>.incomplete` under the blob's lock and are resumed from there with `Range` after a cut
//! connection, a stall or Ctrl-C; the result is checked against the announced size and, for an LFS file (whose
//! ETag is its sha256), the sha256, then fsynced and renamed to `blobs/<etag>`, and only then linked from the
//! snapshot. A partial file never carries the final name.
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::cache::{BlobLock, CacheRepo};
use crate::http::{header, Client, Fail, FileMeta};
use crate::HubError;

/// The most bytes accepted for a file whose size the hub did not announce (an endless body must not fill the
/// disk); PaliGemma's largest shards are about 5 GB.
const MAX_UNANNOUNCED: u64 = 64 << 30;

/// What [`fetch_file`] learnt about the file it linked into the snapshot.
pub(crate) struct Fetched {
    /// The sha256 of the bytes when this call downloaded them and checked them against an LFS ETag (which is that
    /// sha256): a caller that needs the hash has it without reading the file again. `None` when the blob was
    /// already in the cache (nothing was checked now) or the file is not in LFS (its ETag is a git sha1).
    pub verified_sha256: Option<String>,
}

/// Downloads `file` of `commit` into the cache unless its blob is there, and links it from the snapshot.
pub(crate) fn fetch_file(
    client: &Client,
    cache: &CacheRepo,
    commit: &str,
    file: &str,
) -> Result<Fetched, HubError> {
    let meta = client.file_meta(commit, file)?;
    fetch_described(client, cache, commit, file, &meta)
}

/// [`fetch_file`] for a file whose metadata the caller already asked for (and may have checked: a pinned size or
/// sha256 is compared with what the hub announces before any byte is fetched).
pub(crate) fn fetch_described(
    client: &Client,
    cache: &CacheRepo,
    commit: &str,
    file: &str,
    meta: &FileMeta,
) -> Result<Fetched, HubError> {
    let blob = cache.blob(&meta.etag);
    let mut downloaded = false;
    if !blob.is_file() {
        let _lock = BlobLock::acquire(&cache.lock_file(&meta.etag))?;
        // Another process may have finished it while this one waited for the lock.
        if !blob.is_file() {
            download_blob(client, cache, meta, file)?;
            downloaded = true;
        }
    }
    cache.link(commit, file, &meta.etag)?;
    // `download_blob` verified the bytes against an LFS ETag before renaming them to the blob.
    let verified_sha256 =
        (downloaded && is_sha256(&meta.etag)).then(|| meta.etag.to_ascii_lowercase());
    Ok(Fetched { verified_sha256 })
}

fn download_blob(
    client: &Client,
    cache: &CacheRepo,
    meta: &FileMeta,
    file: &str,
) -> Result<(), HubError> {
    let part = cache.incomplete(&meta.etag);
    let blobs = part.parent().unwrap_or(&cache.dir);
    std::fs::create_dir_all(blobs).map_err(|e| HubError::io(blobs, e))?;
    let job = Job { client, meta, part: &part, file, bar: progress_bar(client, file, meta.size) };
    let result = client.with_retries(|| job.fetch_once());
    // A finished file's bar stays as a record of what was fetched; a failed one stops where it was.
    if result.is_ok() {
        job.bar.finish();
    } else {
        job.bar.abandon();
    }
    match result {
        Ok(()) => {}
        Err(Fail::Fatal(e)) => return Err(e),
        Err(Fail::Stopped) => {
            let bytes = len(&part);
            return Err(HubError::Interrupted { file: file.to_string(), part, bytes });
        }
        Err(Fail::Transient(why)) => {
            let what_now = match len(&part) {
                0 => "Nothing was received; try again later".to_string(),
                kept => format!(
                    "The {kept} bytes received are kept in {}: run the same command again to resume",
                    part.display()
                ),
            };
            return Err(client.download_error(&meta.location, file, format!("{why}. {what_now}")));
        }
    }
    verify(client, meta, &part, file)?;
    File::open(&part).and_then(|f| f.sync_all()).map_err(|e| HubError::io(&part, e))?;
    let blob = cache.blob(&meta.etag);
    std::fs::rename(&part, &blob).map_err(|e| HubError::io(&blob, e))
}

fn len(path: &Path) -> u64 {
    path.metadata().map(|m| m.len()).unwrap_or(0)
}

fn progress_bar(client: &Client, file: &str, size: Option<u64>) -> indicatif::ProgressBar {
    if !client.opts.progress {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(size.unwrap_or(0));
    let style = indicatif::ProgressStyle::with_template(
        "{msg:30!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(file.to_string());
    bar
}

/// One blob download under way.
struct Job<'a> {
    client: &'a Client<'a>,
    meta: &'a FileMeta,
    part: &'a Path,
    file: &'a str,
    bar: indicatif::ProgressBar,
}

impl Job<'_> {
    /// One GET of the rest of the file into `part`: `Transient` for what another attempt may fix.
    fn fetch_once(&self) -> Result<(), Fail> {
        let io = |e| Fail::Fatal(HubError::io(self.part, e));
        let mut have = len(self.part);
        match self.meta.size {
            Some(size) if have == size => return Ok(()),
            // Longer than the file can be: not a prefix of it, start over.
            Some(size) if have > size => {
                File::create(self.part).map_err(io)?;
                have = 0;
            }
            _ => {}
        }
        let (url, mut resp) = self.client.get(&self.meta.location, Some(have))?;
        let start = match resp.status().as_u16() {
            200 => 0,
            206 => match content_range_start(&resp) {
                Some(start) if start == have => start,
                _ => {
                    // A range we did not ask for: start over rather than splice in the wrong bytes.
                    File::create(self.part).map_err(io)?;
                    return Err(Fail::Transient(format!(
                        "{url} answered with a range that was not asked for"
                    )));
                }
            },
            416 => {
                File::create(self.part).map_err(io)?;
                return Err(Fail::Transient(format!(
                    "{url} refused the resume range (HTTP 416); starting over"
                )));
            }
            status => {
                return Err(self.client.status_fail(status, &url, &resp, None, Some(self.file)))
            }
        };
        let mut out = if start == 0 {
            File::create(self.part).map_err(io)?
        } else {
            let mut f = OpenOptions::new().write(true).open(self.part).map_err(io)?;
            f.seek(SeekFrom::Start(start)).map_err(io)?;
            f
        };
        self.bar.set_position(start);
        let written = self.copy_body(&mut resp.body_mut().as_reader(), &mut out, start)?;
        out.flush().map_err(io)?;
        match self.meta.size {
            Some(size) if written < size => Err(Fail::Transient(format!(
                "the connection ended after {written} of {size} bytes"
            ))),
            _ => Ok(()),
        }
    }

    /// Streams the body into `out` from offset `start`, polling `should_stop`, never past the announced size.
    fn copy_body(&self, reader: &mut impl Read, out: &mut File, start: u64) -> Result<u64, Fail> {
        let cap = self.meta.size.unwrap_or(MAX_UNANNOUNCED);
        let mut buf = vec![0u8; 1 << 16];
        let mut written = start;
        loop {
            if self.client.stop_requested() {
                out.flush().map_err(|e| HubError::io(self.part, e))?;
                let (file, part) = (self.file.to_string(), self.part.to_path_buf());
                return Err(Fail::Fatal(HubError::Interrupted { file, part, bytes: written }));
            }
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(written),
                Ok(n) => n,
                Err(e) => {
                    return Err(Fail::Transient(format!(
                        "the connection dropped after {written} bytes ({e})"
                    )))
                }
            };
            if written + n as u64 > cap {
                let _ = std::fs::remove_file(self.part);
                let got = format!("more than {cap} bytes");
                return Err(Fail::Fatal(corrupt(self.client, self.file, "size", got, cap)));
            }
            out.write_all(&buf[..n]).map_err(|e| HubError::io(self.part, e))?;
            written += n as u64;
            self.bar.set_position(written);
        }
    }
}

/// `Content-Range: bytes <start>-<end>/<total>`'s start.
fn content_range_start(resp: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    let range = header(resp, "content-range")?;
    range.strip_prefix("bytes ")?.split('-').next()?.trim().parse().ok()
}

/// The announced size, and the sha256 for an LFS file (its ETag); a bad copy is deleted.
fn verify(client: &Client, meta: &FileMeta, part: &Path, file: &str) -> Result<(), HubError> {
    let got = len(part);
    if let Some(size) = meta.size.filter(|&s| s != got) {
        let _ = std::fs::remove_file(part);
        return Err(corrupt(client, file, "size", format!("{got} bytes"), size));
    }
    if is_sha256(&meta.etag) {
        let sha = sha256_file(part)?;
        if !sha.eq_ignore_ascii_case(&meta.etag) {
            let _ = std::fs::remove_file(part);
            return Err(HubError::Corrupt {
                repo: client.repo.id.clone(),
                file: file.to_string(),
                what: "SHA-256 mismatch",
                got: sha,
                expected: meta.etag.clone(),
            });
        }
    }
    Ok(())
}

fn corrupt(
    client: &Client,
    file: &str,
    what: &'static str,
    got: String,
    expected: u64,
) -> HubError {
    let (repo, file) = (client.repo.id.clone(), file.to_string());
    HubError::Corrupt { repo, file, what, got, expected: format!("{expected} bytes") }
}

/// An LFS file's ETag is the sha256 of its contents; a regular file's is its git blob sha1 (40 digits).
pub(crate) fn is_sha256(etag: &str) -> bool {
    etag.len() == 64 && etag.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The lowercase hex sha256 of a file's contents (a snapshot's symlink is followed to its blob).
pub(crate) fn sha256_file(path: &Path) -> Result<String, HubError> {
    let mut file = File::open(path).map_err(|e| HubError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| HubError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
