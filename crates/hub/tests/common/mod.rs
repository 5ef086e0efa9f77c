//! Fixtures shared by the hub crate's tests: temporary folders, client options for the loopback hub (tests/loopback)
//! and deterministic bytes.
use hub::Options;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A temporary folder, removed when the test ends (passed or not).
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `<temp>/hub-test-<name>-<pid>`, empty.
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("hub-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Options for the loopback hub at `server` with `cache`: short timeouts, no retries, no progress bars.
pub fn options(server: &str, cache: &Path) -> Options {
    let mut opts = Options::new(cache);
    opts.endpoint = server.to_string();
    opts.timeout = Duration::from_secs(5);
    opts.retries = 0;
    opts.backoff = Duration::from_millis(10);
    opts.progress = false;
    opts
}

/// Deterministic bytes that compress badly, like weights or parquet pages of JPEGs.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect()
}
