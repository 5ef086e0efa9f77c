//! Where the hub and the cache are and who the user is, read from the environment variables huggingface_hub reads
//! (https://huggingface.co/docs/huggingface_hub/package_reference/environment_variables), with the same defaults,
//! so a model Python downloaded is found where Python put it and a token saved by `huggingface-cli login` is used.
//!
//! Everything lives in [`Options`] rather than being read deep inside the crate: tests (threads of one process)
//! each point their own `Options` at their own server and cache instead of mutating the shared environment.
use std::path::{Path, PathBuf};
use std::time::Duration;

/// huggingface_hub's default `HF_ENDPOINT`.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// How to reach the hub and where the cache is. [`Options::from_env`] for real use, [`Options::new`] for a
/// given cache with no token and the default endpoint.
#[derive(Clone)]
pub struct Options {
    /// `HF_ENDPOINT` (a mirror), default `https://huggingface.co`; no trailing slash.
    pub endpoint: String,
    /// `HF_TOKEN` (or the legacy `HUGGING_FACE_HUB_TOKEN`), else the token file `HF_TOKEN_PATH`, default
    /// `$HF_HOME/token` (where `huggingface-cli login` saves it). Sent to the endpoint's host only, never to
    /// the CDN a file redirects to.
    pub token: Option<String>,
    /// `HF_HUB_CACHE` (or the legacy `HUGGINGFACE_HUB_CACHE`), else `$HF_HOME/hub`, `HF_HOME` defaulting to
    /// `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
    pub cache_dir: PathBuf,
    /// `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) set to 1/ON/YES/TRUE: no request at all, only the cache.
    pub offline: bool,
    /// Connect timeout, and the longest wait for any response or chunk of a body (`HF_HUB_DOWNLOAD_TIMEOUT`
    /// seconds, default 30); a download as a whole may take as long as it needs.
    pub timeout: Duration,
    /// Attempts after the first for dropped connections, stalls, 5xx and 429; a download resumes with `Range`.
    pub retries: u32,
    /// Delay before retry k is `backoff * 2^k`.
    pub backoff: Duration,
    /// A progress bar per file on stderr (indicatif draws nothing when stderr is not a terminal), and notes on
    /// retries; off with `HF_HUB_DISABLE_PROGRESS_BARS`.
    pub progress: bool,
    /// Polled between chunks of a download (e.g. `|| interrupt::requested().is_some()`): true stops it with
    /// `HubError::Interrupted`, the partial `blobs/<etag>.incomplete` kept for a resume.
    pub should_stop: Option<fn() -> bool>,
}

/// The token stays out of logs and error reports.
impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("cache_dir", &self.cache_dir)
            .field("offline", &self.offline)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .field("progress", &self.progress)
            .finish()
    }
}

impl Options {
    /// The default endpoint, no token, online, the given cache (`<cache_dir>/models--org--name/…`).
    pub fn new(cache_dir: impl Into<PathBuf>) -> Options {
        Options {
            endpoint: DEFAULT_ENDPOINT.to_string(),
            token: None,
            cache_dir: cache_dir.into(),
            offline: false,
            timeout: Duration::from_secs(30),
            retries: 5,
            backoff: Duration::from_secs(2),
            progress: true,
            should_stop: None,
        }
    }

    /// Read from the process environment (and the token file), as huggingface_hub reads it.
    pub fn from_env() -> Options {
        from_vars(|name| std::env::var(name).ok())
    }
}

/// [`Options::from_env`] over any variable lookup (tests pass a map).
pub(crate) fn from_vars(var: impl Fn(&str) -> Option<String>) -> Options {
    let var = |name: &str| var(name).filter(|v| !v.is_empty());
    let home = var("HOME").or_else(|| var("USERPROFILE")).map(PathBuf::from).unwrap_or_default();
    let path = |v: String| expand_home(&v, &home);
    let hf_home = var("HF_HOME").map(path).unwrap_or_else(|| {
        var("XDG_CACHE_HOME").map(path).unwrap_or_else(|| home.join(".cache")).join("huggingface")
    });
    let cache_dir = var("HF_HUB_CACHE")
        .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
        .map(path)
        .unwrap_or_else(|| hf_home.join("hub"));
    let token_file = var("HF_TOKEN_PATH").map(path).unwrap_or_else(|| hf_home.join("token"));
    let token = var("HF_TOKEN")
        .or_else(|| var("HUGGING_FACE_HUB_TOKEN"))
        .or_else(|| std::fs::read_to_string(&token_file).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let is_true = |name: &str| {
        var(name).is_some_and(|v| ["1", "ON", "YES", "TRUE"].contains(&v.to_uppercase().as_str()))
    };
    let mut opts = Options::new(cache_dir);
    opts.endpoint =
        var("HF_ENDPOINT").map_or(opts.endpoint, |e| e.trim_end_matches('/').to_string());
    opts.token = token;
    opts.offline = is_true("HF_HUB_OFFLINE") || is_true("TRANSFORMERS_OFFLINE");
    opts.progress = !is_true("HF_HUB_DISABLE_PROGRESS_BARS");
    // `inf` or 1e30 parse as f64 but are no Duration: such a value keeps the default instead of panicking.
    let secs = var("HF_HUB_DOWNLOAD_TIMEOUT").and_then(|s| s.parse::<f64>().ok());
    if let Some(d) = secs.and_then(|s| Duration::try_from_secs_f64(s.max(1.0)).ok()) {
        opts.timeout = d;
    }
    opts
}

/// `~` and `~/…` as Python's `os.path.expanduser` reads them.
fn expand_home(value: &str, home: &Path) -> PathBuf {
    match value.strip_prefix('~') {
        Some("") => home.to_path_buf(),
        Some(rest) if rest.starts_with('/') => home.join(&rest[1..]),
        _ => PathBuf::from(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> Options {
        let map: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_huggingface_hub() {
        let o = with(&[("HOME", "/h")]);
        assert_eq!(o.endpoint, "https://huggingface.co");
        assert_eq!(o.cache_dir, Path::new("/h/.cache/huggingface/hub"));
        assert!(!o.offline && o.token.is_none());
        let o = with(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")]);
        assert_eq!(o.cache_dir, Path::new("/x/huggingface/hub"));
        let o =
            with(&[("HOME", "/h"), ("HF_HOME", "~/hf"), ("HF_ENDPOINT", "http://mirror:8080/")]);
        assert_eq!(o.cache_dir, Path::new("/h/hf/hub"));
        assert_eq!(o.endpoint, "http://mirror:8080");
        let o = with(&[("HF_HOME", "/a"), ("HF_HUB_CACHE", "/b"), ("HF_HUB_OFFLINE", "yes")]);
        assert_eq!(o.cache_dir, Path::new("/b"));
        assert!(o.offline);
        assert!(!with(&[("HF_HUB_OFFLINE", "0")]).offline);
        assert!(with(&[("TRANSFORMERS_OFFLINE", "1")]).offline);
        assert!(o.progress && !with(&[("HF_HUB_DISABLE_PROGRESS_BARS", "1")]).progress);
        let o = with(&[("HF_HUB_DOWNLOAD_TIMEOUT", "7")]);
        assert_eq!(o.timeout, Duration::from_secs(7));
        let default = with(&[]).timeout;
        for unusable in ["inf", "1e30", "nan", "soon"] {
            let t = with(&[("HF_HUB_DOWNLOAD_TIMEOUT", unusable)]).timeout;
            assert!(t == default || t == Duration::from_secs(1), "{unusable}: {t:?}");
        }
    }

    #[test]
    fn hf_token_wins_over_the_saved_token_file() {
        let dir = std::env::temp_dir().join(format!("hub-options-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "hf_from_file\n").unwrap();
        let home = dir.to_str().unwrap();
        let from_file = with(&[("HF_HOME", home)]).token;
        let from_env = with(&[("HF_HOME", home), ("HF_TOKEN", "hf_from_env")]).token;
        let explicit = with(&[("HF_TOKEN_PATH", dir.join("token").to_str().unwrap())]).token;
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(from_file.as_deref(), Some("hf_from_file"));
        assert_eq!(from_env.as_deref(), Some("hf_from_env"));
        assert_eq!(explicit.as_deref(), Some("hf_from_file"));
        assert!(!format!("{:?}", with(&[("HF_TOKEN", "hf_secret")])).contains("hf_secret"));
    }
}
