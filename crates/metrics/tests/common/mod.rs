//! Test helpers: locating the shared reference data and the METEOR jar, skipping loudly when absent.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `$PALIGEMMA_SHARED`, else `<repo root>/../shared`. `None` (after a loud message) when absent, unless
/// `PALIGEMMA_REQUIRE_SHARED=1`, which turns absence into a failure (CI sets it).
pub fn shared_dir(test: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("PALIGEMMA_SHARED") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    if dir.join("reference").is_dir() {
        return Some(dir);
    }
    if std::env::var("PALIGEMMA_REQUIRE_SHARED").as_deref() == Ok("1") {
        panic!("{test}: shared data not found at {} and PALIGEMMA_REQUIRE_SHARED=1", dir.display());
    }
    eprintln!(
        "\n*** {test} skipped: shared data not found at {} (set PALIGEMMA_SHARED) ***\n",
        dir.display()
    );
    None
}

/// The METEOR jar and a working `java`, or `None` after a loud message. `PALIGEMMA_REQUIRE_JAVA=1`
/// makes their absence a failure.
pub fn meteor_jar(test: &str) -> Option<PathBuf> {
    let why = match metrics::meteor::jar::locate_jar(None) {
        Ok(jar) => {
            let java = metrics::meteor::jar::java_command(None);
            match std::process::Command::new(&java).arg("-version").output() {
                Ok(o) if o.status.success() => return Some(jar),
                Ok(o) => format!(
                    "{} -version failed: {}",
                    java.display(),
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => format!("cannot run {}: {e}", java.display()),
            }
        }
        Err(e) => e.to_string(),
    };
    if std::env::var("PALIGEMMA_REQUIRE_JAVA").as_deref() == Ok("1") {
        panic!("{test}: METEOR jar/Java unavailable and PALIGEMMA_REQUIRE_JAVA=1: {why}");
    }
    eprintln!("\n*** {test} skipped: METEOR jar/Java unavailable: {why} ***\n");
    None
}

pub fn read_json(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Asserts |a - b| <= tol with a message naming what differs.
pub fn close(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got:.17}, reference {want:.17}, |diff| {:.3e} > {tol:e}",
        (got - want).abs()
    );
}

pub fn fixture(name: &str) -> serde_json::Value {
    read_json(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name))
}

/// The RSICD test corpus of `rsicd_test_reference.json`: (image id, raw references, raw hypothesis, kind)
/// in the fixture's order (the annotation file's order, as pycocoevalcap scored it).
pub fn rsicd_test_corpus(shared: &Path) -> Vec<(String, Vec<String>, String, String)> {
    let f = fixture("rsicd_test_reference.json");
    let ann =
        read_json(&shared.join("data/remote-sensing").join(f["annotations"].as_str().unwrap()));
    let refs: std::collections::HashMap<&str, Vec<String>> = ann["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|im| im["split"] == "test")
        .map(|im| {
            let caps = im["sentences"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["raw"].as_str().unwrap().to_string());
            (im["filename"].as_str().unwrap(), caps.collect())
        })
        .collect();
    f["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|im| {
            let id = im["id"].as_str().unwrap();
            let r = refs
                .get(id)
                .unwrap_or_else(|| panic!("{id} is not a test image of the annotations"))
                .clone();
            (
                id.to_string(),
                r,
                im["hypothesis"].as_str().unwrap().to_string(),
                im["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
