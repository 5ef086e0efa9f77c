//! Downloads against an HTTP server on 127.0.0.1 started by the test, with injected faults: a connection cut
//! mid-body then a resume, a 500 then a retry, a wrong checksum, a wrong Content-Length, refused credentials,
//! a missing file, a server that ignores `Range`, a server that stalls (before answering, or mid-body after
//! announcing more than it sends), and an endless body. Every server loop is bounded.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
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
    /// Announce the full length (honouring `Range`), send this many bytes of it, then hold the connection
    /// open without sending anything (until the client gives up, at most a few seconds).
    StallAfter(usize),
    /// Read the request and never answer (held like `StallAfter`).
    Silent,
    /// 200 without Content-Length (`Connection: close`), then bytes without end (until the client hangs up,
    /// at most 64 MB).
    Endless,
}

struct Server {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

/// Keeps a connection open without sending, until the peer closes it (bounded: 50 x 100 ms).
fn hold(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 256];
    for _ in 0..50 {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

fn serve(data: Vec<u8>, script: Vec<Fault>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/rsicd/train.parquet", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { return };
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
            let fault = script.get(i).copied().unwrap_or(Fault::Serve);
            let data = data.clone();
            // One thread per connection, so a stalled one never blocks the next attempt.
            std::thread::spawn(move || respond(stream, &head, fault, &data));
        }
    });
    Server { url, requests }
}

fn respond(mut stream: TcpStream, head: &str, fault: Fault, data: &[u8]) {
    let range_start = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("range: bytes=").map(str::to_string))
        .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
    let n = data.len();
    let partial = |s: usize| {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {s}-{}/{n}\r\nConnection: close\r\n\r\n",
            n - s,
            n - 1
        )
        .into_bytes()
    };
    let full = || {
        format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n").into_bytes()
    };
    let response: Vec<u8> = match (fault, range_start) {
        (Fault::Status(code), _) => {
            format!("HTTP/1.1 {code} Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes()
        }
        (Fault::CutAfter(k), _) => {
            let mut r = full();
            r.extend_from_slice(&data[..k]);
            r
        }
        (Fault::Corrupt, _) => {
            let mut bad = data.to_vec();
            bad[n / 2] ^= 0xFF;
            let mut r = full();
            r.extend_from_slice(&bad);
            r
        }
        (Fault::StallAfter(k), s) => {
            let s = s.unwrap_or(0);
            let mut r = if s > 0 { partial(s) } else { full() };
            r.extend_from_slice(&data[s..(s + k).min(n)]);
            let _ = stream.write_all(&r);
            let _ = stream.flush();
            return hold(stream);
        }
        (Fault::Silent, _) => return hold(stream),
        (Fault::Endless, _) => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            let chunk = vec![0x5Au8; 1 << 16];
            for _ in 0..1024 {
                if stream.write_all(&chunk).is_err() {
                    return;
                }
            }
            return;
        }
        (Fault::Serve, Some(s)) if s < n => {
            let mut r = partial(s);
            r.extend_from_slice(&data[s..]);
            r
        }
        (Fault::Serve, Some(_)) => format!(
            "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{n}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .into_bytes(),
        (Fault::Serve | Fault::IgnoreRange, _) => {
            let mut r = full();
            r.extend_from_slice(data);
            r
        }
    };
    let _ = stream.write_all(&response);
    let _ = stream.flush();
    // Dropping the stream closes the connection, mid-body for CutAfter.
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
    DownloadOptions {
        retries,
        backoff: Duration::from_millis(5),
        read_timeout: Duration::from_millis(300),
        ..Default::default()
    }
}

/// Removes a test's folder (the parent of `data/train.parquet`).
fn cleanup(out: &std::path::Path) {
    let _ = std::fs::remove_dir_all(out.parent().unwrap().parent().unwrap());
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
    cleanup(&out);
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
    cleanup(&out);
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
    cleanup(&out);
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
    cleanup(&out);
    cleanup(&dest("length"));
}

#[test]
fn server_ignoring_range_restarts_cleanly() {
    let data = payload();
    let srv = serve(data.clone(), vec![Fault::CutAfter(100_000), Fault::IgnoreRange]);
    let out = dest("norange");
    download(&srv.url, &out, &Expect::default(), &opts(2)).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), data);
    cleanup(&out);
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
    for name in ["401", "403", "404"] {
        cleanup(&dest(name));
    }
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
    assert!(err.contains("escapes") && err.contains("\"../escaped.txt\""), "{err}");
    assert!(!err.contains("Ok("), "a Debug of a Result leaked into the message: {err}");
    assert!(!dir.join("escaped.txt").exists() && !dir.join("evil").exists());
    assert!(!dir.join(".evil.extracting").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stalled_body_times_out_and_resumes_with_range() {
    // Announces 300000 bytes, sends 10000, then nothing: the read timeout ends the attempt, the retry resumes.
    let data = payload();
    let srv = serve(data.clone(), vec![Fault::StallAfter(10_000), Fault::Serve]);
    let out = dest("stall-resume");
    let messages = Mutex::new(Vec::new());
    let on_retry = |m: &str| messages.lock().unwrap().push(m.to_string());
    let o = DownloadOptions { on_retry: Some(&on_retry), ..opts(2) };
    let expect = Expect { size: Some(data.len() as u64), sha256: Some(sha256_hex(&data)) };
    let got = download(&srv.url, &out, &expect, &o).unwrap();
    assert!(matches!(got, Outcome::Downloaded { .. }));
    assert_eq!(std::fs::read(&out).unwrap(), data);
    let m = messages.lock().unwrap();
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(m[0].contains("stalled") && m[0].contains("10000 of 300000"), "{m:?}");
    assert!(srv.requests.lock().unwrap()[1].to_ascii_lowercase().contains("range: bytes=10000-"));
    cleanup(&out);
}

#[test]
fn stalling_until_retries_run_out_is_a_clear_error_that_keeps_the_part() {
    // A lying Content-Length: 1000 announced, 10 sent, then silence, on every attempt.
    let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    let srv = serve(data.clone(), vec![Fault::StallAfter(10), Fault::StallAfter(10)]);
    let out = dest("stall-giveup");
    let err = download(&srv.url, &out, &Expect::default(), &opts(1)).unwrap_err().to_string();
    let part = part_path(&out);
    assert!(err.contains(&srv.url), "{err}");
    assert!(err.contains("stalled") && err.contains("gave up after 2 attempts"), "{err}");
    assert!(err.contains(&part.display().to_string()) && err.contains("20 bytes"), "{err}");
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 20, "both attempts' bytes are kept");
    assert!(!out.exists());
    cleanup(&out);
}

#[test]
fn a_failure_before_any_byte_names_no_part_file() {
    // Stalls before the body, then never answers at all: nothing is written, so no `.part` is named or left.
    let srv = serve(payload(), vec![Fault::StallAfter(0), Fault::Silent]);
    let out = dest("stall-empty");
    let err = download(&srv.url, &out, &Expect::default(), &opts(1)).unwrap_err().to_string();
    assert!(err.contains("no response from the server within 0.3s"), "{err}");
    assert!(err.contains("Nothing was received") && !err.contains(".part"), "{err}");
    assert!(!part_path(&out).exists() && !out.exists());

    let srv = serve(payload(), vec![Fault::Status(503), Fault::Status(503)]);
    let err = download(&srv.url, &out, &Expect::default(), &opts(1)).unwrap_err().to_string();
    assert!(err.contains("HTTP 503") && !err.contains(".part"), "{err}");
    assert!(!part_path(&out).exists());
    cleanup(&out);
}

#[test]
fn endless_bodies_are_capped_and_deleted() {
    // No size anywhere: the hard cap (`max_size`) stops it.
    let srv = serve(payload(), vec![Fault::Endless]);
    let out = dest("endless");
    let o = DownloadOptions { max_size: 1_000_000, ..opts(3) };
    let err = download(&srv.url, &out, &Expect::default(), &o).unwrap_err().to_string();
    assert!(err.contains("more than 1000000 bytes") && err.contains("--max-size"), "{err}");
    assert!(!part_path(&out).exists() && !out.exists());
    assert_eq!(srv.requests.lock().unwrap().len(), 1, "an endless body is not retried");

    // An expected size caps it too, whatever `max_size` says.
    let srv = serve(payload(), vec![Fault::Endless]);
    let expect = Expect { size: Some(50_000), sha256: None };
    let err = download(&srv.url, &out, &expect, &opts(3)).unwrap_err().to_string();
    assert!(err.contains("more than 50000 bytes (the expected size)"), "{err}");
    assert!(!part_path(&out).exists() && !out.exists());

    // A server announcing more than `max_size` is refused before anything is written.
    let srv = serve(payload(), vec![]);
    let o = DownloadOptions { max_size: 1000, ..opts(3) };
    let err = download(&srv.url, &out, &Expect::default(), &o).unwrap_err().to_string();
    assert!(err.contains("announces 300000 bytes, more than the limit of 1000"), "{err}");
    assert!(!part_path(&out).exists() && !out.exists());
    cleanup(&out);
}

#[test]
fn corrupt_zips_are_clean_errors_and_leave_nothing_behind() {
    use rsicd_data::download::extract_zip;
    use zip::write::SimpleFileOptions;
    let dir = std::env::temp_dir().join(format!("rsicd-zip-corrupt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let stored = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        w.start_file("captions.csv", stored).unwrap();
        w.write_all(b"split,image,caption_1\n").unwrap();
        w.start_file("resized/b.jpg", stored).unwrap();
        w.write_all(b"SECOND-ENTRY-CONTENT-0123456789").unwrap();
        w.finish().unwrap();
    }
    let mut bytes = buf.into_inner();
    let at = bytes.windows(12).position(|w| w == b"SECOND-ENTRY").unwrap();
    bytes[at + 3] ^= 0x20; // the CRC no longer matches
    let zip_path = dir.join("riscm.zip");
    std::fs::write(&zip_path, &bytes).unwrap();
    let target = dir.join("out");
    let err = extract_zip(&zip_path, &target).unwrap_err().to_string();
    assert!(err.contains("riscm.zip") && err.contains("\"resized/b.jpg\""), "{err}");
    assert!(!err.contains("Ok(") && !err.contains(".extracting"), "{err}");
    assert!(!target.exists(), "nothing extracted");
    assert!(!dir.join(".out.extracting").exists(), "temporary folder removed");

    // Not a zip at all.
    std::fs::write(dir.join("html.zip"), b"<html>login required</html>").unwrap();
    let err = extract_zip(&dir.join("html.zip"), &target).unwrap_err().to_string();
    assert!(err.contains("html.zip") && err.contains("not a readable zip archive"), "{err}");
    assert!(!dir.join(".out.extracting").exists());

    // Extracting into an existing folder that already has one of the files: refused before moving anything.
    let good = dir.join("good.zip");
    {
        let mut w = zip::ZipWriter::new(std::fs::File::create(&good).unwrap());
        for name in ["new.txt", "captions.csv"] {
            w.start_file(name, stored).unwrap();
            w.write_all(b"x").unwrap();
        }
        w.finish().unwrap();
    }
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("captions.csv"), b"mine").unwrap();
    let err = extract_zip(&good, &target).unwrap_err().to_string();
    assert!(err.contains("captions.csv") && err.contains("not overwriting"), "{err}");
    assert_eq!(std::fs::read(target.join("captions.csv")).unwrap(), b"mine");
    assert!(!target.join("new.txt").exists() && !dir.join(".out.extracting").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
