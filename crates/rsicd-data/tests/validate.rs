//! Validation finds each kind of problem, counts it right and keeps examples that point at the annotation.
mod common;

use rsicd_data::validate::{validate, Check, ValidateOptions};
use rsicd_data::Dataset;

#[test]
fn every_problem_kind_is_found_and_counted() {
    let d = std::env::temp_dir().join(format!("rsicd-validate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let _cleanup = common::RemoveOnDrop(d.clone());
    std::fs::create_dir_all(d.join("images")).unwrap();
    let img = |name: &str| common::fixtures().join("images").join(name);
    std::fs::copy(img("gray_90x64.png"), d.join("images/a.png")).unwrap();
    std::fs::copy(img("gray_90x64.png"), d.join("images/b.png")).unwrap();
    std::fs::copy(img("la_50x50.png"), d.join("images/c.png")).unwrap();
    std::fs::write(d.join("images/broken.png"), b"\x89PNG\r\n\x1a\n garbage").unwrap();
    let five =
        r#"[{"raw":"one ."},{"raw":"two ."},{"raw":"three ."},{"raw":"four ."},{"raw":"five ."}]"#;
    let json = format!(
        r#"{{"images":[
 {{"filename":"a.png","split":"train","sentences":{five}}},
 {{"filename":"b.png","split":"valid","sentences":[{{"raw":"same ."}},{{"raw":"same ."}},{{"raw":"  "}},{{"raw":" ."}},{{"raw":"a <image> token"}},{{"raw":"box <loc0042>"}}]}},
 {{"filename":"c.png","split":"restval","sentences":{five}}},
 {{"filename":"a.png","split":"test","sentences":{five}}},
 {{"filename":"missing.png","split":"train","sentences":{five}}},
 {{"filename":"broken.png","split":"train","sentences":[]}}
]}}"#
    );
    std::fs::write(d.join("dataset_toy.json"), json).unwrap();
    let ds = Dataset::load(&d.join("dataset_toy.json"), None).unwrap();
    let r = validate(&ds, &ValidateOptions::default());
    assert_eq!(r.count(Check::DuplicateFilename), 1);
    assert_eq!(r.count(Check::UnknownSplit), 1);
    assert_eq!(r.count(Check::EmptyCaption), 2);
    assert_eq!(r.count(Check::SpecialToken), 2);
    assert_eq!(r.count(Check::NoCaptions), 1);
    assert_eq!(r.count(Check::MissingImage), 1);
    assert_eq!(r.count(Check::UnreadableImage), 1);
    // b.png has 3 distinct non-empty captions ("same ." twice); broken.png has none (counted as NoCaptions).
    assert_eq!(r.count(Check::FewDistinctCaptions), 1);
    // Most common size is 90x64 (a, b, a again); c.png is 50x50.
    assert_eq!(r.count(Check::UnexpectedImageSize), 1);
    assert_eq!(r.image_sizes.get("90x64"), Some(&3));
    let ex = |c: Check| r.findings.iter().find(|f| f.check == c).unwrap().examples.join(" | ");
    assert!(
        ex(Check::DuplicateFilename).contains("images[3] (first at images[0])"),
        "{}",
        ex(Check::DuplicateFilename)
    );
    assert!(ex(Check::SpecialToken).contains("<loc0042>"));
    assert!(ex(Check::MissingImage).contains("missing.png (images[4])"));
    assert!(ex(Check::UnreadableImage).contains("broken.png"));
    assert!(ex(Check::UnexpectedImageSize).contains("c.png: 50x50, expected 90x64"));
    assert_eq!(r.errors(), 1 + 1 + 2 + 2 + 1 + 1 + 1);

    // Expected size given explicitly: every image that is not 50x50 is flagged.
    let r = validate(&ds, &ValidateOptions { expected_size: Some((50, 50)), ..Default::default() });
    assert_eq!(r.count(Check::UnexpectedImageSize), 3);
}

#[test]
fn text_only_dataset_says_images_were_not_checked() {
    let Some(rs) = common::remote_sensing() else { return };
    let ds = Dataset::load(&rs.join("UCM/dataset_ucm.json"), None).unwrap();
    let r = validate(&ds, &ValidateOptions::default());
    assert_eq!(r.count(Check::NoImages), 1);
    assert_eq!(r.count(Check::MissingImage), 0);
    assert_eq!(r.errors(), 0, "{:?}", r.findings);
}

#[test]
fn real_rsicd_annotations_have_three_empty_captions() {
    // Independently: python -c "...re.findall(r'[^\W_]+', raw)..." finds bridge_218, parking_211, bridge_59.
    let Some(rs) = common::remote_sensing() else { return };
    let ds = Dataset::load(&rs.join("RSICD/annotations/dataset_rsicd_reconstructed.json"), None)
        .unwrap();
    let r = validate(&ds, &ValidateOptions { decode_images: false, ..Default::default() });
    assert_eq!(r.count(Check::EmptyCaption), 3);
    let ex =
        r.findings.iter().find(|f| f.check == Check::EmptyCaption).unwrap().examples.join(" | ");
    assert!(
        ex.contains("bridge_218.jpg")
            && ex.contains("parking_211.jpg")
            && ex.contains("bridge_59.jpg"),
        "{ex}"
    );
    assert_eq!(
        r.count(Check::DuplicateFilename)
            + r.count(Check::UnknownSplit)
            + r.count(Check::SpecialToken),
        0
    );
    assert_eq!(r.count(Check::MissingImage), 10_921 - 52);
}
