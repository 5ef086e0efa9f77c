//! Safe dataset downloads: resumable (HTTP `Range`), verified (size and SHA-256), atomic (`<name>.part`, fsync,
//! rename), retried on 5xx/429, dropped connections and stalls (no data for `read_timeout`), with clear messages
//! for 401/403/404 and missing credentials. The size is capped (the expected size, else the announced one, else
//! `max_size`), so a lying or endless server cannot fill the disk. A partial file never carries the final name,
//! so a crash or Ctrl-C can always be resumed.
//!
//! [`SOURCES`] is the one reviewed table of known datasets. Sizes and checksums are given where they are known;
//! where not, the download prints the SHA-256 it got so it can be pinned (RSICD's official
//! copies live on drives that vanish, so every source here is a public mirror; a local copy is always accepted).
//!
//! A source kept in a Hugging Face hub dataset repo ([`HubDataset`], RSICD) is described here as plain data and
//! downloaded by the `hub` crate (`cargo xtask download` in crates/tools): into the huggingface_hub cache, which
//! Python's `datasets` shares, pinned to a commit with each file's size and sha256 once the table says them. This
//! crate does not depend on `hub`.
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::checksum::sha256_file;
use crate::DataError;

/// Credentials a source needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    None,
    /// Kaggle API: HTTP basic auth with `KAGGLE_USERNAME` / `KAGGLE_KEY` (or `~/.kaggle/kaggle.json`).
    Kaggle,
}

#[derive(Debug, Clone, Copy)]
pub struct RemoteFile {
    pub url: &'static str,
    /// Name under `--out`.
    pub file_name: &'static str,
    pub size: Option<u64>,
    pub sha256: Option<&'static str>,
}

#[derive(Debug, Clone, Copy)]
pub struct Source {
    pub name: &'static str,
    pub description: &'static str,
    /// Plain URLs; empty for a hub dataset.
    pub files: &'static [RemoteFile],
    /// A Hugging Face hub dataset repo instead of plain URLs.
    pub hub: Option<HubDataset>,
    pub auth: Auth,
    /// What the files hold, what is not included, how to finish the setup.
    pub notes: &'static str,
}

/// A dataset kept in a Hugging Face hub dataset repo (`datasets/<repo>` on the hub).
///
/// Pinned (`pinned` not empty): `revision` is a full commit sha and exactly the pinned files are downloaded, each
/// checked against its size and sha256, so the data cannot change under a result. Unpinned: every file of
/// `revision` that [`HubDataset::selects`] is downloaded and the command prints the commit with every file's size
/// and sha256 as a block ready to paste here ([`HubDataset::pin_block`]).
#[derive(Debug, Clone, Copy)]
pub struct HubDataset {
    /// `<org>/<name>`.
    pub repo: &'static str,
    /// A branch, tag or commit; the commit the pins describe when there are pins.
    pub revision: &'static str,
    /// Unpinned, the files of the revision whose repo path ends with one of these are downloaded.
    pub file_suffixes: &'static [&'static str],
    /// The files of the commit `revision`, exactly; empty when not pinned yet.
    pub pinned: &'static [PinnedFile],
}

/// One pinned file of a [`HubDataset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinnedFile {
    /// The path in the repo, e.g. `data/train-00000-of-00001.parquet` (also its path under `--out`).
    pub path: &'static str,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: &'static str,
}

impl HubDataset {
    /// True for a repo path the unpinned download takes.
    pub fn selects(&self, path: &str) -> bool {
        self.file_suffixes.iter().any(|s| path.ends_with(s))
    }

    pub fn is_pinned(&self) -> bool {
        !self.pinned.is_empty()
    }

    /// This source pinned to `commit` with `files` (path, size, sha256): the `hub: Some(…)` field of its
    /// [`SOURCES`] entry, as Rust to paste there.
    pub fn pin_block<'a>(
        &self,
        commit: &str,
        files: impl IntoIterator<Item = (&'a str, u64, &'a str)>,
    ) -> String {
        let suffixes: Vec<String> = self.file_suffixes.iter().map(|s| format!("{s:?}")).collect();
        let mut out = format!(
            "        hub: Some(HubDataset {{\n            repo: {:?},\n            revision: {commit:?},\n            \
             file_suffixes: &[{}],\n            pinned: &[\n",
            self.repo,
            suffixes.join(", ")
        );
        for (path, size, sha256) in files {
            out.push_str(&format!(
                "                PinnedFile {{\n                    path: {path:?},\n                    size: \
                 {},\n                    sha256: {sha256:?},\n                }},\n",
                digits(size)
            ));
        }
        out.push_str("            ],\n        }),\n");
        out
    }
}

/// `1234567` as `1_234_567`, as sizes are written in [`SOURCES`].
fn digits(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push('_');
        }
        out.push(c);
    }
    out
}

/// The reviewed table of known sources.
pub const SOURCES: &[Source] = &[
    Source {
        name: "rsicd",
        description: "RSICD from the Hugging Face hub dataset repo arampacha/rsicd: 10,921 images embedded in parquet, \
                      5 captions each",
        files: &[],
        hub: Some(HubDataset {
            repo: "arampacha/rsicd",
            // NOT PINNED YET. The commit and the files' sizes and sha256 could not be read where this entry was
            // written (no access to huggingface.co there), and a pin must never be guessed. To pin it, run
            // `cargo xtask download rsicd --out <dir>` where the hub is reachable: it prints this `hub: Some(…)`
            // field with the commit `main` resolved to and every file's size and sha256 (also in
            // <dir>/source.json); paste it over this one, then check that the next run says "verified".
            revision: "main",
            file_suffixes: &[".parquet"],
            pinned: &[],
        }),
        auth: Auth::None,
        notes: "The parquet files of the hub dataset arampacha/rsicd (data/train-…, valid-…, test-…; split \
                8734/1094/1093), cached in the Hugging Face cache (shared with Python's `datasets`) and put into \
                --out with their repo paths plus source.json (repo, commit, sizes, sha256). Its captions are \
                RSICD's. Not pinned yet: each run prints the commit and checksums to pin. Load the folder with \
                `--dataset <out>`.",
    },
    Source {
        name: "ucm-captions",
        description: "UCM-captions annotations (Karpathy JSON, 2,100 images x 5 captions)",
        files: &[RemoteFile {
            url: "https://raw.githubusercontent.com/hiteshK03/Remote-sensing-image-captioning-with-transformer-and-multilabel-classification/c7ee7403e7092269b546b692ed494fcfffd887ce/data/dataset.json",
            file_name: "dataset_ucm.json",
            size: Some(2_886_234),
            sha256: Some("b6fd0c5076a3fce00202a169b80bd3564521ad17920cee584a601deb16f043f0"),
        }],
        hub: None,
        auth: Auth::None,
        notes: "Annotations only, pinned to a commit. The images are the UC Merced Land Use set (21 classes x 100 \
                TIFFs, 256x256); UCM-captions numbers them 1.tif..2100.tif in class order (agricultural00 = \
                1.tif). Put them in images/ next to the JSON.",
    },
    Source {
        name: "sydney-captions",
        description: "Sydney-captions annotations (Karpathy JSON, 613 images x 5 captions)",
        files: &[RemoteFile {
            url: "https://raw.githubusercontent.com/Jbarata98/remote-sensing-image-captioning/07da5a8354d91808b6cddae755a8262652d47a58/data/captions/dataset_sydney_modified.json",
            file_name: "dataset_sydney_modified.json",
            size: Some(1_468_847),
            sha256: Some("18ee779e06089d1734591527a2857af4389a4a5029a29a5f6b69f7219acb7ee0"),
        }],
        hub: None,
        auth: Auth::None,
        notes: "Annotations only, pinned to a commit. The 613 500x500 TIFF images have no stable public mirror; \
                put them in images/ next to the JSON.",
    },
    Source {
        name: "riscm",
        description: "RISCM (the seed project's captions.csv + resized/, 44,521 images) from Kaggle",
        files: &[],
        hub: None,
        auth: Auth::Kaggle,
        notes: "Kaggle dataset; the seed project did not record its owner, so pass it: \
                `--kaggle <owner>/<dataset>`. Needs KAGGLE_USERNAME and KAGGLE_KEY. The zip is extracted into \
                --out.",
    },
];

pub fn source(name: &str) -> Option<&'static Source> {
    SOURCES.iter().find(|s| s.name.eq_ignore_ascii_case(name))
}

/// The Kaggle API download URL of `owner/dataset`.
pub fn kaggle_url(slug: &str) -> Result<String, DataError> {
    let ok = |s: &str| {
        !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    match slug.split_once('/') {
        Some((owner, name)) if ok(owner) && ok(name) => {
            Ok(format!("https://www.kaggle.com/api/v1/datasets/download/{owner}/{name}"))
        }
        _ => Err(DataError::Invalid(format!("--kaggle expects <owner>/<dataset>, got {slug:?}"))),
    }
}

/// Kaggle credentials from `KAGGLE_USERNAME`/`KAGGLE_KEY`, else `~/.kaggle/kaggle.json`.
pub fn kaggle_credentials() -> Result<(String, String), DataError> {
    if let (Ok(u), Ok(k)) = (std::env::var("KAGGLE_USERNAME"), std::env::var("KAGGLE_KEY")) {
        if !u.is_empty() && !k.is_empty() {
            return Ok((u, k));
        }
    }
    let file = std::env::var_os("KAGGLE_CONFIG_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kaggle")))
        .map(|d| d.join("kaggle.json"));
    if let Some(file) = file.filter(|f| f.is_file()) {
        let text = std::fs::read_to_string(&file).map_err(|e| DataError::io(&file, e))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| DataError::parse(&file, format!("line {}", e.line()), e.to_string()))?;
        if let (Some(u), Some(k)) = (v["username"].as_str(), v["key"].as_str()) {
            return Ok((u.to_string(), k.to_string()));
        }
        return Err(DataError::parse(
            &file,
            "(top level)",
            "expected {\"username\": …, \"key\": …}",
        ));
    }
    Err(DataError::Invalid(
        "Kaggle needs an API token: set KAGGLE_USERNAME and KAGGLE_KEY (kaggle.com -> Settings -> API -> Create \
         New Token gives both, in kaggle.json), or put kaggle.json in ~/.kaggle/"
            .into(),
    ))
}

/// What a finished download must be.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    pub size: Option<u64>,
    pub sha256: Option<String>,
}

pub struct DownloadOptions<'a> {
    /// Attempts after the first, for dropped connections, stalls, 5xx and 429.
    pub retries: u32,
    /// Delay before retry k is `backoff * 2^k`.
    pub backoff: Duration,
    /// Longest wait for the next bytes from the server (response headers or any chunk of the body). A stalled
    /// attempt is abandoned after it and retried, resuming with `Range`.
    pub read_timeout: Duration,
    /// The most bytes accepted from a server that announces no size when `Expect` gives none either (an
    /// endless body must not fill the disk). With a known size, the known size is the cap.
    pub max_size: u64,
    /// HTTP basic auth (user, secret).
    pub basic_auth: Option<(String, String)>,
    /// Called with (bytes on disk, total if known) as data arrives.
    pub progress: Option<&'a (dyn Fn(u64, Option<u64>) + Sync)>,
    /// Called with a human message before each retry.
    pub on_retry: Option<&'a (dyn Fn(&str) + Sync)>,
}

/// Default [`DownloadOptions::read_timeout`].
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`DownloadOptions::max_size`]: 64 GiB, far above any dataset here (RISCM's zip is a few GB).
pub const DEFAULT_MAX_SIZE: u64 = 64 << 30;

impl Default for DownloadOptions<'_> {
    fn default() -> Self {
        DownloadOptions {
            retries: 5,
            backoff: Duration::from_secs(2),
            read_timeout: DEFAULT_READ_TIMEOUT,
            max_size: DEFAULT_MAX_SIZE,
            basic_auth: None,
            progress: None,
            on_retry: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Downloaded (possibly resuming a `.part`) and verified; the SHA-256 computed.
    Downloaded { bytes: u64, sha256: String, resumed_from: u64 },
    /// The final file was already there and matches the expected checksum.
    AlreadyPresent { sha256: String },
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(T[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `<dest>.part`, where bytes accumulate until verified.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

enum Attempt {
    Done,
    Retry(String),
}

/// Downloads `url` to `dest` as described in the module header.
pub fn download(
    url: &str,
    dest: &Path,
    expect: &Expect,
    opts: &DownloadOptions,
) -> Result<Outcome, DataError> {
    let err = |message: String| DataError::Download { url: url.to_string(), message };
    if dest.is_file() {
        let sha = sha256_file(dest)?;
        return match &expect.sha256 {
            Some(want) if want.eq_ignore_ascii_case(&sha) => Ok(Outcome::AlreadyPresent { sha256: sha }),
            Some(want) => Err(err(format!(
                "{} already exists with SHA-256 {sha}, not the expected {want}; move it away to download again",
                dest.display()
            ))),
            None => Ok(Outcome::AlreadyPresent { sha256: sha }),
        };
    }
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    }
    let part = part_path(dest);
    let resumed_from = part.metadata().map(|m| m.len()).unwrap_or(0);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        // Every read (headers and each chunk of the body) must deliver within `read_timeout`; the body as a
        // whole may take as long as it needs.
        .timeout_per_read(Some(opts.read_timeout))
        .timeout_recv_response(Some(opts.read_timeout.max(Duration::from_secs(60))))
        .timeout_recv_body(None)
        .build()
        .into();
    let mut attempt = 0;
    loop {
        match fetch_once(&agent, url, &part, expect, opts)? {
            Attempt::Done => break,
            Attempt::Retry(why) => {
                if attempt >= opts.retries {
                    let kept = part.metadata().map(|m| m.len()).unwrap_or(0);
                    let what_now = if kept > 0 {
                        format!(
                            "The {kept} bytes received are kept in {}: run the same command again to resume",
                            part.display()
                        )
                    } else {
                        let _ = std::fs::remove_file(&part);
                        "Nothing was received; try again later, or give a mirror with --url"
                            .to_string()
                    };
                    return Err(err(format!(
                        "{why}; gave up after {} attempts. {what_now}",
                        attempt + 1
                    )));
                }
                let delay = opts.backoff * 2u32.saturating_pow(attempt);
                if let Some(f) = opts.on_retry {
                    f(&format!(
                        "{why}; retrying in {:.1}s (attempt {} of {})",
                        delay.as_secs_f32(),
                        attempt + 2,
                        opts.retries + 1
                    ));
                }
                std::thread::sleep(delay);
                attempt += 1;
            }
        }
    }
    let bytes = part.metadata().map_err(|e| DataError::io(&part, e))?.len();
    if let Some(size) = expect.size {
        if bytes != size {
            let _ = std::fs::remove_file(&part);
            return Err(err(format!(
                "got {bytes} bytes, expected {size}; the bad copy was deleted"
            )));
        }
    }
    let sha256 = sha256_file(&part)?;
    if let Some(want) = &expect.sha256 {
        if !want.eq_ignore_ascii_case(&sha256) {
            let _ = std::fs::remove_file(&part);
            return Err(err(format!(
                "SHA-256 mismatch: got {sha256}, expected {want}. The file is corrupt or the source changed; the \
                 bad copy was deleted"
            )));
        }
    }
    File::open(&part).and_then(|f| f.sync_all()).map_err(|e| DataError::io(&part, e))?;
    std::fs::rename(&part, dest).map_err(|e| DataError::io(dest, e))?;
    Ok(Outcome::Downloaded { bytes, sha256, resumed_from })
}

/// True when an io error from the body reader is ureq's read timeout.
fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock)
        || e.get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
            .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)))
}

fn fetch_once(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    expect: &Expect,
    opts: &DownloadOptions,
) -> Result<Attempt, DataError> {
    let err = |message: String| DataError::Download { url: url.to_string(), message };
    let mut have = part.metadata().map(|m| m.len()).unwrap_or(0);
    if expect.size.is_some_and(|s| have == s) {
        return Ok(Attempt::Done);
    }
    if expect.size.is_some_and(|s| have > s) {
        // A part longer than the file can be is not a prefix of it: start over.
        File::create(part).map_err(|e| DataError::io(part, e))?;
        have = 0;
    }
    // Identity encoding: byte ranges and Content-Length must refer to the file itself.
    let mut req = agent.get(url).header("Accept-Encoding", "identity");
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    if let Some((user, secret)) = &opts.basic_auth {
        req = req.header(
            "Authorization",
            format!("Basic {}", base64(format!("{user}:{secret}").as_bytes())),
        );
    }
    let secs = opts.read_timeout.as_secs_f32();
    let mut resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Timeout(_)) => {
            return Ok(Attempt::Retry(format!("no response from the server within {secs:.1}s")))
        }
        Err(e) => return Ok(Attempt::Retry(format!("connection failed: {e}"))),
    };
    let status = resp.status().as_u16();
    let header =
        |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    // `total`: the size of the whole file as the server announces it, when it does.
    let (start, total) = match status {
        200 => (0, header("content-length").and_then(|v| v.parse::<u64>().ok())),
        206 => {
            // Content-Range: bytes <start>-<end>/<total or *>
            let cr = header("content-range").unwrap_or_default();
            let parsed = cr.strip_prefix("bytes ").and_then(|r| {
                let (range, total) = r.split_once('/')?;
                let start = range.split_once('-')?.0.parse::<u64>().ok()?;
                Some((start, total.parse::<u64>().ok()))
            });
            match parsed {
                Some((start, total)) if start == have && total.is_none_or(|t| t >= start) => {
                    (start, total)
                }
                _ => {
                    // A range we did not ask for: start over rather than splice wrong bytes.
                    File::create(part).map_err(|e| DataError::io(part, e))?;
                    return Ok(Attempt::Retry(format!("server answered with an unexpected range {cr:?}")));
                }
            }
        }
        416 => {
            // Nothing left to send: the part file is complete, or longer than the resource (restart).
            if let Some(total) = header("content-range").and_then(|c| c.rsplit('/').next()?.parse::<u64>().ok()) {
                if total == have {
                    return Ok(Attempt::Done);
                }
            }
            File::create(part).map_err(|e| DataError::io(part, e))?;
            return Ok(Attempt::Retry("server refused the resume range (HTTP 416); starting over".into()));
        }
        401 | 403 => {
            let hint = if opts.basic_auth.is_some() {
                "the credentials were refused: check KAGGLE_USERNAME/KAGGLE_KEY and that you accepted the \
                 dataset's terms on its web page"
            } else {
                "this source needs authentication or is not public"
            };
            return Err(err(format!("HTTP {status} {}: {hint}", if status == 401 { "Unauthorized" } else { "Forbidden" })));
        }
        404 | 410 => {
            return Err(err(format!(
                "HTTP {status} Not Found: the file is not (or no longer) at this address. If you have a copy, use \
                 it directly with --dataset; a mirror can be given with --url <url> --sha256 <hex>"
            )))
        }
        429 | 500..=599 => return Ok(Attempt::Retry(format!("server error HTTP {status}"))),
        other => return Err(err(format!("unexpected HTTP status {other}"))),
    };
    // The cap on the whole file: the size we expect, else the size the server announces, else `max_size`.
    if let (Some(size), Some(t)) = (expect.size, total) {
        if t != size {
            let _ = std::fs::remove_file(part);
            return Err(err(format!(
                "the server announces {t} bytes, expected {size}: the source changed or the address is wrong; \
                 nothing was kept"
            )));
        }
    }
    if expect.size.is_none() && total.is_some_and(|t| t > opts.max_size) {
        let _ = std::fs::remove_file(part);
        return Err(err(format!(
            "the server announces {} bytes, more than the limit of {} bytes (--max-size); nothing was kept",
            total.unwrap_or_default(),
            opts.max_size
        )));
    }
    let (cap, cap_why) = match (expect.size, total) {
        (Some(s), _) => (s, "the expected size"),
        (None, Some(t)) => (t, "the size the server announced"),
        (None, None) => (opts.max_size, "the limit for downloads of unknown size (--max-size)"),
    };
    let expected_total = total.or(expect.size);
    let mut file = if start == 0 {
        File::create(part).map_err(|e| DataError::io(part, e))?
    } else {
        let mut f =
            OpenOptions::new().write(true).open(part).map_err(|e| DataError::io(part, e))?;
        f.seek(SeekFrom::Start(start)).map_err(|e| DataError::io(part, e))?;
        f
    };
    let mut reader = resp.body_mut().as_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut written = start;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                file.flush().map_err(|e| DataError::io(part, e))?;
                let of = expected_total.map(|t| format!(" of {t}")).unwrap_or_default();
                return Ok(Attempt::Retry(if is_timeout(&e) {
                    format!("the server stalled: no data for {secs:.1}s after {written}{of} bytes")
                } else {
                    format!("connection dropped after {written}{of} bytes ({e})")
                }));
            }
        };
        if written + n as u64 > cap {
            drop(file);
            let _ = std::fs::remove_file(part);
            return Err(err(format!(
                "the server sent more than {cap} bytes ({cap_why}); stopped, and the partial copy was deleted"
            )));
        }
        file.write_all(&buf[..n]).map_err(|e| DataError::io(part, e))?;
        written += n as u64;
        if let Some(p) = opts.progress {
            p(written, expected_total);
        }
    }
    file.flush().map_err(|e| DataError::io(part, e))?;
    if let Some(t) = total {
        if written < t {
            return Ok(Attempt::Retry(format!(
                "the server sent {} of the {} bytes it announced",
                written - start,
                t - start
            )));
        }
    }
    Ok(Attempt::Done)
}

/// Extracts a zip into `dir` (entries must stay inside it), through a temporary folder `.<dir>.extracting`
/// next to it, moved into place at the end. On any failure the temporary folder is removed and `dir` is left as
/// it was; errors name the zip and the entry.
pub fn extract_zip(zip_path: &Path, dir: &Path) -> Result<usize, DataError> {
    let file = File::open(zip_path).map_err(|e| DataError::io(zip_path, e))?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| DataError::format(zip_path, format!("not a readable zip archive: {e}")))?;
    let tmp = dir.with_file_name(format!(
        ".{}.extracting",
        dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = extract_into(&mut archive, zip_path, &tmp).and_then(|files| {
        move_into_place(&tmp, dir)?;
        Ok(files)
    });
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn extract_into(
    archive: &mut zip::ZipArchive<File>,
    zip_path: &Path,
    tmp: &Path,
) -> Result<usize, DataError> {
    std::fs::create_dir_all(tmp).map_err(|e| DataError::io(tmp, e))?;
    let mut files = 0;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| DataError::format(zip_path, format!("entry {i}: {e}")))?;
        let name = match entry.name() {
            Ok(n) => n.into_owned(),
            Err(_) => String::from_utf8_lossy(entry.name_raw()).into_owned(),
        };
        let Some(rel) = entry.enclosed_name() else {
            return Err(DataError::format(
                zip_path,
                format!("entry {name:?} would be written outside the target folder (it escapes it); refused"),
            ));
        };
        let target = tmp.join(rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| DataError::io(&target, e))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
        }
        let mut out = File::create(&target).map_err(|e| DataError::io(&target, e))?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    return Err(DataError::format(
                        zip_path,
                        format!("entry {name:?}: cannot extract, the archive is damaged: {e}"),
                    ))
                }
            };
            out.write_all(&buf[..n]).map_err(|e| DataError::io(&target, e))?;
        }
        files += 1;
    }
    Ok(files)
}

/// Moves the extracted tree into `dir`: a rename when `dir` does not exist, else entry by entry after
/// checking that none would overwrite an existing file.
fn move_into_place(tmp: &Path, dir: &Path) -> Result<(), DataError> {
    if !dir.exists() {
        return std::fs::rename(tmp, dir).map_err(|e| DataError::io(dir, e));
    }
    let entries: Vec<_> = std::fs::read_dir(tmp)
        .map_err(|e| DataError::io(tmp, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| DataError::io(tmp, e))?;
    for e in &entries {
        let to = dir.join(e.file_name());
        if to.exists() {
            return Err(DataError::Invalid(format!(
                "{} already exists; not overwriting it (nothing was extracted)",
                to.display()
            )));
        }
    }
    for e in entries {
        let to = dir.join(e.file_name());
        std::fs::rename(e.path(), &to).map_err(|err| DataError::io(&to, err))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_urls() {
        assert_eq!(base64(b"user:key"), "dXNlcjprZXk=");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert!(kaggle_url("someone/riscm-dataset")
            .unwrap()
            .ends_with("/datasets/download/someone/riscm-dataset"));
        assert!(kaggle_url("../etc").is_err());
        assert_eq!(part_path(Path::new("/x/a.parquet")), Path::new("/x/a.parquet.part"));
        assert!(source("RSICD").is_some() && source("nope").is_none());
    }

    #[test]
    fn every_source_is_well_formed_and_pins_are_commits_with_full_checksums() {
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        for s in SOURCES {
            let Some(hub) = s.hub else { continue };
            assert!(s.files.is_empty(), "{}: hub or URLs, not both", s.name);
            assert!(hub.repo.split('/').count() == 2, "{}", s.name);
            if hub.is_pinned() {
                assert!(hex(hub.revision, 40), "{}: pins need a commit sha", s.name);
                for f in hub.pinned {
                    assert!(hex(f.sha256, 64) && f.size > 0 && hub.selects(f.path), "{f:?}");
                }
            } else {
                assert!(!hub.file_suffixes.is_empty(), "{}: selects nothing", s.name);
            }
        }
        let rsicd = source("rsicd").unwrap().hub.unwrap();
        assert_eq!(rsicd.repo, "arampacha/rsicd");
        assert!(rsicd.selects("data/train-00000-of-00001.parquet") && !rsicd.selects("README.md"));
    }

    #[test]
    fn the_pin_block_is_the_rust_of_a_pinned_entry() {
        let hub = HubDataset {
            repo: "org/data",
            revision: "main",
            file_suffixes: &[".parquet"],
            pinned: &[],
        };
        let block = hub.pin_block("0123abcd", [("data/a.parquet", 1_234_567, "ff00")]);
        let expected = r#"        hub: Some(HubDataset {
            repo: "org/data",
            revision: "0123abcd",
            file_suffixes: &[".parquet"],
            pinned: &[
                PinnedFile {
                    path: "data/a.parquet",
                    size: 1_234_567,
                    sha256: "ff00",
                },
            ],
        }),
"#;
        assert_eq!(block, expected);
        assert_eq!(
            (digits(0), digits(999), digits(1000)),
            ("0".into(), "999".into(), "1_000".into())
        );
    }
}
