//! `hub` against a loopback hub (tests/loopback): the cache layout huggingface_hub writes, resumes with `Range`,
//! verification, gated repos, offline use and a pre-filled cache that costs no request. Every test has its own
//! server, cache and `Options` (nothing touches the process environment: the tests run in parallel threads).
mod common;
mod loopback;

use common::{options, random_bytes, TempDir};
use hub::{HubError, Repo};
use loopback::{sha256_hex, File, RepoSpec, Server, COMMIT};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

fn file(name: &str, bytes: impl Into<Vec<u8>>, lfs: bool) -> File {
    File { name: name.to_string(), bytes: bytes.into(), lfs }
}

/// A PaliGemma-like repo: sharded safetensors (LFS) with their index, configs, and files the default filter skips.
fn model_repo(id: &str, token: Option<&str>) -> RepoSpec {
    let index = concat!(
        r#"{"metadata": {}, "weight_map": {"a.weight": "model-00001-of-00002.safetensors", "#,
        r#""b.weight": "model-00002-of-00002.safetensors"}}"#
    );
    RepoSpec {
        kind: "models",
        id: id.to_string(),
        files: vec![
            file(".gitattributes", "*.safetensors filter=lfs", false),
            file("README.md", "# a model", false),
            file("config.json", r#"{"model_type": "paligemma"}"#, false),
            file("tokenizer.json", r#"{"model": {}}"#, false),
            file("model.safetensors.index.json", index, false),
            file("model-00001-of-00002.safetensors", random_bytes(300_000, 1), true),
            file("model-00002-of-00002.safetensors", random_bytes(200_000, 2), true),
            file("pytorch_model.bin", random_bytes(1000, 3), true),
        ],
        token: token.map(str::to_string),
    }
}

fn requests_for(server: &Server, needle: &str) -> Vec<loopback::Logged> {
    server.log().into_iter().filter(|r| r.path.contains(needle)).collect()
}

#[test]
fn downloads_a_snapshot_into_the_huggingface_hub_cache_layout() {
    let tmp = TempDir::new("layout");
    let server = Server::start(vec![model_repo("google/pg-test", None)]);
    let opts = options(&server.url, &tmp.0);
    let dir = hub::resolve_model("google/pg-test", &opts).unwrap();
    let repo_dir = tmp.0.join("models--google--pg-test");
    assert_eq!(dir, repo_dir.join("snapshots").join(COMMIT));
    assert_eq!(std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(), COMMIT);
    let shard = dir.join("model-00001-of-00002.safetensors");
    let sha = sha256_hex(&random_bytes(300_000, 1));
    assert_eq!(std::fs::read_link(&shard).unwrap(), Path::new("../../blobs").join(&sha));
    assert_eq!(std::fs::read(&shard).unwrap(), random_bytes(300_000, 1));
    assert_eq!(
        std::fs::read_to_string(dir.join("config.json")).unwrap(),
        r#"{"model_type": "paligemma"}"#
    );
    for skipped in ["README.md", ".gitattributes", "pytorch_model.bin"] {
        assert!(!dir.join(skipped).exists(), "{skipped} downloaded");
        assert!(requests_for(&server, skipped).is_empty(), "{skipped} requested");
    }
    let leftovers: Vec<_> = std::fs::read_dir(repo_dir.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Metadata from a HEAD on each wanted file; the LFS files' bytes through the CDN redirect.
    let heads =
        requests_for(&server, "/resolve/").into_iter().filter(|r| r.method == "HEAD").count();
    assert_eq!(heads, 5);
    assert_eq!(requests_for(&server, "/cdn/").len(), 2);

    // Complete in the cache now: the next resolution makes no request, and `download` fetches nothing again.
    let before = server.log().len();
    assert_eq!(hub::resolve_model("google/pg-test", &opts).unwrap(), dir);
    assert_eq!(server.log().len(), before);
    assert_eq!(
        hub::download(&Repo::model("google/pg-test"), "main", &hub::default_model_files, &opts)
            .unwrap(),
        dir
    );
    let after: Vec<_> = server.log()[before..].iter().map(|r| r.path.clone()).collect();
    assert_eq!(after, ["/api/models/google/pg-test/revision/main"]);
}

#[test]
fn a_cut_connection_is_resumed_with_range_on_the_next_run_and_verified() {
    let tmp = TempDir::new("cut");
    let server = Server::start(vec![model_repo("google/pg-test", None)]);
    server.knobs.cut_first_cdn.store(true, Ordering::SeqCst);
    let opts = options(&server.url, &tmp.0);
    let err = hub::resolve_model("google/pg-test", &opts).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, HubError::Download { .. }), "{err:?}");
    assert!(message.contains("run the same command again to resume"), "{message}");
    let sha = sha256_hex(&random_bytes(300_000, 1));
    let part = tmp.0.join("models--google--pg-test/blobs").join(format!("{sha}.incomplete"));
    let kept = std::fs::metadata(&part).unwrap().len();
    assert_eq!(kept, 150_000);

    let dir = hub::resolve_model("google/pg-test", &opts).unwrap();
    let cdn = requests_for(&server, &format!("/cdn/{sha}"));
    assert_eq!(cdn.len(), 2);
    assert_eq!(cdn[1].range.as_deref(), Some("bytes=150000-"));
    assert_eq!(
        std::fs::read(dir.join("model-00001-of-00002.safetensors")).unwrap(),
        random_bytes(300_000, 1)
    );
    assert!(!part.exists());
}

#[test]
fn a_cut_connection_is_resumed_within_one_call_by_a_retry() {
    let tmp = TempDir::new("retry");
    let server = Server::start(vec![model_repo("google/pg-test", None)]);
    server.knobs.cut_first_cdn.store(true, Ordering::SeqCst);
    let mut opts = options(&server.url, &tmp.0);
    opts.retries = 1;
    let dir = hub::resolve_model("google/pg-test", &opts).unwrap();
    let ranges: Vec<_> = requests_for(&server, "/cdn/").into_iter().map(|r| r.range).collect();
    assert_eq!(ranges, [None, Some("bytes=150000-".to_string()), None]);
    assert_eq!(
        std::fs::read(dir.join("model-00001-of-00002.safetensors")).unwrap(),
        random_bytes(300_000, 1)
    );
}

#[test]
fn a_stalled_transfer_times_out_and_resumes() {
    let tmp = TempDir::new("stall");
    let server = Server::start(vec![model_repo("google/pg-test", None)]);
    server.knobs.stall_first_cdn.store(true, Ordering::SeqCst);
    let mut opts = options(&server.url, &tmp.0);
    opts.timeout = Duration::from_millis(500);
    opts.retries = 1;
    let started = std::time::Instant::now();
    let dir = hub::resolve_model("google/pg-test", &opts).unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    let ranges: Vec<_> = requests_for(&server, "/cdn/").into_iter().map(|r| r.range).collect();
    assert_eq!(ranges[1].as_deref(), Some("bytes=150000-"));
    assert_eq!(
        std::fs::read(dir.join("model-00001-of-00002.safetensors")).unwrap(),
        random_bytes(300_000, 1)
    );
}

#[test]
fn a_corrupt_lfs_file_fails_its_sha256_and_is_deleted() {
    let tmp = TempDir::new("corrupt");
    let server = Server::start(vec![model_repo("google/pg-test", None)]);
    server.knobs.corrupt_cdn.store(true, Ordering::SeqCst);
    let err = hub::resolve_model("google/pg-test", &options(&server.url, &tmp.0)).unwrap_err();
    assert!(matches!(err, HubError::Corrupt { what: "SHA-256 mismatch", .. }), "{err:?}");
    assert!(err.to_string().contains("model-00001-of-00002.safetensors"), "{err}");
    let blobs: Vec<_> = std::fs::read_dir(tmp.0.join("models--google--pg-test/blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() != 40) // the small regular files (git-sha1 ETags) are fine
        .collect();
    assert!(blobs.is_empty(), "{blobs:?}");
}

#[test]
fn a_gated_repo_without_a_token_says_to_accept_the_licence_and_set_hf_token() {
    let tmp = TempDir::new("gated");
    let server = Server::start(vec![model_repo("google/pg-gated", Some("hf_good"))]);
    let mut opts = options(&server.url, &tmp.0);
    let err = hub::resolve_model("google/pg-gated", &opts).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, HubError::Access { status: 401, .. }), "{err:?}");
    for needle in
        ["accept the licence", "HF_TOKEN", &format!("{}/google/pg-gated", server.url), "HTTP 401"]
    {
        assert!(message.contains(needle), "{needle:?} missing from: {message}");
    }
    opts.token = Some("hf_wrong".into());
    let message = hub::resolve_model("google/pg-gated", &opts).unwrap_err().to_string();
    assert!(message.contains("token was refused"), "{message}");

    opts.token = Some("hf_good".into());
    let dir = hub::resolve_model("google/pg-gated", &opts).unwrap();
    assert!(dir.join("model-00002-of-00002.safetensors").is_file());
    let api = requests_for(&server, "/api/");
    assert_eq!(api.last().unwrap().auth.as_deref(), Some("Bearer hf_good"));
}

/// A snapshot as Python leaves it: blobs, relative symlinks, refs/main.
fn prefill(cache: &Path) -> PathBuf {
    let repo_dir = cache.join("models--google--pg-cached");
    let snapshot = repo_dir.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo_dir.join("blobs")).unwrap();
    std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
    std::fs::write(repo_dir.join("refs/main"), COMMIT).unwrap();
    for (name, bytes) in
        [("config.json", &b"{}"[..]), ("tokenizer.json", b"{}"), ("model.safetensors", b"weights")]
    {
        let etag = sha256_hex(bytes);
        std::fs::write(repo_dir.join("blobs").join(&etag), bytes).unwrap();
        std::os::unix::fs::symlink(Path::new("../../blobs").join(&etag), snapshot.join(name))
            .unwrap();
    }
    snapshot
}

#[test]
fn a_prefilled_cache_is_used_without_any_request() {
    let tmp = TempDir::new("prefilled");
    let snapshot = prefill(&tmp.0);
    let server = Server::start(vec![]);
    server.knobs.fail_everything.store(true, Ordering::SeqCst);
    let opts = options(&server.url, &tmp.0);
    assert_eq!(hub::resolve_model("google/pg-cached", &opts).unwrap(), snapshot);
    assert_eq!(hub::resolve_model(&format!("google/pg-cached@{COMMIT}"), &opts).unwrap(), snapshot);
    assert!(server.log().is_empty(), "{:?}", server.log());

    // Offline: no request at all, whatever the endpoint.
    let mut offline = options("http://127.0.0.1:9", &tmp.0);
    offline.offline = true;
    let repo = Repo::model("google/pg-cached");
    assert_eq!(
        hub::download(&repo, "main", &hub::default_model_files, &offline).unwrap(),
        snapshot
    );
    // Online but the hub is unreachable: the cached snapshot of the revision is used.
    let unreachable = options("http://127.0.0.1:9", &tmp.0);
    assert_eq!(
        hub::download(&repo, "main", &hub::default_model_files, &unreachable).unwrap(),
        snapshot
    );
}

#[test]
fn offline_without_the_files_is_an_error_that_names_what_is_missing() {
    let tmp = TempDir::new("offline");
    let snapshot = prefill(&tmp.0);
    let mut opts = options("http://127.0.0.1:9", &tmp.0);
    opts.offline = true;
    let err = hub::resolve_model("google/pg-absent", &opts).unwrap_err();
    assert!(matches!(err, HubError::Offline { .. }), "{err:?}");
    assert!(err.to_string().contains("HF_HUB_OFFLINE"), "{err}");
    std::fs::remove_file(snapshot.join("model.safetensors")).unwrap();
    let err = hub::resolve_model("google/pg-cached", &opts).unwrap_err();
    assert!(
        matches!(&err, HubError::Incomplete { missing, .. } if missing == &["model.safetensors"]),
        "{err:?}"
    );
}

#[test]
fn datasets_have_their_own_cache_folder_and_urls() {
    let tmp = TempDir::new("dataset");
    let parquet = random_bytes(70_000, 9);
    let spec = RepoSpec {
        kind: "datasets",
        id: "someone/captions".into(),
        files: vec![
            file("data/train.parquet", parquet.clone(), true),
            file("README.md", "# data", false),
        ],
        token: None,
    };
    let server = Server::start(vec![spec]);
    let repo = Repo::dataset("someone/captions");
    let only_parquet = |f: &str| f.ends_with(".parquet");
    let dir = hub::download(&repo, "main", &only_parquet, &options(&server.url, &tmp.0)).unwrap();
    assert_eq!(dir, tmp.0.join("datasets--someone--captions/snapshots").join(COMMIT));
    let link = dir.join("data/train.parquet");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("../../../blobs").join(sha256_hex(&parquet))
    );
    assert_eq!(std::fs::read(&link).unwrap(), parquet);
    let paths: Vec<_> = server.log().into_iter().map(|r| r.path).collect();
    assert_eq!(paths[0], "/api/datasets/someone/captions/revision/main");
    assert_eq!(paths[1], format!("/datasets/someone/captions/resolve/{COMMIT}/data/train.parquet"));
}

#[test]
fn a_local_directory_wins_and_unknown_repos_and_revisions_are_named() {
    let tmp = TempDir::new("local");
    let server = Server::start(vec![model_repo("google/pg-test", None)]);
    let opts = options(&server.url, &tmp.0.join("cache"));
    let local = tmp.0.to_str().unwrap();
    assert_eq!(hub::resolve_model(local, &opts).unwrap(), tmp.0);
    assert!(!hub::is_repo_id(local) && hub::is_repo_id("google/pg-test"));

    let err = hub::resolve_model("nobody/nothing", &opts).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, HubError::NotFound { .. }), "{err:?}");
    assert!(message.contains("nobody/nothing") && message.contains("local directory"), "{message}");
    let message = hub::resolve_model("google/pg-test@v9", &opts).unwrap_err().to_string();
    assert!(message.contains("revision \"v9\" not found"), "{message}");
    let message = hub::resolve_model("not-an-id", &opts).unwrap_err().to_string();
    assert!(message.contains("neither an existing local directory nor a hub id"), "{message}");
    assert!(server.log().iter().all(|r| !r.path.contains("not-an-id")));
}

static POLLS: AtomicUsize = AtomicUsize::new(0);

/// Stops on the second poll: after the first chunk of the download.
fn stop_after_one_chunk() -> bool {
    POLLS.fetch_add(1, Ordering::SeqCst) >= 1
}

#[test]
fn a_stop_request_keeps_the_partial_file_for_the_next_run() {
    let tmp = TempDir::new("stop");
    let server = Server::start(vec![model_repo("google/pg-test", None)]);
    let mut opts = options(&server.url, &tmp.0);
    opts.should_stop = Some(stop_after_one_chunk);
    let repo = Repo::model("google/pg-test");
    let shard = |f: &str| f == "model-00001-of-00002.safetensors";
    let err = hub::download(&repo, "main", &shard, &opts).unwrap_err();
    let HubError::Interrupted { part, bytes, .. } = &err else { panic!("{err:?}") };
    assert!(*bytes > 0 && *bytes < 300_000, "{bytes}");
    assert_eq!(std::fs::metadata(part).unwrap().len(), *bytes);
    opts.should_stop = None;
    let dir = hub::download(&repo, "main", &shard, &opts).unwrap();
    let last = requests_for(&server, "/cdn/").into_iter().find(|r| r.range.is_some()).unwrap();
    assert_eq!(last.range, Some(format!("bytes={bytes}-")));
    assert_eq!(
        std::fs::read(dir.join("model-00001-of-00002.safetensors")).unwrap(),
        random_bytes(300_000, 1)
    );
}

static STOP_SOON: AtomicBool = AtomicBool::new(false);

/// Set by a thread of `a_stop_request_ends_a_retry_wait_at_once`, once its first request has failed.
fn stop_soon() -> bool {
    STOP_SOON.load(Ordering::SeqCst)
}

#[test]
fn a_stop_request_ends_a_retry_wait_at_once() {
    let tmp = TempDir::new("stop-retry");
    let server = Server::start(vec![model_repo("google/pg-test", None)]);
    server.knobs.fail_everything.store(true, Ordering::SeqCst);
    let mut opts = options(&server.url, &tmp.0);
    opts.retries = 5;
    opts.backoff = Duration::from_secs(30);
    opts.should_stop = Some(stop_soon);
    let started = std::time::Instant::now();
    // The stop comes during the first backoff wait (30 s): the first request fails at once, the flag is set later.
    let signal = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(300));
        STOP_SOON.store(true, Ordering::SeqCst);
    });
    let err = hub::download(&Repo::model("google/pg-test"), "main", &|_| true, &opts).unwrap_err();
    signal.join().unwrap();
    let elapsed = started.elapsed();
    assert!(matches!(err, HubError::Interrupted { bytes: 0, .. }), "{err:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    // Stopped before the retry: the one failed request is all the server saw.
    assert_eq!(server.log().len(), 1, "{:?}", server.log());

    // A stop already requested when an attempt fails: no wait, no retry.
    let started = std::time::Instant::now();
    let err = hub::download(&Repo::model("google/pg-test"), "main", &|_| true, &opts).unwrap_err();
    assert!(matches!(err, HubError::Interrupted { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(server.log().len(), 2, "{:?}", server.log());
}

#[test]
fn a_renamed_repo_is_followed_through_relative_redirects_with_the_token() {
    let tmp = TempDir::new("renamed");
    let server = Server::start(vec![model_repo("google/pg-test", None)]);
    let mut opts = options(&server.url, &tmp.0);
    opts.token = Some("hf_mine".into());
    let dir = hub::resolve_model("google/pg-renamed", &opts).unwrap();
    // Cached under the name asked for, as huggingface_hub does.
    assert_eq!(dir, tmp.0.join("models--google--pg-renamed/snapshots").join(COMMIT));
    assert!(dir.join("model-00002-of-00002.safetensors").is_file());
    let moved = requests_for(&server, "/google/pg-test/");
    assert!(!moved.is_empty());
    assert!(
        server.log().iter().all(|r| r.auth.as_deref() == Some("Bearer hf_mine")),
        "{:?}",
        server.log()
    );
}
