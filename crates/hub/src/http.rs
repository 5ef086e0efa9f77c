//! The two hub endpoints a download needs, called the way huggingface_hub calls them (`hf_api.py` `repo_info`,
//! `file_download.py` `get_hf_file_metadata`, https://github.com/huggingface/huggingface_hub):
//!
//! - `GET {endpoint}/api/{models|datasets}/{repo}/revision/{revision}`: JSON with the commit `sha` and
//!   `siblings[].rfilename`, the files of that commit;
//! - `HEAD {endpoint}/{datasets/}{repo}/resolve/{commit}/{file}`: `X-Linked-Etag` (an LFS file's sha256) or
//!   `ETag`, `X-Linked-Size` or `Content-Length`, and for an LFS file a redirect to the CDN (`Location`), which is
//!   where the bytes are then fetched. Only relative redirects (a renamed repo) are followed for this HEAD, as
//!   huggingface_hub does, so the headers describe the file and not the CDN's answer.
//!
//! Redirects are followed here rather than by ureq, so the token goes to the endpoint's host only (ureq drops it
//! on every redirect, a renamed repo's included), never to the CDN. 429 and 5xx are retried with exponential
//! backoff; 401/403/404 become errors that say what to do.
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::{HubError, Options, Repo};

/// Redirects followed before giving up (huggingface.co needs one, a mirror perhaps two).
const MAX_REDIRECTS: usize = 10;

/// How often `Options::should_stop` is polled during a backoff wait.
const STOP_POLL: Duration = Duration::from_millis(100);

/// How one attempt failed: worth another (a dropped connection, 5xx, 429) or not; or, from
/// [`Client::with_retries`], `Options::should_stop` asked to stop before another attempt (the caller turns it into
/// `HubError::Interrupted`, which it knows how to describe).
pub(crate) enum Fail {
    Transient(String),
    Fatal(HubError),
    Stopped,
}

impl From<HubError> for Fail {
    fn from(e: HubError) -> Self {
        Fail::Fatal(e)
    }
}

/// What huggingface_hub calls `HfFileMetadata`.
pub(crate) struct FileMeta {
    /// `X-Linked-Etag` or `ETag`, without `W/` and quotes: the blob's name in the cache.
    pub etag: String,
    /// `X-Linked-Size` or `Content-Length`.
    pub size: Option<u64>,
    /// Where the bytes are: the CDN for an LFS file, else the resolve URL itself.
    pub location: String,
}

pub(crate) struct RevisionInfo {
    pub sha: String,
    pub files: Vec<String>,
}

pub(crate) struct Client<'a> {
    agent: ureq::Agent,
    pub opts: &'a Options,
    pub repo: &'a Repo,
}

type Response = ureq::http::Response<ureq::Body>;

impl<'a> Client<'a> {
    pub fn new(opts: &'a Options, repo: &'a Repo) -> Client<'a> {
        let mut config = ureq::Agent::config_builder();
        if is_loopback(&opts.endpoint) {
            // A hub on this machine (a local mirror, the tests' server) is never reached through HTTPS_PROXY.
            config = config.proxy(None);
        }
        let agent = config
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(opts.timeout))
            // Every read (headers, each chunk of a body) must deliver within the timeout; a whole multi-GB body
            // may take as long as it needs.
            .timeout_per_read(Some(opts.timeout))
            .timeout_recv_response(Some(opts.timeout))
            .timeout_recv_body(None)
            .user_agent(concat!("paligemma-rs-hub/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client { agent, opts, repo }
    }

    /// The commit `revision` points to now and the files of that commit.
    pub fn revision_info(&self, revision: &str) -> Result<RevisionInfo, HubError> {
        let url = format!(
            "{}/api/{}/{}/revision/{}",
            self.opts.endpoint,
            self.repo.kind.api_segment(),
            self.repo.id,
            quote(revision, "")
        );
        let text = self.finish(
            self.with_retries(|| self.api_get(&url, revision)),
            &url,
            "(revision info)",
        )?;
        #[derive(Deserialize)]
        struct Info {
            sha: String,
            #[serde(default)]
            siblings: Vec<Sibling>,
        }
        #[derive(Deserialize)]
        struct Sibling {
            rfilename: String,
        }
        let info: Info =
            serde_json::from_str(&text).map_err(|e| self.protocol(&url, e.to_string()))?;
        if !crate::cache::is_commit(&info.sha) {
            return Err(self.protocol(&url, format!("`sha` {:?} is not a commit sha", info.sha)));
        }
        let files = info.siblings.into_iter().map(|s| s.rfilename).collect();
        Ok(RevisionInfo { sha: info.sha.to_ascii_lowercase(), files })
    }

    fn api_get(&self, url: &str, revision: &str) -> Result<String, Fail> {
        let (final_url, mut resp) =
            self.follow("GET", url, None, false).map_err(|e| self.unreachable(url, e))?;
        match resp.status().as_u16() {
            200 => resp
                .body_mut()
                .with_config()
                .limit(256 << 20)
                .read_to_string()
                .map_err(|e| Fail::Transient(format!("reading the answer failed: {e}"))),
            status => Err(self.status_fail(status, &final_url, &resp, Some(revision), None)),
        }
    }

    /// The blob name, size and location of `file` at `commit` (one HEAD, relative redirects followed).
    pub fn file_meta(&self, commit: &str, file: &str) -> Result<FileMeta, HubError> {
        let url = self.resolve_url(commit, file);
        let head = self.with_retries(|| self.head(&url, commit, file));
        let (final_url, resp) = self.finish(head, &url, file)?;
        let header = |name: &str| header(&resp, name);
        let etag = header("x-linked-etag").or_else(|| header("etag")).map(|e| normalize_etag(&e));
        // It becomes a file name under blobs/: hex digits from the hub, at most `-` and `_` from a mirror.
        let usable = |e: &String| {
            !e.is_empty() && e.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        };
        let Some(etag) = etag.filter(usable) else {
            return Err(self.protocol(
                &final_url,
                format!("no usable ETag for {file}: a proxy between here and the hub may strip the header"),
            ));
        };
        let size = header("x-linked-size")
            .or_else(|| header("content-length"))
            .and_then(|s| s.parse().ok());
        let location =
            header("location").map_or(final_url.clone(), |l| join_location(&final_url, &l));
        Ok(FileMeta { etag, size, location })
    }

    fn head(&self, url: &str, commit: &str, file: &str) -> Result<(String, Response), Fail> {
        let (final_url, resp) = self
            .follow("HEAD", url, None, true)
            .map_err(|e| Fail::Transient(format!("request failed: {e}")))?;
        match resp.status().as_u16() {
            200..=399 => Ok((final_url, resp)),
            status => Err(self.status_fail(status, &final_url, &resp, Some(commit), Some(file))),
        }
    }

    /// `GET url`, every redirect followed; `from` asks for the bytes from that offset on (`Range`).
    pub fn get(&self, url: &str, from: Option<u64>) -> Result<(String, Response), Fail> {
        self.follow("GET", url, from, false)
            .map_err(|e| Fail::Transient(format!("request failed: {e}")))
    }

    pub fn resolve_url(&self, revision: &str, file: &str) -> String {
        format!(
            "{}/{}{}/resolve/{}/{}",
            self.opts.endpoint,
            self.repo.kind.url_prefix(),
            self.repo.id,
            quote(revision, ""),
            quote(file, "/")
        )
    }

    /// The repo's page, where a gated model's licence is accepted.
    pub fn page(&self) -> String {
        format!("{}/{}{}", self.opts.endpoint, self.repo.kind.url_prefix(), self.repo.id)
    }

    /// Sends `method url`, following redirects (only relative ones when `relative_only`: the last response is
    /// then the redirect itself), the token only to the endpoint's origin.
    fn follow(
        &self,
        method: &str,
        url: &str,
        from: Option<u64>,
        relative_only: bool,
    ) -> Result<(String, Response), ureq::Error> {
        let mut url = url.to_string();
        for _ in 0..MAX_REDIRECTS {
            let resp = self.send(method, &url, from)?;
            let location = header(&resp, "location").filter(|_| resp.status().is_redirection());
            match location {
                Some(l) if !relative_only || (l.starts_with('/') && !l.starts_with("//")) => {
                    url = join_location(&url, &l);
                }
                _ => return Ok((url, resp)),
            }
        }
        Err(ureq::Error::RedirectFailed)
    }

    fn send(&self, method: &str, url: &str, from: Option<u64>) -> Result<Response, ureq::Error> {
        let builder = ureq::http::Request::builder().method(method).uri(url);
        // Identity: sizes and byte ranges must refer to the file itself, not a compressed form of it.
        let mut builder = builder.header("Accept-Encoding", "identity");
        if let Some(from) = from.filter(|&f| f > 0) {
            builder = builder.header("Range", format!("bytes={from}-"));
        }
        if let Some(token) =
            self.opts.token.as_deref().filter(|_| origin(url) == origin(&self.opts.endpoint))
        {
            builder = builder.header("Authorization", format!("Bearer {token}"));
        }
        self.agent.run(builder.body(())?)
    }

    /// Runs `once` until it succeeds, fails for good, or the retries (for transient failures) are spent.
    /// `Options::should_stop` is polled before each retry and during the backoff wait: true ends it with
    /// [`Fail::Stopped`].
    pub fn with_retries<T>(&self, mut once: impl FnMut() -> Result<T, Fail>) -> Result<T, Fail> {
        let mut attempt = 0;
        loop {
            match once() {
                Err(Fail::Transient(why)) if attempt < self.opts.retries => {
                    if self.stop_requested() {
                        return Err(Fail::Stopped);
                    }
                    let delay = self.opts.backoff * 2u32.saturating_pow(attempt);
                    self.note(&format!("{why}; retrying in {:.1}s", delay.as_secs_f32()));
                    if !self.wait(delay.min(Duration::from_secs(60))) {
                        return Err(Fail::Stopped);
                    }
                    attempt += 1;
                }
                Err(Fail::Transient(why)) => {
                    let tries = if attempt == 0 {
                        "1 attempt".into()
                    } else {
                        format!("{} attempts", attempt + 1)
                    };
                    return Err(Fail::Transient(format!("{why}; gave up after {tries}")));
                }
                other => return other,
            }
        }
    }

    /// Whether `Options::should_stop` asks to stop now.
    pub fn stop_requested(&self) -> bool {
        self.opts.should_stop.is_some_and(|stop| stop())
    }

    /// Sleeps for `delay` in slices of [`STOP_POLL`]; false as soon as a stop is requested.
    fn wait(&self, delay: Duration) -> bool {
        let end = std::time::Instant::now() + delay;
        loop {
            let now = std::time::Instant::now();
            if now >= end {
                return true;
            }
            std::thread::sleep((end - now).min(STOP_POLL));
            if self.stop_requested() {
                return false;
            }
        }
    }

    /// A message for the user, when progress output is on.
    pub fn note(&self, message: &str) {
        if self.opts.progress {
            eprintln!("{}: {message}", self.repo.id);
        }
    }

    fn finish<T>(&self, result: Result<T, Fail>, url: &str, file: &str) -> Result<T, HubError> {
        result.map_err(|f| match f {
            Fail::Fatal(e) => e,
            Fail::Transient(message) => self.download_error(url, file, message),
            // Nothing of the file was received yet: no partial file to keep.
            Fail::Stopped => {
                HubError::Interrupted { file: file.to_string(), part: PathBuf::new(), bytes: 0 }
            }
        })
    }

    /// The URL is shown without its query: a CDN's is a signature, of no use to the reader.
    pub fn download_error(&self, url: &str, file: &str, message: String) -> HubError {
        let url = url.split('?').next().unwrap_or(url).to_string();
        HubError::Download { repo: self.repo.id.clone(), file: file.to_string(), url, message }
    }

    fn protocol(&self, url: &str, message: String) -> HubError {
        HubError::Protocol { repo: self.repo.id.clone(), url: url.to_string(), message }
    }

    fn unreachable(&self, url: &str, e: ureq::Error) -> Fail {
        Fail::Fatal(HubError::Unreachable {
            repo: self.repo.id.clone(),
            url: url.to_string(),
            message: e.to_string(),
        })
    }

    /// What an error status means: 429 and 5xx are worth a retry, the rest is explained.
    pub fn status_fail(
        &self,
        status: u16,
        url: &str,
        resp: &Response,
        revision: Option<&str>,
        file: Option<&str>,
    ) -> Fail {
        let code = header(resp, "x-error-code").unwrap_or_default();
        let url = url.to_string();
        let repo = self.repo.id.clone();
        match status {
            401 | 403 => Fail::Fatal(HubError::Access {
                repo,
                url,
                status,
                fix: self.access_fix(status, &code),
            }),
            404 => {
                let what = match (code.as_str(), revision, file) {
                    ("RevisionNotFound", Some(rev), _) => format!("revision {rev:?}"),
                    ("EntryNotFound", _, Some(file)) => format!("file {file:?}"),
                    (_, _, Some(file)) if code.is_empty() => format!("file {file:?} (or the repo)"),
                    _ => format!("{} repo", self.repo.kind.name()),
                };
                let fix = format!(
                    "Check the id and revision on {}. A hub id looks like a relative path: if a local directory was \
                     meant, `{}` does not exist",
                    self.page(),
                    self.repo.id
                );
                Fail::Fatal(HubError::NotFound { repo, what, url, fix })
            }
            429 | 500..=599 => Fail::Transient(format!("HTTP {status} from {url}")),
            _ => Fail::Fatal(self.protocol(&url, format!("unexpected HTTP status {status}"))),
        }
    }

    fn access_fix(&self, status: u16, code: &str) -> String {
        let page = self.page();
        let tokens = format!("{}/settings/tokens", self.opts.endpoint);
        match (self.opts.token.is_some(), status) {
            (false, _) if code == "RepoNotFound" => format!(
                "No such repo, or a private one: check the id on {page}; a private repo needs HF_TOKEN set to a \
                 token of an account that can read it"
            ),
            (false, _) => format!(
                "The repo is gated (PaliGemma is) or private, and no token was found: open {page} while logged in \
                 and accept the licence there, create a read token at {tokens}, then set HF_TOKEN=<token> (or \
                 save it with `huggingface-cli login`, which writes $HF_HOME/token)"
            ),
            (true, 401) => format!(
                "The token was refused (mistyped, expired or revoked?): create a new read token at {tokens} and \
                 set HF_TOKEN"
            ),
            (true, _) => format!(
                "The token's account has no access yet: accept the licence on {page} (some gated repos wait for \
                 the authors' approval), and give a fine-grained token read access to public gated repos, or set \
                 HF_TOKEN to a read token"
            ),
        }
    }
}

pub(crate) fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// huggingface_hub's `_normalize_etag`: a weak validator's `W/` and the quotes go.
fn normalize_etag(etag: &str) -> String {
    etag.trim().trim_start_matches("W/").trim_matches('"').to_string()
}

/// `scheme://authority` of `url`.
fn origin(url: &str) -> &str {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find(['/', '?', '#']).map_or(url.len(), |j| start + j);
    &url[..end]
}

fn is_loopback(url: &str) -> bool {
    let authority = origin(url).rsplit("://").next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A `Location` header made absolute against the URL that answered with it.
fn join_location(base: &str, location: &str) -> String {
    if location.contains("://") {
        location.to_string()
    } else if let Some(rest) = location.strip_prefix("//") {
        format!("{}//{rest}", &base[..base.find("://").map_or(0, |i| i + 1)])
    } else if location.starts_with('/') {
        format!("{}{location}", origin(base))
    } else {
        let path_end = base.find(['?', '#']).unwrap_or(base.len());
        let dir = base[..path_end].rfind('/').map_or(base, |i| &base[..=i]);
        format!("{dir}{location}")
    }
}

/// Python's `urllib.parse.quote(s, safe)`: unreserved characters and those in `safe` as they are, every other
/// byte of the UTF-8 as `%XX` (a revision like `refs/pr/1` becomes `refs%2Fpr%2F1`).
pub(crate) fn quote(s: &str, safe: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"_.-~".contains(&b) || safe.as_bytes().contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_etags() {
        assert_eq!(quote("refs/pr/1", ""), "refs%2Fpr%2F1");
        assert_eq!(quote("sub dir/a+b.json", "/"), "sub%20dir/a%2Bb.json");
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert_eq!(normalize_etag("\"abc\""), "abc");
        assert_eq!(origin("https://huggingface.co/api/models"), "https://huggingface.co");
        assert_eq!(origin("http://127.0.0.1:80?x"), "http://127.0.0.1:80");
        assert!(
            is_loopback("http://127.0.0.1:8080")
                && is_loopback("http://localhost")
                && is_loopback("http://[::1]:9")
        );
        assert!(!is_loopback("https://huggingface.co") && !is_loopback("http://127.example.com"));
        let base = "https://huggingface.co/a/b/resolve/main/f.json";
        assert_eq!(
            join_location(base, "/c/d/resolve/main/f.json"),
            "https://huggingface.co/c/d/resolve/main/f.json"
        );
        assert_eq!(
            join_location(base, "https://cdn.example/x?sig=1"),
            "https://cdn.example/x?sig=1"
        );
        assert_eq!(join_location(base, "//cdn.example/x"), "https://cdn.example/x");
        assert_eq!(join_location(base, "g.json"), "https://huggingface.co/a/b/resolve/main/g.json");
    }
}
