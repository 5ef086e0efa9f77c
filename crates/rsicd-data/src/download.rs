//! Safe dataset downloads: resumable (HTTP `Range`), verified (size and SHA-256), atomic (`<name>.part`, fsync,
//! rename), retried on 5xx/429 and dropped connections, with clear messages for 401/403/404 and missing
//! credentials. A partial file never carries the final name, so a crash or Ctrl-C can always be resumed.
//!
//! [`SOURCES`] is the one reviewed table of known datasets. Sizes and checksums are given where they are known;
//! where not, the download prints the SHA-256 it got so it can be pinned (user-pitfalls 16: RSICD's official
//! copies live on drives that vanish, so every source here is a public mirror; a local copy is always accepted).
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
    pub files: &'static [RemoteFile],
    pub auth: Auth,
    /// What the files hold, what is not included, how to finish the setup.
    pub notes: &'static str,
}

/// The reviewed table of known sources.
pub const SOURCES: &[Source] = &[
    Source {
        name: "rsicd",
        description: "RSICD, Hugging Face parquet export (arampacha/rsicd): 10,921 images embedded, 5 captions each",
        files: &[
            RemoteFile {
                url: "https://huggingface.co/datasets/arampacha/rsicd/resolve/refs%2Fconvert%2Fparquet/default/train/0000.parquet",
                file_name: "data/train-00000-of-00001.parquet",
                size: None,
                sha256: None,
            },
            RemoteFile {
                url: "https://huggingface.co/datasets/arampacha/rsicd/resolve/refs%2Fconvert%2Fparquet/default/valid/0000.parquet",
                file_name: "data/valid-00000-of-00001.parquet",
                size: None,
                sha256: None,
            },
            RemoteFile {
                url: "https://huggingface.co/datasets/arampacha/rsicd/resolve/refs%2Fconvert%2Fparquet/default/test/0000.parquet",
                file_name: "data/test-00000-of-00001.parquet",
                size: None,
                sha256: None,
            },
        ],
        auth: Auth::None,
        notes: "The Hugging Face parquet conversion of arampacha/rsicd (split 8734/1094/1093). Its captions are \
                RSICD's; checksums are not pinned yet (the download prints them). Load the folder with \
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
        auth: Auth::None,
        notes: "Annotations only, pinned to a commit. The 613 500x500 TIFF images have no stable public mirror; \
                put them in images/ next to the JSON.",
    },
    Source {
        name: "riscm",
        description: "RISCM (the seed project's captions.csv + resized/, 44,521 images) from Kaggle",
        files: &[],
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
    /// Attempts after the first, for dropped connections, 5xx and 429.
    pub retries: u32,
    /// Delay before retry k is `backoff * 2^k`.
    pub backoff: Duration,
    /// HTTP basic auth (user, secret).
    pub basic_auth: Option<(String, String)>,
    /// Called with (bytes on disk, total if known) as data arrives.
    pub progress: Option<&'a (dyn Fn(u64, Option<u64>) + Sync)>,
    /// Called with a human message before each retry.
    pub on_retry: Option<&'a (dyn Fn(&str) + Sync)>,
}

impl Default for DownloadOptions<'_> {
    fn default() -> Self {
        DownloadOptions {
            retries: 5,
            backoff: Duration::from_secs(2),
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
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_recv_body(None)
        .build()
        .into();
    let mut attempt = 0;
    loop {
        match fetch_once(&agent, url, &part, expect, opts)? {
            Attempt::Done => break,
            Attempt::Retry(why) => {
                if attempt >= opts.retries {
                    return Err(err(format!(
                        "{why}; gave up after {} attempts. The {} bytes received are kept in {}: run the same \
                         command again to resume",
                        attempt + 1,
                        part.metadata().map(|m| m.len()).unwrap_or(0),
                        part.display()
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

fn fetch_once(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    expect: &Expect,
    opts: &DownloadOptions,
) -> Result<Attempt, DataError> {
    let err = |message: String| DataError::Download { url: url.to_string(), message };
    let have = part.metadata().map(|m| m.len()).unwrap_or(0);
    if expect.size.is_some_and(|s| have == s) {
        return Ok(Attempt::Done);
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
    let mut resp = match req.call() {
        Ok(r) => r,
        Err(e) => return Ok(Attempt::Retry(format!("connection failed: {e}"))),
    };
    let status = resp.status().as_u16();
    let header =
        |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
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
                Some((start, total)) if start == have => (start, total),
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
    let expected_total = total.or(expect.size);
    let mut file = if start == 0 {
        File::create(part).map_err(|e| DataError::io(part, e))?
    } else {
        let mut f =
            OpenOptions::new().write(true).open(part).map_err(|e| DataError::io(part, e))?;
        f.seek(SeekFrom::Start(start)).map_err(|e| DataError::io(part, e))?;
        f
    };
    let declared = if status == 206 { expected_total.map(|t| t - start) } else { total };
    let mut reader = resp.body_mut().as_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    let mut written = start;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                file.flush().map_err(|e| DataError::io(part, e))?;
                let of = expected_total.map(|t| format!(" of {t}")).unwrap_or_default();
                return Ok(Attempt::Retry(format!(
                    "connection dropped after {written}{of} bytes ({e})"
                )));
            }
        };
        file.write_all(&buf[..n]).map_err(|e| DataError::io(part, e))?;
        got += n as u64;
        written += n as u64;
        if let Some(p) = opts.progress {
            p(written, expected_total);
        }
    }
    file.flush().map_err(|e| DataError::io(part, e))?;
    if let Some(d) = declared {
        if got < d {
            return Ok(Attempt::Retry(format!(
                "the server sent {got} of the {d} bytes it announced"
            )));
        }
    }
    Ok(Attempt::Done)
}

/// Extracts a zip into `dir` (entries must stay inside it), through a temporary folder renamed at the end.
pub fn extract_zip(zip_path: &Path, dir: &Path) -> Result<usize, DataError> {
    let file = File::open(zip_path).map_err(|e| DataError::io(zip_path, e))?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| DataError::format(zip_path, format!("not a zip archive: {e}")))?;
    let tmp = dir.with_file_name(format!(
        ".{}.extracting",
        dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    let mut files = 0;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| DataError::format(zip_path, format!("entry {i}: {e}")))?;
        let Some(rel) = entry.enclosed_name() else {
            return Err(DataError::format(
                zip_path,
                format!("entry {:?} escapes the target folder", entry.name()),
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
        std::io::copy(&mut entry, &mut out).map_err(|e| DataError::io(&target, e))?;
        files += 1;
    }
    if dir.exists() {
        // Merge into an existing folder (e.g. --out already holds other files): move entries one by one.
        for e in std::fs::read_dir(&tmp).map_err(|e| DataError::io(&tmp, e))? {
            let e = e.map_err(|e| DataError::io(&tmp, e))?;
            let to = dir.join(e.file_name());
            if to.exists() {
                return Err(DataError::Invalid(format!(
                    "{} already exists; not overwriting it",
                    to.display()
                )));
            }
            std::fs::rename(e.path(), &to).map_err(|err| DataError::io(&to, err))?;
        }
        let _ = std::fs::remove_dir_all(&tmp);
    } else {
        std::fs::rename(&tmp, dir).map_err(|e| DataError::io(dir, e))?;
    }
    Ok(files)
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
}
