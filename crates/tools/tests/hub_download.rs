//! `download rsicd` end to end through the `pgtools` binary, against the hub crate's loopback hub serving a dataset
//! repo named as RSICD's (`HF_ENDPOINT` points there, `HF_HUB_CACHE` at a temporary folder): the files reach the
//! Hugging Face cache and `--out` with their repo paths and `source.json`, the folder loads as a dataset, a
//! non-empty `--out` needs `--overwrite`, the hub-only options are refused elsewhere, and a signal stops the
//! download resumably with 128 + its number. No network beyond 127.0.0.1.
#[allow(dead_code)]
#[path = "../../hub/tests/common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../../hub/tests/loopback/mod.rs"]
mod loopback;

use common::TempDir;
use loopback::{sha256_hex, File, RepoSpec, Server, COMMIT};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const TRAIN: &str = "data/train-00000-of-00001.parquet";
const VALID: &str = "data/valid-00000-of-00001.parquet";

/// The RSICD-layout parquet fixtures of rsicd-data (embedded JPEGs, filename and captions columns).
fn fixture(name: &str) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rsicd-data/tests/fixtures/hf_parquet");
    std::fs::read(dir.join(name)).unwrap()
}

/// `arampacha/rsicd` as the loopback serves it: two parquet files in LFS, and files the selection skips.
fn rsicd() -> RepoSpec {
    let file = |name: &str, bytes: Vec<u8>, lfs| File { name: name.to_string(), bytes, lfs };
    RepoSpec {
        kind: "datasets",
        id: "arampacha/rsicd".to_string(),
        files: vec![
            file(".gitattributes", b"*.parquet filter=lfs".to_vec(), false),
            file("README.md", b"# RSICD".to_vec(), false),
            file(TRAIN, fixture(TRAIN), true),
            file(VALID, fixture(VALID), true),
        ],
        token: None,
    }
}

/// `pgtools` with the hub at `server` and the Hugging Face cache (and home: no saved token) under `tmp`.
fn pgtools(server: &str, tmp: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgtools"));
    cmd.args(args)
        .env("HF_ENDPOINT", server)
        .env("HF_HOME", tmp.join("hf-home"))
        .env("HF_HUB_CACHE", tmp.join("cache"))
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        // Whatever the environment running the tests says: online, no token.
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("TRANSFORMERS_OFFLINE")
        .env_remove("HF_TOKEN")
        .env_remove("HUGGING_FACE_HUB_TOKEN")
        .env_remove("HF_TOKEN_PATH")
        .env_remove("HUGGINGFACE_HUB_CACHE");
    cmd
}

fn run(mut cmd: Command) -> (i32, String, String) {
    let out = cmd.output().expect("pgtools runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn requests_for(server: &Server, needle: &str) -> usize {
    server.log().iter().filter(|r| r.path.contains(needle)).count()
}

#[test]
fn download_rsicd_fills_the_cache_and_out_with_source_json_and_the_folder_loads() {
    let tmp = TempDir::new("e2e");
    let server = Server::start(vec![rsicd()]);
    let out = tmp.0.join("rsicd");
    let out_s = out.to_str().unwrap();
    let (code, stdout, err) =
        run(pgtools(&server.url, &tmp.0, &["download", "rsicd", "--out", out_s, "--retries", "0"]));
    assert_eq!(code, 0, "{stdout}{err}");

    // The cache, in huggingface_hub's layout; `--out`, with the repo paths; nothing unselected.
    let snapshot = tmp.0.join("cache/datasets--arampacha--rsicd/snapshots").join(COMMIT);
    for name in [TRAIN, VALID] {
        assert_eq!(std::fs::read(snapshot.join(name)).unwrap(), fixture(name), "{name}");
        assert_eq!(std::fs::read(out.join(name)).unwrap(), fixture(name), "{name}");
    }
    assert!(!out.join("README.md").exists() && !snapshot.join("README.md").exists());
    let source: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("source.json")).unwrap()).unwrap();
    assert_eq!(source["repo"], "arampacha/rsicd");
    assert_eq!(source["revision"], "main");
    assert_eq!(source["commit"], COMMIT);
    assert_eq!(source["pinned"], false);
    let files = source["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["path"], TRAIN);
    assert_eq!(files[0]["size"], fixture(TRAIN).len() as u64);
    assert_eq!(files[0]["sha256"], sha256_hex(&fixture(TRAIN)));
    assert_eq!(files[1]["path"], VALID);
    // Unpinned: the pin block to paste, with the resolved commit and the checksums.
    for needle in [
        "not pinned",
        "PinnedFile {",
        &format!("revision: \"{COMMIT}\""),
        &sha256_hex(&fixture(VALID)),
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing from: {stdout}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The folder is a dataset: the parquet files under data/, source.json beside them taken for no annotation.
    let (code, stdout, err) =
        run(pgtools(&server.url, &tmp.0, &["validate", "--dataset", out_s, "--no-decode"]));
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(
        err.contains("(hf-parquet)") && err.contains(TRAIN) && !err.contains("source.json"),
        "{err}"
    );

    // Again into the same, now non-empty --out: refused before anything is asked of the hub.
    let requests = server.log().len();
    let (code, _, err) = run(pgtools(&server.url, &tmp.0, &["download", "rsicd", "--out", out_s]));
    assert_eq!(code, 1);
    assert!(err.contains("not empty") && err.contains("--overwrite"), "{err}");
    assert_eq!(server.log().len(), requests);

    // With --overwrite, at the commit itself: the cache answers, nothing is downloaded again.
    let cdn = requests_for(&server, "/cdn/");
    let (code, stdout, err) = run(pgtools(
        &server.url,
        &tmp.0,
        &["download", "rsicd", "--out", out_s, "--overwrite", "--revision", COMMIT],
    ));
    assert_eq!(code, 0, "{stdout}{err}");
    assert_eq!(requests_for(&server, "/cdn/"), cdn);
    let source: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("source.json")).unwrap()).unwrap();
    assert_eq!((&source["revision"], &source["commit"]), (&COMMIT.into(), &COMMIT.into()));
    assert_eq!(std::fs::read(out.join(TRAIN)).unwrap(), fixture(TRAIN));
}

#[test]
fn revision_and_overwrite_are_refused_for_sources_that_are_not_hub_datasets() {
    let tmp = TempDir::new("refused");
    // Nothing listens on port 9: a refusal must come before any request.
    let hub = "http://127.0.0.1:9";
    let out = tmp.0.join("out");
    let out_s = out.to_str().unwrap();
    let cases: [&[&str]; 3] = [
        &["download", "ucm-captions", "--out", out_s, "--revision", "main"],
        &["download", "sydney-captions", "--out", out_s, "--overwrite"],
        &["download", "--url", "http://127.0.0.1:9/x.json", "--out", out_s, "--revision", "v1"],
    ];
    for args in cases {
        let (code, stdout, err) = run(pgtools(hub, &tmp.0, args));
        assert_eq!(code, 1, "{args:?}: {stdout}{err}");
        assert!(err.contains("applies to hub dataset sources only (rsicd)"), "{args:?}: {err}");
    }
    assert!(!out.exists());
}

#[test]
fn a_signal_stops_a_hub_download_resumably_with_128_plus_its_number() {
    let tmp = TempDir::new("signal");
    let server = Server::start(vec![rsicd()]);
    // The first file's body: half of it, then silence; the read times out and the retry finds the stop request.
    server.knobs.stall_first_cdn.store(true, Ordering::SeqCst);
    let out = tmp.0.join("rsicd");
    let args = [
        "download",
        "rsicd",
        "--out",
        out.to_str().unwrap(),
        "--retries",
        "1",
        "--retry-delay",
        "0.01",
        "--read-timeout",
        "1",
    ];
    let mut cmd = pgtools(&server.url, &tmp.0, &args);
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while requests_for(&server, "/cdn/") == 0 && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill();
        panic!("pgtools did not stop after SIGTERM");
    }
    let output = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(143), "{err}");
    assert!(err.contains("run the same command again to resume"), "{err}");
    let blobs = tmp.0.join("cache/datasets--arampacha--rsicd/blobs");
    let kept: Vec<_> = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "incomplete"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(!out.join("source.json").exists());

    // The same command again resumes and finishes.
    let (code, stdout, err) = run(pgtools(&server.url, &tmp.0, &args));
    assert_eq!(code, 0, "{stdout}{err}");
    assert_eq!(std::fs::read(out.join(TRAIN)).unwrap(), fixture(TRAIN));
    assert_eq!(std::fs::read(out.join(VALID)).unwrap(), fixture(VALID));
    assert!(!kept[0].exists());
}
