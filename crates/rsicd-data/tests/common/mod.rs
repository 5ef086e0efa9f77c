//! Helpers shared by the integration tests: locating `../shared`, fixtures, and a tiny base64 decoder.
#![allow(dead_code)]
use std::path::PathBuf;

/// The repository root (`crates/rsicd-data/../..`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `$PALIGEMMA_SHARED`, else `<repo root>/../shared`. When it is absent the test is skipped loudly, unless
/// `PALIGEMMA_REQUIRE_SHARED=1` (set by CI), in which case it fails.
pub fn shared() -> Option<PathBuf> {
    let dir = std::env::var_os("PALIGEMMA_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared"));
    if dir.join("data/remote-sensing").is_dir() {
        return Some(dir);
    }
    if std::env::var("PALIGEMMA_REQUIRE_SHARED").as_deref() == Ok("1") {
        panic!("shared data not found at {} and PALIGEMMA_REQUIRE_SHARED=1", dir.display());
    }
    eprintln!("\n*** skipped: shared data not found at {} ***\n", dir.display());
    None
}

/// `<shared>/data/remote-sensing`, or None (skipped, see [`shared`]).
pub fn remote_sensing() -> Option<PathBuf> {
    shared().map(|d| d.join("data/remote-sensing"))
}

/// Removes a temporary folder when dropped, so tests leave nothing behind whether they pass or fail.
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("invalid base64 byte {c}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk.iter().fold(0u32, |acc, &c| (acc << 6) | val(c)) << (6 * (4 - chunk.len()));
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..chunk.len()]);
    }
    out
}
