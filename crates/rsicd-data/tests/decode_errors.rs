//! Broken image files give an error naming the file and the problem, never a panic or a grey image.
mod common;

use rsicd_data::{ImagePreprocessor, Resample};

fn load_err(name: &str, bytes: &[u8]) -> String {
    let dir = std::env::temp_dir().join(format!("rsicd-decode-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let err = ImagePreprocessor::new(16, Resample::Bicubic).load(&path).unwrap_err().to_string();
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir(&dir); // once empty
    assert!(err.contains(name), "error does not name the file: {err}");
    err
}

#[test]
fn truncated_corrupt_empty_and_unknown_files() {
    let jpeg = std::fs::read(common::fixtures().join("images/small_32x24.jpg")).unwrap();
    let err = load_err("truncated.jpg", &jpeg[..jpeg.len() / 2]);
    assert!(err.contains("truncated"), "{err}");

    let mut corrupt = jpeg.clone();
    let mid = corrupt.len() / 3;
    corrupt[20..mid].fill(0x5A); // header tables destroyed, EOI kept
    let err = load_err("corrupt.jpg", &corrupt);
    assert!(err.contains("cannot decode"), "{err}");

    assert!(load_err("empty.png", &[]).contains("empty"));
    assert!(load_err("notes.tif", b"hello, I am a text file").contains("unrecognised image format"));

    let png = std::fs::read(common::fixtures().join("images/gray_90x64.png")).unwrap();
    let err = load_err("cut.png", &png[..png.len() - 200]);
    assert!(err.contains("cannot decode"), "{err}");

    let missing = common::fixtures().join("images/missing.png");
    let err = ImagePreprocessor::new(16, Resample::Bicubic).load(&missing).unwrap_err().to_string();
    assert!(err.contains("missing.png") && err.contains("No such file"), "{err}");
}
