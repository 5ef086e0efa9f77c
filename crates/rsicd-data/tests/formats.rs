//! Every annotation format: real shared files (counts checked against the shared README's independently stated
//! numbers), small written fixtures, and malformed inputs whose errors must name the file and the line or key.
mod common;

use std::path::{Path, PathBuf};

use rsicd_data::{Dataset, Format, LoadOptions, Split};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rsicd-formats-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, text).unwrap();
    p
}

fn err_of(path: &Path, format: Option<Format>) -> String {
    let e = Dataset::load(path, format).unwrap_err().to_string();
    let name = path.file_name().unwrap().to_string_lossy();
    assert!(e.contains(name.as_ref()), "error does not name {name}: {e}");
    e
}

#[test]
fn shared_karpathy_files_load_with_expected_counts() {
    let Some(rs) = common::remote_sensing() else { return };
    let rsicd = Dataset::load(&rs.join("RSICD/annotations/dataset_rsicd_reconstructed.json"), None)
        .unwrap();
    assert_eq!(rsicd.format, Format::Karpathy);
    assert_eq!((rsicd.items.len(), rsicd.caption_count()), (10_921, 54_605));
    let by = rsicd.counts_by_split();
    assert_eq!((by["train"].images, by["val"].images, by["test"].images), (8734, 1094, 1093));
    assert_eq!(rsicd.items[0].class.as_deref(), Some("Airport"));
    // Images are found one folder up (RSICD/images holds a 52-image sample), the rest reported missing.
    let dir = rsicd.image_dir.as_ref().expect("RSICD/images should be found");
    assert!(dir.ends_with("RSICD/images"), "{}", dir.display());
    let available = rsicd.images_available();
    assert!((40..=52).contains(&available), "{available} images found");
    assert!(rsicd.notes.iter().any(|n| n.contains("missing")), "{:?}", rsicd.notes);

    let ucm = Dataset::load(&rs.join("UCM/dataset_ucm.json"), None).unwrap();
    assert_eq!((ucm.items.len(), ucm.caption_count()), (2100, 10_500));
    let by = ucm.counts_by_split();
    assert_eq!((by["train"].images, by["val"].images, by["test"].images), (1680, 210, 210));
    assert!(ucm.image_dir.is_none() && ucm.notes[0].contains("text-only"), "{:?}", ucm.notes);

    let sydney = Dataset::load(&rs.join("Sydney/dataset_sydney_modified.json"), None).unwrap();
    assert_eq!((sydney.items.len(), sydney.caption_count()), (613, 3065));
    let by = sydney.counts_by_split();
    assert_eq!((by["train"].images, by["val"].images, by["test"].images), (497, 58, 58));
    // Captions are `raw`, with original case and the space before the final period.
    assert!(sydney.items[0].captions[0].ends_with(" ."));

    // A folder: the sample JSON next to images/ is found and every image exists.
    let sample = Dataset::load(&rs.join("RSICD"), None).unwrap();
    assert_eq!((sample.items.len(), sample.images_available()), (52, 52));
}

#[test]
fn shared_coco_files_take_split_from_file_name() {
    let Some(rs) = common::remote_sensing() else { return };
    let val =
        Dataset::load(&rs.join("RSICD/annotations/jwdevx_coco_format/captions_val2017.json"), None)
            .unwrap();
    assert_eq!(val.format, Format::Coco);
    assert_eq!((val.items.len(), val.caption_count()), (1092, 5460));
    assert!(val.items.iter().all(|i| i.split == Split::Val));
    let test = Dataset::load(
        &rs.join("RSICD/annotations/jwdevx_coco_format/captions_test2017.json"),
        None,
    )
    .unwrap();
    assert_eq!((test.items.len(), test.caption_count()), (1093, 5465));
}

#[test]
fn riscm_csv_with_resized_folder() {
    let d = tmpdir("riscm");
    let _cleanup = common::RemoveOnDrop(d.clone());
    let png = std::fs::read(common::fixtures().join("images/gray_90x64.png")).unwrap();
    write(&d, "resized/NWPU_1.jpg", &png);
    write(&d, "resized/RSICD_2.jpg", &png);
    write(
        &d,
        "captions.csv",
        b"source,split,image,caption_1,caption_2,caption_3,caption_4,caption_5\r\n\
NWPU,test,NWPU_1.jpg,A gray plane on the runway and the lawn beside .,b,c,d,e\r\n\
RSICD,valid,RSICD_2.jpg,\"many buildings, and a road .\",b,c,d,\r\n\
UCM,train,UCM_3.tif,a,b,c,d,e\r\n",
    );
    let ds = Dataset::load(&d, None).unwrap();
    assert_eq!(ds.format, Format::RiscmCsv);
    assert_eq!(ds.items.len(), 3);
    assert_eq!(ds.items[0].source.as_deref(), Some("NWPU"));
    assert_eq!(ds.items[1].split, Split::Val);
    assert_eq!(ds.items[1].captions[0], "many buildings, and a road .");
    assert_eq!(ds.items[1].captions[4], "", "empty cells are kept for validation to report");
    assert!(ds.image_dir.as_ref().unwrap().ends_with("resized"));
    assert_eq!(ds.images_available(), 2);
    assert_eq!(ds.items[2].origin, "line 4");
    assert!(ds.notes.iter().any(|n| n.contains("2 of 3 images")), "{:?}", ds.notes);
    // Explicit image folder, and filtering by split.
    let ds = Dataset::load_with(
        &d.join("captions.csv"),
        &LoadOptions { format: Some(Format::RiscmCsv), image_dir: Some(d.join("resized")) },
    )
    .unwrap();
    assert_eq!(ds.filter_split(&Split::Test).items.len(), 1);
    assert!(ds.items[0].decode_image().is_ok());
}

#[test]
fn hf_parquet_export_folder() {
    let ds = Dataset::load(&common::fixtures().join("hf_parquet"), None).unwrap();
    assert_eq!(ds.format, Format::HfParquet);
    assert_eq!(ds.annotation_files.len(), 2);
    assert_eq!(ds.items.len(), 3);
    assert_eq!(ds.filter_split(&Split::Train).items.len(), 2);
    assert_eq!(ds.items[2].split, Split::Val, "`valid` in the file name is the val split");
    assert_eq!(ds.items[1].captions.len(), 5);
    assert_eq!(ds.images_available(), 3);
    let img = ds.items[2].decode_image().unwrap();
    assert_eq!((img.width(), img.height()), (12, 10));
    // Embedded bytes go through the same preprocessing as files.
    let pre = rsicd_data::ImagePreprocessor::new(8, rsicd_data::Resample::Bicubic);
    let items: Vec<&rsicd_data::Item> = ds.items.iter().collect();
    let batch = pre.load_items(&items).unwrap();
    assert_eq!(batch.len(), 3 * pre.len());
    assert_eq!(&batch[2 * pre.len()..], pre.apply(&img).as_slice());
}

#[test]
fn malformed_parquet() {
    let bad = common::fixtures().join("hf_parquet/bad");
    let e = err_of(&bad.join("missing_captions.parquet"), None);
    assert!(e.contains("missing column \"captions\""), "{e}");
    let e = err_of(&bad.join("captions_as_string.parquet"), None);
    assert!(
        e.contains("row 0, column \"captions\"") && e.contains("expected a list of strings"),
        "{e}"
    );
    let d = tmpdir("parquet-garbage");
    let _cleanup = common::RemoveOnDrop(d.clone());
    let e = err_of(&write(&d, "train.parquet", b"PAR1 this is not parquet"), None);
    assert!(e.contains("not a parquet file"), "{e}");
}

#[test]
fn malformed_karpathy_and_coco_name_the_key() {
    let d = tmpdir("json");
    let _cleanup = common::RemoveOnDrop(d.clone());
    let e = err_of(
        &write(&d, "bad_syntax.json", b"{\"images\": [\n  {\"filename\": \"a.jpg\",,}\n]}"),
        None,
    );
    assert!(e.contains("line 2, column"), "{e}");
    let e = err_of(
        &write(&d, "no_raw.json", br#"{"images":[{"filename":"a.jpg","split":"train","sentences":[{"raw":"x"},{"tokens":["y"]}]}]}"#),
        None,
    );
    assert!(e.contains("images[0].sentences[1].raw: missing"), "{e}");
    let e = err_of(
        &write(
            &d,
            "wrong_type.json",
            br#"{"images":[{"filename":7,"split":"train","sentences":[]}]}"#,
        ),
        None,
    );
    assert!(e.contains("images[0].filename: expected a string, found a number"), "{e}");
    let e =
        err_of(&write(&d, "latin1.json", b"{\"images\":[{\"filename\":\"caf\xe9.jpg\"}]}"), None);
    assert!(e.contains("line 1, column 28") && e.contains("UTF-8"), "{e}");
    let e = err_of(&write(&d, "other.json", br#"{"foo": 1}"#), None);
    assert!(e.contains("neither Karpathy"), "{e}");
    let e = err_of(
        &write(
            &d,
            "captions_train.json",
            br#"{"images":[{"id":1,"file_name":"a.jpg"}],"annotations":[{"image_id":1,"caption":"ok"},{"image_id":9,"caption":"x"}]}"#,
        ),
        None,
    );
    assert!(e.contains("annotations[1].image_id: no image has id 9"), "{e}");
    // A forced format that does not fit fails on the first missing key.
    let e = err_of(&write(&d, "karpathy.json", br#"{"images":[]}"#), Some(Format::Coco));
    assert!(e.contains("annotations"), "{e}");
}

#[test]
fn malformed_csv_names_the_line() {
    let d = tmpdir("csv");
    let _cleanup = common::RemoveOnDrop(d.clone());
    let e = err_of(&write(&d, "a.csv", b"source,split,caption_1\nNWPU,train,x\n"), None);
    assert!(e.contains("missing column \"image\""), "{e}");
    let e = err_of(&write(&d, "b.csv", b"split,image\ntrain,a.jpg\n"), None);
    assert!(e.contains("missing column \"caption_1\""), "{e}");
    let e =
        err_of(&write(&d, "c.csv", b"split,image,caption_1\ntrain,a.jpg,x\ntrain,b.jpg\n"), None);
    assert!(e.contains("line 3") && e.contains("2 fields, but the header has 3"), "{e}");
    let e =
        err_of(&write(&d, "d.csv", b"split,image,caption_1\ntrain,a.jpg,\"never closed\n"), None);
    assert!(e.contains("line 2") && e.contains("never closed"), "{e}");
    let e = err_of(&write(&d, "e.csv", b""), None);
    assert!(e.contains("empty"), "{e}");
    let e = err_of(&write(&d, "f.txt", b"x"), None);
    assert!(e.contains("--format"), "{e}");
    let missing = d.join("nope.json");
    assert!(Dataset::load(&missing, None).unwrap_err().to_string().contains("nope.json"));
}
