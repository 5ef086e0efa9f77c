//! Truncated and corrupt images are errors everywhere (decode, probe, validation with and without decoding,
//! EDA, preprocessing, the pixel cache, embedded parquet bytes), named with their file; sound images still
//! pass, and the fast probe agrees with the decoder on their dimensions. Oversized images are refused from
//! their header with their size, the limit and how to raise it.
mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rsicd_data::cache::PixelCache;
use rsicd_data::decode::{decode_file, probe_file, DEFAULT_MAX_IMAGE_PIXELS, MAX_IMAGE_PIXELS_ENV};
use rsicd_data::eda::{compute, EdaOptions};
use rsicd_data::validate::{validate, Check, ValidateOptions};
use rsicd_data::{probe_split_images, Dataset, ImagePreprocessor, Item, Resample, Split};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("rsicd-integrity-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(common::fixtures().join("images").join(name)).unwrap()
}

/// A real RSICD JPEG (224x224, 4:2:0) from shared data, else the committed fixture.
fn real_jpeg() -> Vec<u8> {
    match common::remote_sensing() {
        Some(rs) => std::fs::read(rs.join("RSICD/images/00001.jpg")).unwrap(),
        None => fixture("small_32x24.jpg"),
    }
}

/// The ways a JPEG is damaged in practice, each with a name.
fn damaged_jpegs(jpeg: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let n = jpeg.len();
    assert_eq!(&jpeg[n - 2..], [0xFF, 0xD9]);
    // An APP1 (EXIF-like) segment holding a whole thumbnail JPEG, end-of-image marker included.
    let thumb = fixture("small_32x24.jpg");
    let mut app1 = vec![0xFF, 0xE1];
    app1.extend_from_slice(&((thumb.len() + 2 + 6) as u16).to_be_bytes());
    app1.extend_from_slice(b"Exif\0\0");
    app1.extend_from_slice(&thumb);
    let mut with_thumb = jpeg[..2].to_vec();
    with_thumb.extend_from_slice(&app1);
    with_thumb.extend_from_slice(&jpeg[2..]);
    let m = with_thumb.len();
    // Cut inside the last scan, then "repaired" by appending an end-of-image marker (some tools do this).
    let mut cut_then_eoi = jpeg[..n - 40].to_vec();
    cut_then_eoi.extend_from_slice(&[0xFF, 0xD9]);
    vec![
        ("half.jpg", jpeg[..n / 2].to_vec()),
        ("no_eoi.jpg", jpeg[..n - 2].to_vec()),
        ("cut_before_eoi.jpg", jpeg[..n - 10].to_vec()),
        ("cut_then_eoi.jpg", cut_then_eoi),
        ("thumb_half.jpg", with_thumb[..m / 2].to_vec()),
        ("thumb_no_eoi.jpg", with_thumb[..m - 2].to_vec()),
    ]
}

fn damaged_pngs() -> Vec<(&'static str, Vec<u8>)> {
    let png = fixture("gray_90x64.png");
    let n = png.len();
    assert_eq!(&png[n - 8..n - 4], b"IEND");
    vec![
        ("png_half.png", png[..n / 2].to_vec()),
        ("png_no_iend.png", png[..n - 12].to_vec()),
        ("png_cut_in_iend.png", png[..n - 3].to_vec()),
    ]
}

#[test]
fn truncated_files_are_errors_for_decode_probe_and_preprocessing() {
    let dir = TempDir::new("decode");
    let mut cases: Vec<(String, Vec<u8>)> =
        damaged_jpegs(&real_jpeg()).into_iter().map(|(n, b)| (n.to_string(), b)).collect();
    cases.extend(
        damaged_jpegs(&fixture("small_32x24.jpg"))
            .into_iter()
            .map(|(n, b)| (format!("small_{n}"), b)),
    );
    cases.extend(damaged_pngs().into_iter().map(|(n, b)| (n.to_string(), b)));
    let pre = ImagePreprocessor::new(16, Resample::Bicubic);
    for (name, bytes) in &cases {
        let name = name.as_str();
        let path = dir.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = decode_file(&path).unwrap_err().to_string();
        assert!(err.contains(name), "{name}: the error does not name the file: {err}");
        let damaged = err.contains("truncated") || err.contains("Corrupt JPEG data");
        assert!(damaged, "{name}: {err}");
        assert!(pre.load(&path).is_err(), "{name}: preprocessing accepted it");
        // The fast probe sees every truncation except data cut out of the middle of a scan.
        if !name.ends_with("cut_then_eoi.jpg") {
            let err = probe_file(&path).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains("truncated"), "{name}: {err}");
        }
    }
}

#[test]
fn truncated_tiff_is_an_error() {
    let tif = match common::remote_sensing() {
        Some(rs) => std::fs::read(rs.join("Sydney/images/1.tif")).unwrap(),
        None => fixture("rgb16_48x40.tif"),
    };
    let dir = TempDir::new("tiff");
    let path = dir.0.join("cut.tif");
    std::fs::write(&path, &tif[..tif.len() * 3 / 4]).unwrap();
    let err = decode_file(&path).unwrap_err().to_string();
    assert!(err.contains("cut.tif"), "{err}");
    let err = probe_file(&path).unwrap_err().to_string();
    assert!(err.contains("cut.tif") && err.contains("truncated TIFF"), "{err}");
}

/// Every sound image (shared RSICD/UCM/Sydney files and the fixtures) passes the probe, decodes, and the probe's
/// dimensions are the decoder's.
#[test]
fn sound_images_pass_and_probe_agrees_with_decode() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(common::fixtures().join("images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "jpg" || x == "tif") {
                out.push(p);
            }
        }
    }
    if let Some(rs) = common::remote_sensing() {
        let before = files.len();
        walk(&rs, &mut files);
        assert!(files.len() - before >= 70, "the 52 RSICD JPEGs and 21 TIFFs");
    }
    assert!(files.len() >= 8);
    for f in &files {
        let img = decode_file(f).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(probe_file(f).unwrap(), (img.width(), img.height()), "{}", f.display());
    }
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = 0xFFFF_FFFFu32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
    out
}

/// A 16000x16000 RGBA PNG header with a token of image data: a few dozen bytes on disk.
fn huge_png() -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&16000u32.to_be_bytes());
    ihdr.extend_from_slice(&16000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(b"IDAT", &[0x78, 0x01, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
    png.extend(png_chunk(b"IEND", &[]));
    png
}

#[test]
fn oversized_images_name_their_size_the_limit_and_the_way_to_raise_it() {
    assert!(std::env::var_os(MAX_IMAGE_PIXELS_ENV).is_none(), "run without {MAX_IMAGE_PIXELS_ENV}");
    let dir = TempDir::new("huge");
    let path = dir.0.join("huge.png");
    std::fs::write(&path, huge_png()).unwrap();
    for err in [decode_file(&path).unwrap_err(), probe_file(&path).unwrap_err()] {
        let err = err.to_string();
        assert!(err.contains("huge.png") && err.contains("16000x16000"), "{err}");
        assert!(err.contains(&DEFAULT_MAX_IMAGE_PIXELS.to_string()), "{err}");
        assert!(err.contains("PALIGEMMA_MAX_IMAGE_PIXELS=256000000"), "{err}");
        assert!(!err.contains("Memory limit exceeded"), "{err}");
    }
}

/// A Karpathy dataset in `dir` with these images (all `train` but the last, which is `val`).
fn dataset(dir: &Path, images: &[(&str, Vec<u8>)]) -> Dataset {
    std::fs::create_dir_all(dir.join("images")).unwrap();
    let mut entries = Vec::new();
    for (k, (name, bytes)) in images.iter().enumerate() {
        std::fs::write(dir.join("images").join(name), bytes).unwrap();
        let split = if k + 1 == images.len() { "val" } else { "train" };
        entries.push(format!(
            r#"{{"filename":"{name}","split":"{split}","sentences":[{{"raw":"one ."}},{{"raw":"two ."}},{{"raw":"three ."}},{{"raw":"four ."}},{{"raw":"five ."}}]}}"#
        ));
    }
    let json = format!(r#"{{"images":[{}]}}"#, entries.join(","));
    std::fs::write(dir.join("dataset_t.json"), json).unwrap();
    Dataset::load(&dir.join("dataset_t.json"), None).unwrap()
}

#[test]
fn validation_eda_cache_and_the_training_probe_report_damaged_images() {
    let jpeg = real_jpeg();
    let n = jpeg.len();
    let dir = TempDir::new("dataset");
    let mut cut_then_eoi = jpeg[..n - 40].to_vec();
    cut_then_eoi.extend_from_slice(&[0xFF, 0xD9]);
    let png = fixture("gray_90x64.png");
    let images = vec![
        ("good.jpg", jpeg.clone()),
        ("half.jpg", jpeg[..n / 2].to_vec()),
        ("no_eoi.jpg", jpeg[..n - 2].to_vec()),
        ("cut_then_eoi.jpg", cut_then_eoi),
        ("good2.jpg", jpeg.clone()),
        ("cut.png", png[..png.len() - 12].to_vec()),
    ];
    let ds = dataset(&dir.0, &images);

    // Full validation decodes: all four damaged files are errors, named.
    let r = validate(&ds, &ValidateOptions::default());
    assert_eq!(r.count(Check::UnreadableImage), 4, "{:?}", r.findings);
    let ex =
        r.findings.iter().find(|f| f.check == Check::UnreadableImage).unwrap().examples.join("|");
    for name in ["half.jpg", "no_eoi.jpg", "cut_then_eoi.jpg", "cut.png"] {
        assert!(ex.contains(name), "{name} not in {ex}");
    }
    // Without decoding the probe still catches the truncated ones.
    let fast = ValidateOptions { decode_images: false, ..Default::default() };
    let r = validate(&ds, &fast);
    assert_eq!(r.count(Check::UnreadableImage), 3, "{:?}", r.findings);
    assert_eq!(r.images_checked, 3);

    // EDA: checked, counted as unreadable, left out of the statistics.
    let stats = compute(&ds, &EdaOptions::default(), None);
    let img = stats.image_stats.unwrap();
    assert_eq!((img.checked, img.unreadable, img.decoded, img.failed), (6, 4, 2, 1));
    assert!(
        img.unreadable_examples.iter().any(|e| e.contains("half.jpg")),
        "{:?}",
        img.unreadable_examples
    );

    // The trainer's probe: per split, in item order, each error naming its file.
    let errs = probe_split_images(&ds, &[Split::Train]);
    let errs: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].contains("half.jpg") && errs[1].contains("no_eoi.jpg"), "{errs:?}");
    assert_eq!(probe_split_images(&ds, &[Split::Val]).len(), 1);
    assert_eq!(probe_split_images(&ds, &[]).len(), 3);
    let good = ds.items[0].decode_image().unwrap();
    assert_eq!(ds.items[0].probe_image().unwrap(), (good.width(), good.height()));

    // The pixel cache refuses them too.
    let cache_dir = dir.0.join("cache");
    let mut cache =
        PixelCache::open(&cache_dir, ImagePreprocessor::new(16, Resample::Bicubic)).unwrap();
    let err = cache.load_batch(&[&ds.items[0], &ds.items[3]]).unwrap_err().to_string();
    assert!(err.contains("cut_then_eoi.jpg"), "{err}");
}

#[test]
fn embedded_parquet_bytes_are_probed_and_named() {
    let jpeg = real_jpeg();
    let item = |bytes: Vec<u8>| Item {
        id: 0,
        filename: "rsicd_1.jpg".into(),
        split: Split::Train,
        captions: vec!["a .".into()],
        class: None,
        source: None,
        image_path: None,
        image_bytes: Some(Arc::from(bytes)),
        origin: "train.parquet row 7".into(),
    };
    assert!(item(jpeg.clone()).probe_image().is_ok());
    let bad = item(jpeg[..jpeg.len() / 2].to_vec());
    for err in [bad.probe_image().unwrap_err(), bad.decode_image().unwrap_err()] {
        let err = err.to_string();
        assert!(
            err.contains("rsicd_1.jpg (train.parquet row 7)") && err.contains("truncated"),
            "{err}"
        );
    }
    let none = Item { image_bytes: None, ..item(Vec::new()) };
    assert!(none.probe_image().unwrap_err().to_string().contains("no image available"));
}

#[test]
fn truncated_webp_is_an_error() {
    let img =
        image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, 77]));
    let mut webp = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img).write_to(&mut webp, image::ImageFormat::WebP).unwrap();
    let webp = webp.into_inner();
    let dir = TempDir::new("webp");
    let good = dir.0.join("good.webp");
    std::fs::write(&good, &webp).unwrap();
    assert_eq!(probe_file(&good).unwrap(), (40, 30));
    assert_eq!(decode_file(&good).unwrap().width(), 40);
    let cut = dir.0.join("cut.webp");
    std::fs::write(&cut, &webp[..webp.len() - 7]).unwrap();
    for err in [probe_file(&cut).unwrap_err(), decode_file(&cut).unwrap_err()] {
        let err = err.to_string();
        assert!(err.contains("cut.webp") && err.contains("truncated WebP"), "{err}");
    }
}
