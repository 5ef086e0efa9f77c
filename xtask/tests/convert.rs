//! `cargo xtask convert` through the real binary: clear errors (never a panic), nothing of the user's lost, no
//! temporary files left on any failure path, signals honoured.
mod common;

use common::{repo, signal, snapshot, wait_exit, wait_for, xtask, TempDir};
use std::io::{BufRead, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

fn fixture(name: &str) -> PathBuf {
    repo().join("data/fixtures").join(name)
}

fn convert(args: &[&Path], flags: &[&str]) -> Output {
    let mut cmd = xtask();
    cmd.arg("convert").arg("--from").arg(args[0]).arg("--to").arg(args[1]);
    if let Some(tok) = args.get(2) {
        cmd.arg("--tokenizer").arg(tok);
    }
    cmd.args(flags).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A `.npy` of zeros (float32) with this shape.
fn npy(shape: &[usize]) -> Vec<u8> {
    let dims: String = shape.iter().map(|d| format!("{d}, ")).collect();
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}\n");
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((dict.len() as u16).to_le_bytes());
    out.extend(dict.as_bytes());
    out.resize(out.len() + shape.iter().product::<usize>() * 4, 0);
    out
}

/// The tiny fixture checkpoint with its entries edited: `edit(name, bytes)` returns the new bytes, or None to drop
/// the array.
fn npz_variant(path: &Path, edit: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>) {
    npz_variant_of("mqa-bv.npz", path, edit)
}

/// [`npz_variant`] of the fixture checkpoint `from`.
fn npz_variant_of(from: &str, path: &Path, edit: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>) {
    let mut src = zip::ZipArchive::new(std::fs::File::open(fixture(from)).unwrap()).unwrap();
    let mut out = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..src.len() {
        let mut entry = src.by_index(i).unwrap();
        let name = entry.name().unwrap().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        if let Some(bytes) = edit(&name, bytes) {
            out.start_file(name, options).unwrap();
            out.write_all(&bytes).unwrap();
        }
    }
    out.finish().unwrap();
}

/// Exit code 1 and a one-line error, not a panic (exit 101) with a backtrace hint.
fn assert_clean_failure(out: &Output) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn no_temp_files(dir: &Path) {
    if dir.exists() {
        for (name, _) in snapshot(dir) {
            assert!(!name.contains("tmp"), "temporary file {name} left in {}", dir.display());
        }
    }
}

#[test]
fn a_missing_array_is_named_with_its_expected_shape() {
    let tmp = TempDir::new("convert-missing");
    let npz = tmp.join("ckpt.npz");
    // `img/embedding/bias` is only read by the conversion plan: this used to panic.
    for (array, shape) in [
        ("img/embedding/bias", "[32]"),
        ("llm/layers/attn/kv_einsum/w", "[2, 2, kv_heads, 48, 12]"),
    ] {
        npz_variant(&npz, |name, bytes| (name != format!("params/{array}.npy")).then_some(bytes));
        let out_dir = tmp.join("out");
        let out = convert(&[&npz, &out_dir], &[]);
        assert_clean_failure(&out);
        let want = format!("missing array `{array}` (expected shape {shape})");
        assert!(stderr(&out).contains(&want), "{}", stderr(&out));
        assert!(!out_dir.exists(), "nothing created");
    }
}

/// A PaliGemma 2 checkpoint (it has `post_attention_norm`) without `post_ffw_norm`: named, not converted as
/// PaliGemma 1 nor refused as an unexpected array.
#[test]
fn a_pg2_checkpoint_missing_a_post_norm_is_named() {
    let tmp = TempDir::new("convert-pg2-missing");
    let npz = tmp.join("ckpt.npz");
    npz_variant_of("pg2-gqa-bv.npz", &npz, |name, bytes| {
        (name != "params/llm/layers/post_ffw_norm/scale.npy").then_some(bytes)
    });
    let out_dir = tmp.join("out");
    let out = convert(&[&npz, &out_dir], &[]);
    assert_clean_failure(&out);
    let want = "missing array `llm/layers/post_ffw_norm/scale` (expected shape [3, 48])";
    assert!(stderr(&out).contains(want), "{}", stderr(&out));
    assert!(!out_dir.exists(), "nothing created");

    // Complete, it converts, to a Gemma-2 config.
    let out = convert(&[&fixture("pg2-gqa-bv.npz"), &out_dir], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Gemma 2 3 layers"));
    let cfg = std::fs::read_to_string(out_dir.join("config.json")).unwrap();
    assert!(cfg.contains("\"gemma2\""), "{cfg}");
    no_temp_files(&out_dir);
}

#[test]
fn a_misshaped_q_einsum_is_blamed_not_kv_einsum() {
    let tmp = TempDir::new("convert-misshaped");
    let npz = tmp.join("ckpt.npz");
    npz_variant(&npz, |name, bytes| {
        Some(if name.ends_with("q_einsum/w.npy") { npy(&[2, 4, 48, 16]) } else { bytes })
    });
    let out_dir = tmp.join("out");
    let out = convert(&[&npz, &out_dir], &[]);
    assert_clean_failure(&out);
    let err = stderr(&out);
    assert!(
        err.contains(
            "array `llm/layers/attn/q_einsum/w` has shape [2, 4, 48, 16], expected [2, 4, 48, 12]"
        ),
        "{err}"
    );
    assert!(!err.contains("kv_einsum"), "{err}");
    assert!(!out_dir.exists());
}

/// An array whose data runs short, or a tokenizer that cannot be read, fails before anything is written; a failure
/// after the weights were written (here: the config's temporary name is taken by a directory) removes them again.
#[test]
fn failures_leave_no_temporary_files() {
    let tmp = TempDir::new("convert-fail");
    let npz = tmp.join("ckpt.npz");
    npz_variant(&npz, |name, mut bytes| {
        if name.ends_with("linear.npy") {
            bytes.truncate(bytes.len() - 4);
        }
        Some(bytes)
    });
    let out_dir = tmp.join("out");
    let out = convert(&[&npz, &out_dir], &[]);
    assert_clean_failure(&out);
    assert!(stderr(&out).contains("array `params/llm/layers/mlp/linear`"), "{}", stderr(&out));
    assert!(!out_dir.exists());

    // A tokenizer that cannot be read fails before the (long) conversion writes anything.
    let out = convert(&[&fixture("mqa-bv.npz"), &out_dir, &tmp.join("nope.json")], &[]);
    assert_clean_failure(&out);
    assert!(stderr(&out).contains("nope.json"), "{}", stderr(&out));
    assert!(!out_dir.exists());

    std::fs::create_dir_all(out_dir.join("config.json.convert-tmp")).unwrap();
    let out = convert(&[&fixture("mqa-bv.npz"), &out_dir], &[]);
    assert_clean_failure(&out);
    assert!(stderr(&out).contains("config.json.convert-tmp"), "{}", stderr(&out));
    let left: Vec<String> = snapshot_names(&out_dir);
    assert_eq!(left, ["config.json.convert-tmp"], "the weights' temporary file is gone");
}

fn snapshot_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_non_empty_target_is_refused_and_left_untouched() {
    let tmp = TempDir::new("convert-refuse");
    let dir = tmp.join("model");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("model.safetensors"), b"the user's fine-tuned weights").unwrap();
    std::fs::write(dir.join("config.json"), b"{\"theirs\": true}").unwrap();
    std::fs::write(dir.join("notes.txt"), b"notes").unwrap();
    let before = snapshot(&dir);
    let out = convert(&[&fixture("mqa-bv.npz"), &dir], &[]);
    assert_clean_failure(&out);
    let err = stderr(&out);
    assert!(err.contains("is not empty") && err.contains("--overwrite"), "{err}");
    assert!(err.contains("model.safetensors") && err.contains("notes.txt"), "{err}");
    assert_eq!(snapshot(&dir), before, "byte-identical");

    // The checkpoint's own directory: refused too (it holds the checkpoint).
    let inside = tmp.join("inside");
    std::fs::create_dir(&inside).unwrap();
    std::fs::copy(fixture("mqa-bv.npz"), inside.join("model.npz")).unwrap();
    let before = snapshot(&inside);
    let out = convert(&[&inside.join("model.npz"), &inside], &[]);
    assert_clean_failure(&out);
    assert!(stderr(&out).contains("model.npz"), "{}", stderr(&out));
    assert_eq!(snapshot(&inside), before);

    // A checkpoint named like an output is never replaced, --overwrite or not.
    let named = tmp.join("named");
    std::fs::create_dir(&named).unwrap();
    std::fs::copy(fixture("mqa-bv.npz"), named.join("model.safetensors")).unwrap();
    let before = snapshot(&named);
    let out = convert(&[&named.join("model.safetensors"), &named], &["--overwrite"]);
    assert_clean_failure(&out);
    assert!(stderr(&out).contains("convert into another directory"), "{}", stderr(&out));
    assert_eq!(snapshot(&named), before);
}

fn tensor_count(path: &Path) -> usize {
    let bytes = std::fs::read(path).unwrap();
    safetensors::SafeTensors::deserialize(&bytes).unwrap().len()
}

#[test]
fn overwrite_replaces_only_the_outputs_and_keeps_a_tokenizer_in_place() {
    let tmp = TempDir::new("convert-overwrite");
    let dir = tmp.join("model");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(fixture("mqa-bv.npz"), dir.join("model.npz")).unwrap();
    std::fs::copy(fixture("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    std::fs::write(dir.join("model.safetensors"), b"old weights").unwrap();
    std::fs::write(dir.join("notes.txt"), b"notes").unwrap();
    let tokenizer = std::fs::read(dir.join("tokenizer.json")).unwrap();
    let inode = std::fs::metadata(dir.join("tokenizer.json")).unwrap().ino();

    let out =
        convert(&[&dir.join("model.npz"), &dir, &dir.join("tokenizer.json")], &["--overwrite"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("tokenizer.json already in place"));
    assert!(tensor_count(&dir.join("model.safetensors")) > 10, "new weights");
    assert!(std::fs::read_to_string(dir.join("config.json")).unwrap().contains("paligemma"));
    assert_eq!(std::fs::read(dir.join("tokenizer.json")).unwrap(), tokenizer);
    assert_eq!(
        std::fs::metadata(dir.join("tokenizer.json")).unwrap().ino(),
        inode,
        "never copied onto itself"
    );
    assert_eq!(
        std::fs::read(dir.join("model.npz")).unwrap(),
        std::fs::read(fixture("mqa-bv.npz")).unwrap()
    );
    assert_eq!(std::fs::read(dir.join("notes.txt")).unwrap(), b"notes");
    no_temp_files(&dir);

    // A tokenizer from elsewhere replaces the one in place (renamed in, no temporary left).
    let out =
        convert(&[&dir.join("model.npz"), &dir, &fixture("tokenizer.json")], &["--overwrite"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::read(dir.join("tokenizer.json")).unwrap(), tokenizer);
    no_temp_files(&dir);
}

/// SIGTERM while convert runs (here: while it waits for the tokenizer, a FIFO the test feeds): exit 143, nothing
/// written, no temporary file.
#[test]
fn sigterm_stops_convert_with_nothing_written() {
    let tmp = TempDir::new("convert-sigterm");
    let fifo = tmp.join("tokenizer.json");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // Read-write: opening does not block, and convert's open finds a writer.
    let mut feed = std::fs::OpenOptions::new().read(true).write(true).open(&fifo).unwrap();
    let out_dir = tmp.join("out");
    let mut child = xtask()
        .arg("convert")
        .arg("--from")
        .arg(fixture("mqa-bv.npz"))
        .arg("--to")
        .arg(&out_dir)
        .arg("--tokenizer")
        .arg(&fifo)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    wait_for("convert to open the tokenizer", || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|fds| {
                fds.flatten().any(|fd| std::fs::read_link(fd.path()).ok() == Some(fifo.clone()))
            })
            .unwrap_or(false)
    });
    signal(pid, libc::SIGTERM);
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("SIGTERM") {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
    }
    feed.write_all(&std::fs::read(fixture("tokenizer.json")).unwrap()).unwrap();
    drop(feed);
    let status = wait_exit(&mut child);
    err.read_to_string(&mut seen).unwrap();
    assert_eq!(status.code(), Some(143), "{seen}");
    assert!(seen.contains("nothing written"), "{seen}");
    assert!(!out_dir.exists(), "{seen}");
}
