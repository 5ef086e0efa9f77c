//! A loopback stand-in for the hub: the endpoints `hub` calls, answered as huggingface.co answers them, for model
//! and dataset repos alike (a `RepoSpec` of kind `datasets` is served under `/api/datasets/…` and `/datasets/…`,
//! its files with their folders, e.g. `data/train.parquet`). Also included by crates/tools/tests (`#[path]`).
//!
//! - `GET /api/{models|datasets}/{org}/{name}/revision/{rev}`: `{"sha", "siblings": [{"rfilename"}]}`;
//! - `HEAD|GET /{datasets/}{org}/{name}/resolve/{rev}/{file}`: a regular file is answered directly (git-sha1
//!   `ETag`); an LFS file with a 302 to `/cdn/<sha256>` carrying `X-Linked-Etag`, `X-Linked-Size`,
//!   `X-Repo-Commit`, as the hub redirects to its CDN;
//! - `GET /cdn/<sha256>`: the bytes, `Range: bytes=N-` answered with 206;
//! - a gated repo answers 401 (`X-Error-Code: GatedRepo`) without the right token, an unknown one 404, a renamed
//!   one (`google/pg-renamed`) a relative 307 to its new name.
//!
//! Knobs: `cut_first_cdn` sends half of the first CDN body announced whole and closes the connection;
//! `stall_first_cdn` sends half and then nothing for 3 s; `corrupt_cdn` flips a byte; `fail_everything` answers
//! 500 to anything. Every request is logged.
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

pub struct File {
    pub name: String,
    pub bytes: Vec<u8>,
    pub lfs: bool,
}

pub struct RepoSpec {
    /// `models` or `datasets`.
    pub kind: &'static str,
    pub id: String,
    pub files: Vec<File>,
    /// A gated repo's accepted token.
    pub token: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub auth: Option<String>,
}

#[derive(Default)]
pub struct Knobs {
    pub cut_first_cdn: AtomicBool,
    pub stall_first_cdn: AtomicBool,
    pub corrupt_cdn: AtomicBool,
    pub fail_everything: AtomicBool,
}

pub struct Server {
    pub url: String,
    pub knobs: Arc<Knobs>,
    log: Arc<Mutex<Vec<Logged>>>,
}

struct State {
    url: String,
    repos: Vec<RepoSpec>,
    knobs: Arc<Knobs>,
    log: Arc<Mutex<Vec<Logged>>>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// What the hub uses as a regular file's ETag (its git blob sha1; any 40 hex digits do here).
fn git_etag(bytes: &[u8]) -> String {
    sha256_hex(bytes)[..40].to_string()
}

impl Server {
    pub fn start(repos: Vec<RepoSpec>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let knobs = Arc::new(Knobs::default());
        let log = Arc::new(Mutex::new(Vec::new()));
        let state =
            Arc::new(State { url: url.clone(), repos, knobs: knobs.clone(), log: log.clone() });
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = state.clone();
                std::thread::spawn(move || state.serve(stream));
            }
        });
        Server { url, knobs, log }
    }

    pub fn log(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Bytes of the body actually sent before the connection is closed.
    cut_at: Option<usize>,
    /// Silence after the cut before closing.
    stall: bool,
}

fn reply(status: u16, body: impl Into<Vec<u8>>) -> Reply {
    Reply { status, headers: vec![], body: body.into(), cut_at: None, stall: false }
}

impl Reply {
    fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

impl State {
    fn serve(&self, mut stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut first = String::new();
        if reader.read_line(&mut first).is_err() {
            return;
        }
        let mut parts = first.split_whitespace();
        let (method, path) =
            (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let (mut range, mut auth) = (None, None);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "range" => range = Some(value.trim().to_string()),
                    "authorization" => auth = Some(value.trim().to_string()),
                    _ => {}
                }
            }
        }
        let logged = Logged { method: method.clone(), path: path.clone(), range, auth };
        self.log.lock().unwrap().push(logged.clone());
        let reply = self.answer(&logged);
        let _ = write_reply(&mut stream, &method, reply);
    }

    fn answer(&self, req: &Logged) -> Reply {
        if self.knobs.fail_everything.load(Ordering::SeqCst) {
            return reply(500, "this server fails every request");
        }
        if let Some(sha) = req.path.strip_prefix("/cdn/") {
            return self.cdn(sha.split('?').next().unwrap_or(""), req);
        }
        if let Some(rest) = req.path.strip_prefix("/api/") {
            return self.api(rest, req);
        }
        self.resolve(&req.path, req)
    }

    fn find(&self, kind: &str, id: &str) -> Option<&RepoSpec> {
        self.repos.iter().find(|r| r.kind == kind && r.id == id)
    }

    /// `None` when the request may see the repo, else the 401 a gated repo gives.
    fn gate(&self, repo: &RepoSpec, req: &Logged) -> Option<Reply> {
        let token = repo.token.as_ref()?;
        if req.auth.as_deref() == Some(&format!("Bearer {token}")) {
            return None;
        }
        let message = format!(
            "Access to model {} is restricted. You must have access to it and be authenticated.",
            repo.id
        );
        Some(
            reply(401, message.clone())
                .header("X-Error-Code", "GatedRepo")
                .header("X-Error-Message", message),
        )
    }

    fn api(&self, rest: &str, req: &Logged) -> Reply {
        // {kind}/{org}/{name}/revision/{rev}
        let parts: Vec<&str> = rest.splitn(5, '/').collect();
        let [kind, org, name, "revision", rev] = parts[..] else {
            return reply(404, "no such endpoint");
        };
        if let Some(new_id) = renamed(org, name) {
            return reply(307, "")
                .header("Location", format!("/api/{kind}/{new_id}/revision/{rev}"));
        }
        let Some(repo) = self.find(kind, &format!("{org}/{name}")) else {
            return reply(404, "Repository not found").header("X-Error-Code", "RepoNotFound");
        };
        if let Some(denied) = self.gate(repo, req) {
            return denied;
        }
        if rev != "main" && rev != COMMIT {
            return reply(404, "Invalid rev id").header("X-Error-Code", "RevisionNotFound");
        }
        let siblings: Vec<String> =
            repo.files.iter().map(|f| format!("{{\"rfilename\": \"{}\"}}", f.name)).collect();
        let body = format!(
            "{{\"id\": \"{}\", \"sha\": \"{COMMIT}\", \"siblings\": [{}]}}",
            repo.id,
            siblings.join(", ")
        );
        reply(200, body).header("Content-Type", "application/json")
    }

    fn resolve(&self, path: &str, req: &Logged) -> Reply {
        let (kind, rest) = match path.strip_prefix("/datasets/") {
            Some(rest) => ("datasets", rest),
            None => ("models", path.trim_start_matches('/')),
        };
        let parts: Vec<&str> = rest.splitn(5, '/').collect();
        let [org, name, "resolve", rev, file] = parts[..] else {
            return reply(404, "no such endpoint");
        };
        if let Some(new_id) = renamed(org, name) {
            let prefix = if kind == "datasets" { "/datasets" } else { "" };
            return reply(307, "")
                .header("Location", format!("{prefix}/{new_id}/resolve/{rev}/{file}"));
        }
        let Some(repo) = self.find(kind, &format!("{org}/{name}")) else {
            return reply(404, "Repository not found").header("X-Error-Code", "RepoNotFound");
        };
        if let Some(denied) = self.gate(repo, req) {
            return denied;
        }
        let Some(f) =
            repo.files.iter().find(|f| f.name == file).filter(|_| rev == "main" || rev == COMMIT)
        else {
            return reply(404, "Entry not found").header("X-Error-Code", "EntryNotFound");
        };
        if !f.lfs {
            return reply(200, f.bytes.clone())
                .header("ETag", format!("\"{}\"", git_etag(&f.bytes)))
                .header("X-Repo-Commit", COMMIT);
        }
        let sha = sha256_hex(&f.bytes);
        reply(302, "")
            .header("Location", format!("{}/cdn/{sha}?X-Amz-Signature=loopback", self.url))
            .header("X-Linked-Etag", format!("\"{sha}\""))
            .header("X-Linked-Size", f.bytes.len().to_string())
            .header("ETag", format!("\"{}\"", git_etag(b"pointer")))
            .header("X-Repo-Commit", COMMIT)
    }

    fn cdn(&self, sha: &str, req: &Logged) -> Reply {
        let Some(f) =
            self.repos.iter().flat_map(|r| &r.files).find(|f| f.lfs && sha256_hex(&f.bytes) == sha)
        else {
            return reply(404, "NoSuchKey");
        };
        let mut bytes = f.bytes.clone();
        if self.knobs.corrupt_cdn.load(Ordering::SeqCst) {
            bytes[0] ^= 0xff;
        }
        let start = req
            .range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse::<usize>().ok())
            .unwrap_or(0);
        let total = bytes.len();
        let mut out = if start > 0 {
            reply(206, bytes[start..].to_vec())
                .header("Content-Range", format!("bytes {start}-{}/{total}", total - 1))
        } else {
            reply(200, bytes)
        };
        if self.knobs.cut_first_cdn.swap(false, Ordering::SeqCst) {
            out.cut_at = Some(out.body.len() / 2);
        } else if self.knobs.stall_first_cdn.swap(false, Ordering::SeqCst) {
            out.cut_at = Some(out.body.len() / 2);
            out.stall = true;
        }
        out
    }
}

/// `google/pg-renamed` moved to `google/pg-test`: the hub answers with a relative redirect.
fn renamed(org: &str, name: &str) -> Option<&'static str> {
    (org == "google" && name == "pg-renamed").then_some("google/pg-test")
}

fn write_reply(stream: &mut TcpStream, method: &str, reply: Reply) -> std::io::Result<()> {
    let reason = match reply.status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Error",
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if method != "HEAD" {
        let end = reply.cut_at.unwrap_or(reply.body.len());
        stream.write_all(&reply.body[..end])?;
    }
    stream.flush()?;
    if reply.stall {
        std::thread::sleep(std::time::Duration::from_secs(3));
    }
    // A cut: the connection ends with the body short of its Content-Length, as a dropped transfer does.
    stream.shutdown(std::net::Shutdown::Both)
}
