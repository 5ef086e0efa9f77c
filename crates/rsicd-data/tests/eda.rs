//! EDA on the full real RSICD, UCM and Sydney annotations, checked against numbers computed independently by
//! `scripts/data/gen_eda_expected.py` (Python json + numpy, same documented definitions).
mod common;

use rsicd_data::eda::{compute, EdaOptions};
use rsicd_data::Dataset;
use serde_json::Value;

fn pairs(v: &Value) -> Vec<(String, usize)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_u64().unwrap() as usize))
        .collect()
}

#[test]
fn eda_matches_independent_counts_on_rsicd_ucm_sydney() {
    let Some(rs) = common::remote_sensing() else { return };
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixtures().join("eda_expected.json")).unwrap(),
    )
    .unwrap();
    for (name, rel) in [
        ("rsicd", "RSICD/annotations/dataset_rsicd_reconstructed.json"),
        ("ucm", "UCM/dataset_ucm.json"),
        ("sydney", "Sydney/dataset_sydney_modified.json"),
    ] {
        let e = &expected[name];
        let ds = Dataset::load(&rs.join(rel), None).unwrap();
        let s = compute(&ds, &EdaOptions { top_k: 10, max_images: 64, thumbnails: 4 }, None);
        assert_eq!(s.images as u64, e["images"].as_u64().unwrap(), "{name} images");
        assert_eq!(s.captions as u64, e["captions"].as_u64().unwrap(), "{name} captions");
        for (split, c) in e["per_split"].as_object().unwrap() {
            let got = s.per_split[split];
            assert_eq!(got.images as u64, c["images"].as_u64().unwrap(), "{name} {split}");
            assert_eq!(got.captions as u64, c["captions"].as_u64().unwrap(), "{name} {split}");
        }
        let classes: Vec<(String, usize)> = s.per_class.clone().into_iter().collect();
        let want: Vec<(String, usize)> = e["per_class"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap() as usize))
            .collect();
        assert_eq!(classes, want, "{name} classes");
        let w = &e["words"];
        for (got, key) in [
            (s.words.summary.min, "min"),
            (s.words.summary.max, "max"),
            (s.words.summary.mean, "mean"),
            (s.words.summary.median, "median"),
            (s.words.summary.p95, "p95"),
            (s.words.summary.p99, "p99"),
        ] {
            assert!(
                (got - w[key].as_f64().unwrap()).abs() < 1e-9,
                "{name} words {key}: {got} vs {}",
                w[key]
            );
        }
        assert_eq!(
            s.vocabulary_size as u64,
            e["vocabulary_size"].as_u64().unwrap(),
            "{name} vocabulary"
        );
        assert_eq!(s.top_words, pairs(&e["top_words"]), "{name} top words");
        assert_eq!(s.top_content_words, pairs(&e["top_content_words"]), "{name} top content words");
        assert_eq!(
            s.unique_captions as u64,
            e["unique_captions"].as_u64().unwrap(),
            "{name} unique"
        );
        assert_eq!(
            s.images_all_identical as u64,
            e["images_all_identical"].as_u64().unwrap(),
            "{name} identical"
        );
        for (k, v) in e["distinct_per_image"].as_object().unwrap() {
            let k: usize = k.parse().unwrap();
            assert_eq!(
                s.distinct_per_image.get(&k).copied().unwrap_or(0) as u64,
                v.as_u64().unwrap(),
                "{name}"
            );
        }
        for (got, want) in s.ngram_diversity.iter().zip(e["ngrams"].as_array().unwrap()) {
            assert_eq!(
                got.distinct as u64,
                want["distinct"].as_u64().unwrap(),
                "{name} distinct-{}",
                got.n
            );
            assert_eq!(got.total as u64, want["total"].as_u64().unwrap(), "{name} {}-grams", got.n);
        }
    }
}

#[test]
fn image_statistics_on_the_rsicd_sample() {
    let Some(rs) = common::remote_sensing() else { return };
    let ds = Dataset::load(&rs.join("RSICD/rsicd_sample_captions.json"), None).unwrap();
    let s = compute(&ds, &EdaOptions::default(), None);
    let img = s.image_stats.expect("the 52 sample images are present");
    assert_eq!((img.decoded, img.failed), (52, 0));
    assert_eq!(img.sizes.get("224x224"), Some(&52));
    assert_eq!(img.thumbnails.len(), 12);
    // Aerial RGB: mid-range means and a real spread in every channel.
    assert!(img.channel_mean.iter().all(|&m| (60.0..190.0).contains(&m)), "{:?}", img.channel_mean);
    assert!(img.channel_std.iter().all(|&m| (20.0..90.0).contains(&m)), "{:?}", img.channel_std);
    // With a token counter: here characters, which must sum to the total caption length.
    let chars = |c: &str| c.chars().count();
    let s = compute(&ds, &EdaOptions { max_images: 0, ..Default::default() }, Some(&chars));
    let total: usize = ds.items.iter().flat_map(|i| &i.captions).map(|c| c.chars().count()).sum();
    let t = s.tokens.unwrap();
    assert!((t.summary.mean * t.summary.count as f64 - total as f64).abs() < 1e-6);
}
