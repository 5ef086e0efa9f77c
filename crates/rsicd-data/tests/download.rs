//! Downloads against an HTTP server on 127.0.0.1 started by the test, with injected faults: a connection cut
//! mid-body then a resume, a 500 then a retry, a wrong checksum, a wrong Content-Length, refused credentials,
//! a missing file and a server that ignores `Range`.
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rsicd_data::checksum::sha256_hex;
use rsicd_data::download::{download, part_path, DownloadOptions, Expect, Outcome};

#[derive(Clone, Copy)]
enum Fault {
    /// Serve normally, honouring `Range`.
    Serve,
    /// Announce the full length, send this many bytes, close.
    CutAfter(usize),
    /// Answer with this status and no body.
    Status(u16),
    /// Ignore `Range` and send the whole file with 200.
    IgnoreRange,
    /// Serve these bytes instead of the file.
    Corrupt,
}

struct Server {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

fn serve(data: Vec<u8>, script: Vec<Fault>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/rsicd/train.parquet", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let mut stream = stream.unwrap();
            let mut head = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            log.lock().unwrap().push(head.clone());
            let range_start = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("range: bytes=").map(str::to_string)
                })
                .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
            let fault = script.get(i).copied().unwrap_or(Fault::Serve);
            let n = data.len();
            let response: Vec<u8> = match (fault, range_start) {
                (Fault::Status(code), _) => {
                    format!("HTTP/1.1 {code} Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes()
                }
                (Fault::CutAfter(k), _) => {
                    let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n").into_bytes();
                    r.extend_from_slice(&data[..k]);
                    r
                }
                (Fault::Corrupt, _) => {
                    let mut bad = data.clone();
                    bad[n / 2] ^= 0xFF;
                    let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n").into_bytes();
                    r.extend_from_slice(&bad);
                    r
                }
                (Fault::Serve, Some(s)) if s < n => {
                    let mut r = format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {s}-{}/{n}\r\nConnection: close\r\n\r\n",
                        n - s,
                        n - 1
                    )
                    .into_bytes();
                    r.extend_from_slice(&data[s..]);
                    r
                }
                (Fault::Serve, Some(_)) => format!(
                    "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{n}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .into_bytes(),
                (Fault::Serve | Fault::IgnoreRange, _) => {
                    let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n").into_bytes();
                    r.extend_from_slice(&data);
                    r
                }
            };
            let _ = stream.write_all(&response);
            let _ = stream.flush();
            // Dropping the stream closes the connection, mid-body for CutAfter.
        }
    });
    Server { url, requests }
}

fn payload() -> Vec<u8> {
    (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

fn dest(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rsicd-dl-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d.join("data").join("train.parquet")
}

fn opts(retries: u32) -> DownloadOptions<'static> {
    DownloadOptions { retries, backoff: Duration::from_millis(5), ..Default::default() }
}

#[test]
fn cut_mid_body_leaves_only_a_part_file_and_the_next_run_resumes() {
    let data = payload();
    let srv = serve(data.clone(), vec![Fault::CutAfter(120_000), Fault::Serve]);
    let out = dest("cut");
    let expect = Expect { size: Some(data.len() as u64), sha256: Some(sha256_hex(&data)) };
    let err = download(&srv.url, &out, &expect, &opts(0)).unwrap_err().to_string();
    assert!(err.contains("run the same command again to resume"), "{err}");
    assert!(!out.exists(), "a partial file must never carry the final name");
    assert_eq!(std::fs::metadata(part_path(&out)).unwrap().len(), 120_000);

    let got = download(&srv.url, &out, &expect, &opts(0)).unwrap();
    assert_eq!(
        got,
        Outcome::Downloaded {
            bytes: data.len() as u64,
            sha256: sha256_hex(&data),
            resumed_from: 120_000
        }
    );
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert!(!part_path(&out).exists());
    assert!(srv.requests.lock().unwrap()[1].to_ascii_lowercase().contains("range: bytes=120000-"));

    // A second run finds the verified file and does nothing.
    assert!(matches!(
        download(&srv.url, &out, &expect, &opts(0)).unwrap(),
        Outcome::AlreadyPresent { .. }
    ));
    assert_eq!(srv.requests.lock().unwrap().len(), 2);
}

#[test]
fn server_error_then_retry_and_cut_then_automatic_resume() {
    let data = payload();
    let srv = serve(
        data.clone(),
        vec![Fault::Status(500), Fault::CutAfter(50_000), Fault::Status(503), Fault::Serve],
    );
    let out = dest("retry");
    let messages = Mutex::new(Vec::new());
    let on_retry = |m: &str| messages.lock().unwrap().push(m.to_string());
    let o = DownloadOptions { on_retry: Some(&on_retry), ..opts(5) };
    let got = download(&srv.url, &out, &Expect { sha256: Some(sha256_hex(&data)), size: None }, &o)
        .unwrap();
    assert!(matches!(got, Outcome::Downloaded { resumed_from: 0, .. }));
    assert_eq!(std::fs::read(&out).unwrap(), data);
    let m = messages.lock().unwrap();
    assert_eq!(m.len(), 3, "{m:?}");
    assert!(m[0].contains("HTTP 500") && m[2].contains("HTTP 503"), "{m:?}");
    assert!(srv.requests.lock().unwrap()[3].to_ascii_lowercase().contains("range: bytes=50000-"));
}

#[test]
fn wrong_checksum_is_refused_and_nothing_is_kept() {
    let data = payload();
    let srv = serve(data.clone(), vec![Fault::Corrupt]);
    let out = dest("checksum");
    let err =
        download(&srv.url, &out, &Expect { sha256: Some(sha256_hex(&data)), size: None }, &opts(0))
            .unwrap_err()
            .to_string();
    assert!(err.contains("SHA-256 mismatch") && err.contains(&sha256_hex(&data)), "{err}");
    assert!(!out.exists() && !part_path(&out).exists());
}

#[test]
fn wrong_content_length_is_detected_and_resumed() {
    // The server announces 300000 bytes and sends 200000 before closing: a short body, resumed with Range.
    let data = payload();
    let srv = serve(data.clone(), vec![Fault::CutAfter(200_000), Fault::Serve]);
    let out = dest("length");
    let err = download(&srv.url, &out, &Expect::default(), &opts(0)).unwrap_err().to_string();
    assert!(err.contains("200000") && err.contains("300000"), "{err}");
    let got = download(&srv.url, &out, &Expect::default(), &opts(0)).unwrap();
    assert!(matches!(got, Outcome::Downloaded { resumed_from: 200_000, .. }));
    assert_eq!(std::fs::read(&out).unwrap(), data);
    // An expected size that disagrees with what the server delivers is an error, and the copy is dropped.
    let srv = serve(data.clone(), vec![]);
    let out = dest("length2");
    let err = download(&srv.url, &out, &Expect { size: Some(12345), sha256: None }, &opts(0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected 12345"), "{err}");
    assert!(!out.exists() && !part_path(&out).exists());
}

#[test]
fn server_ignoring_range_restarts_cleanly() {
    let data = payload();
    let srv = serve(data.clone(), vec![Fault::CutAfter(100_000), Fault::IgnoreRange]);
    let out = dest("norange");
    download(&srv.url, &out, &Expect::default(), &opts(2)).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), data);
}

#[test]
fn auth_and_not_found_errors_are_explained_without_retrying() {
    let srv = serve(payload(), vec![Fault::Status(401)]);
    let o = DownloadOptions { basic_auth: Some(("me".into(), "secret".into())), ..opts(3) };
    let err = download(&srv.url, &dest("401"), &Expect::default(), &o).unwrap_err().to_string();
    assert!(err.contains("HTTP 401") && err.contains("KAGGLE_USERNAME"), "{err}");
    let head = srv.requests.lock().unwrap()[0].clone();
    assert!(head.contains("bWU6c2VjcmV0"), "basic auth header: {head}");
    assert_eq!(srv.requests.lock().unwrap().len(), 1, "no retry on 401");

    let srv = serve(payload(), vec![Fault::Status(403)]);
    let err =
        download(&srv.url, &dest("403"), &Expect::default(), &opts(3)).unwrap_err().to_string();
    assert!(err.contains("HTTP 403"), "{err}");

    let srv = serve(payload(), vec![Fault::Status(404)]);
    let err =
        download(&srv.url, &dest("404"), &Expect::default(), &opts(3)).unwrap_err().to_string();
    assert!(err.contains("HTTP 404") && err.contains("--url"), "{err}");
    assert_eq!(srv.requests.lock().unwrap().len(), 1, "no retry on 404");
}

#[test]
fn zip_extraction_is_atomic_and_refuses_escaping_paths() {
    use rsicd_data::download::extract_zip;
    let dir = std::env::temp_dir().join(format!("rsicd-zip-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let make = |name: &str, entries: &[(&str, &[u8])]| {
        let path = dir.join(name);
        let mut w = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        for (n, data) in entries {
            w.start_file(*n, zip::write::SimpleFileOptions::default()).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap();
        path
    };
    let good =
        make("riscm.zip", &[("captions.csv", b"split,image,caption_1\n"), ("resized/a.jpg", b"x")]);
    let n = extract_zip(&good, &dir.join("riscm")).unwrap();
    assert_eq!(n, 2);
    assert!(dir.join("riscm/resized/a.jpg").is_file() && dir.join("riscm/captions.csv").is_file());
    let evil = make("evil.zip", &[("../escaped.txt", b"x")]);
    let err = extract_zip(&evil, &dir.join("evil")).unwrap_err().to_string();
    assert!(err.contains("escapes"), "{err}");
    assert!(!dir.join("escaped.txt").exists() && !dir.join("evil").exists());
}
