//! `hub::download_pinned` against the loopback hub (tests/loopback), on a dataset repo: pinned downloads are checked
//! file by file (a wrong pin fails naming the file and both values, before the bytes when the hub announces them),
//! a cache holding the pinned commit costs no request, and unpinned downloads record the commit and checksums that
//! pin them. Every test has its own server, cache and `Options`.
mod common;
mod loopback;

use common::{options, random_bytes, TempDir};
use hub::{HubError, Pin, Repo};
use loopback::{sha256_hex, File, RepoSpec, Server, COMMIT};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

const ID: &str = "someone/rsicd-like";
const TRAIN: &str = "data/train-00000-of-00001.parquet";
const VALID: &str = "data/valid-00000-of-00001.parquet";
/// Small enough to be a regular git file (no LFS): its ETag is no sha256, so it is hashed.
const TEST: &str = "data/test-00000-of-00001.parquet";

fn content(name: &str) -> Vec<u8> {
    match name {
        TRAIN => random_bytes(90_000, 1),
        VALID => random_bytes(20_000, 2),
        TEST => random_bytes(3_000, 3),
        _ => b"# a dataset card".to_vec(),
    }
}

fn dataset() -> RepoSpec {
    let file = |name: &str, lfs| File { name: name.to_string(), bytes: content(name), lfs };
    RepoSpec {
        kind: "datasets",
        id: ID.to_string(),
        files: vec![
            file(".gitattributes", false),
            file("README.md", false),
            file(TRAIN, true),
            file(VALID, true),
            file(TEST, false),
        ],
        token: None,
    }
}

fn pin(name: &str) -> Pin {
    let bytes = content(name);
    Pin { path: name.to_string(), size: bytes.len() as u64, sha256: sha256_hex(&bytes) }
}

fn parquet(file: &str) -> bool {
    file.ends_with(".parquet")
}

fn requests_for(server: &Server, needle: &str) -> Vec<loopback::Logged> {
    server.log().into_iter().filter(|r| r.path.contains(needle)).collect()
}

/// Asserts that `err` is a mismatch of the pin's `what` (size, sha256) whose message holds every needle.
fn assert_mismatch(err: &HubError, what: &str, needles: &[&str]) {
    let message = err.to_string();
    assert!(matches!(err, HubError::PinMismatch(m) if m.what == what), "{err:?}");
    for needle in needles {
        assert!(message.contains(needle), "{needle:?} missing from: {message}");
    }
}

#[test]
fn a_pinned_dataset_is_downloaded_at_its_commit_and_each_file_verified() {
    let tmp = TempDir::new("ok");
    let server = Server::start(vec![dataset()]);
    let pins = [pin(TRAIN), pin(TEST)];
    let repo = Repo::dataset(ID);
    let snap = hub::download_pinned(&repo, COMMIT, &pins, &parquet, &options(&server.url, &tmp.0))
        .unwrap();
    assert_eq!(snap.dir, tmp.0.join("datasets--someone--rsicd-like/snapshots").join(COMMIT));
    assert_eq!(snap.commit, COMMIT);
    assert!(snap.pinned);
    assert_eq!(snap.files, pins);
    assert_eq!(std::fs::read(snap.dir.join(TRAIN)).unwrap(), content(TRAIN));
    assert_eq!(std::fs::read(snap.dir.join(TEST)).unwrap(), content(TEST));
    // Exactly the pinned files, at the pinned commit; the pins are the file list, so no revision info is asked.
    assert!(!snap.dir.join(VALID).exists() && requests_for(&server, "valid-").is_empty());
    assert!(requests_for(&server, "/api/").is_empty(), "{:?}", server.log());
    let resolves = requests_for(&server, "/resolve/");
    assert!(
        resolves.iter().all(|r| r.path.contains(&format!("/resolve/{COMMIT}/"))),
        "{resolves:?}"
    );

    // Again: everything is cached, nothing is requested.
    let before = server.log().len();
    let again = hub::download_pinned(&repo, COMMIT, &pins, &parquet, &options(&server.url, &tmp.0))
        .unwrap();
    assert_eq!(again, snap);
    assert_eq!(server.log().len(), before);
}

#[test]
fn a_wrong_pinned_sha256_names_the_file_and_both_values() {
    let tmp = TempDir::new("sha");
    let server = Server::start(vec![dataset()]);
    let repo = Repo::dataset(ID);
    let opts = options(&server.url, &tmp.0);
    let wrong = "ab".repeat(32);

    // An LFS file: the hub announces its sha256, so the pin fails before its bytes are fetched.
    let pins = [Pin { sha256: wrong.clone(), ..pin(TRAIN) }];
    let err = hub::download_pinned(&repo, COMMIT, &pins, &parquet, &opts).unwrap_err();
    let announced = sha256_hex(&content(TRAIN));
    assert_mismatch(&err, "sha256", &[TRAIN, &wrong, &announced, "as the hub announces it"]);
    assert!(requests_for(&server, "/cdn/").is_empty(), "{:?}", server.log());

    // A regular file: hashed once downloaded.
    let pins = [Pin { sha256: wrong.clone(), ..pin(TEST) }];
    let err = hub::download_pinned(&repo, COMMIT, &pins, &parquet, &opts).unwrap_err();
    assert_mismatch(&err, "sha256", &[TEST, &wrong, &sha256_hex(&content(TEST)), "delete"]);
}

#[test]
fn a_wrong_pinned_size_names_the_file_and_both_values() {
    let tmp = TempDir::new("size");
    let server = Server::start(vec![dataset()]);
    let repo = Repo::dataset(ID);
    let opts = options(&server.url, &tmp.0);
    for name in [TRAIN, TEST] {
        let right = pin(name);
        let pins = [Pin { size: right.size + 1, ..right.clone() }];
        let err = hub::download_pinned(&repo, COMMIT, &pins, &parquet, &opts).unwrap_err();
        let (expected, found) =
            (format!("{} bytes", right.size + 1), format!("{} bytes", right.size));
        assert_mismatch(&err, "size", &[name, &expected, &found]);
    }
    // Both sizes are announced by the hub (X-Linked-Size, Content-Length): no bytes were fetched.
    assert!(requests_for(&server, "/cdn/").is_empty());
    assert!(requests_for(&server, "/resolve/").iter().all(|r| r.method == "HEAD"));
}

/// The pinned commit's snapshot as Python leaves it: blobs and relative symlinks, no refs/ needed.
fn prefill(cache: &Path, names: &[&str]) -> PathBuf {
    let repo_dir = cache.join("datasets--someone--rsicd-like");
    let snapshot = repo_dir.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(snapshot.join("data")).unwrap();
    std::fs::create_dir_all(repo_dir.join("blobs")).unwrap();
    for name in names {
        let etag = sha256_hex(&content(name));
        std::fs::write(repo_dir.join("blobs").join(&etag), content(name)).unwrap();
        std::os::unix::fs::symlink(Path::new("../../../blobs").join(&etag), snapshot.join(name))
            .unwrap();
    }
    snapshot
}

#[test]
fn a_prefilled_cache_with_the_pinned_commit_is_used_without_any_request() {
    let tmp = TempDir::new("prefilled");
    let snapshot = prefill(&tmp.0, &[TRAIN, VALID]);
    let server = Server::start(vec![dataset()]);
    server.knobs.fail_everything.store(true, Ordering::SeqCst);
    let repo = Repo::dataset(ID);
    let opts = options(&server.url, &tmp.0);
    let pins = [pin(TRAIN), pin(VALID)];
    let snap = hub::download_pinned(&repo, COMMIT, &pins, &parquet, &opts).unwrap();
    assert_eq!((snap.dir, snap.files), (snapshot.clone(), pins.to_vec()));
    assert!(server.log().is_empty(), "{:?}", server.log());

    // The cached bytes are checked, not trusted: an altered blob fails, still without a request.
    let blob = std::fs::canonicalize(snapshot.join(VALID)).unwrap();
    let mut altered = content(VALID);
    altered[0] ^= 1;
    std::fs::write(&blob, &altered).unwrap();
    let err = hub::download_pinned(&repo, COMMIT, &pins, &parquet, &opts).unwrap_err();
    assert_mismatch(&err, "sha256", &[VALID, &blob.display().to_string()]);
    assert!(server.log().is_empty(), "{:?}", server.log());

    // Offline, a pinned file the cache lacks is named.
    let mut offline = options("http://127.0.0.1:9", &tmp.0);
    offline.offline = true;
    let err = hub::download_pinned(&repo, COMMIT, &[pin(TEST)], &parquet, &offline).unwrap_err();
    assert!(matches!(err, HubError::Offline { .. }) && err.to_string().contains(TEST), "{err}");
}

#[test]
fn unpinned_downloads_record_the_commit_and_checksums_that_pin_them() {
    let tmp = TempDir::new("unpinned");
    let server = Server::start(vec![dataset()]);
    let repo = Repo::dataset(ID);
    let opts = options(&server.url, &tmp.0);
    let snap = hub::download_pinned(&repo, "main", &[], &parquet, &opts).unwrap();
    assert!(!snap.pinned);
    assert_eq!(snap.commit, COMMIT);
    assert_eq!(snap.files, [pin(TEST), pin(TRAIN), pin(VALID)]);
    assert!(!snap.dir.join("README.md").exists());
    assert_eq!(
        std::fs::read_to_string(tmp.0.join("datasets--someone--rsicd-like/refs/main")).unwrap(),
        COMMIT
    );

    // What it recorded pins it: the next run verifies against it from the cache, with no request.
    let before = server.log().len();
    let pinned = hub::download_pinned(&repo, &snap.commit, &snap.files, &parquet, &opts).unwrap();
    assert!(pinned.pinned && pinned.files == snap.files && pinned.dir == snap.dir);
    assert_eq!(server.log().len(), before);

    // Offline, unpinned: what the cached snapshot of the revision holds.
    let mut offline = options("http://127.0.0.1:9", &tmp.0);
    offline.offline = true;
    let cached = hub::download_pinned(&repo, "main", &[], &parquet, &offline).unwrap();
    assert_eq!(cached, snap);
}

#[test]
fn pins_need_a_commit_and_well_formed_values() {
    let tmp = TempDir::new("invalid");
    let server = Server::start(vec![dataset()]);
    let repo = Repo::dataset(ID);
    let opts = options(&server.url, &tmp.0);
    let cases: [(&str, Vec<Pin>, &str); 4] = [
        ("main", vec![pin(TRAIN)], "not a full commit sha"),
        (COMMIT, vec![Pin { sha256: "abc".into(), ..pin(TRAIN) }], "not 64 hex digits"),
        (COMMIT, vec![Pin { path: "../x.parquet".into(), ..pin(TRAIN) }], "leave the snapshot"),
        (COMMIT, vec![pin(TRAIN), pin(TRAIN)], "pinned twice"),
    ];
    for (revision, pins, needle) in cases {
        let err = hub::download_pinned(&repo, revision, &pins, &parquet, &opts).unwrap_err();
        assert!(matches!(err, HubError::InvalidPins { .. }), "{err:?}");
        assert!(err.to_string().contains(needle), "{needle:?} missing from: {err}");
    }
    assert!(server.log().is_empty(), "{:?}", server.log());
}
