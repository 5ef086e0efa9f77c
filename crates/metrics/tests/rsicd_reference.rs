//! The real RSICD test split (1,093 images, 5 references each) with five kinds of synthetic hypotheses,
//! scored by pycocoevalcap's full pipeline (`scripts/metrics/rsicd_reference.py`): BLEU, ROUGE-L and
//! CIDEr-D within 1e-6 per image and for the corpus (PTB tokenization included), METEOR through the jar
//! within 1e-6, and the native METEOR's distance from the official value recorded.

mod common;

use metrics::{evaluate_samples, MeteorKind, MeteorMode, Options, Report, Sample};
use serde_json::Value;

fn run(mode: MeteorMode) -> Option<(Report, Value)> {
    let shared = common::shared_dir("rsicd_reference")?;
    let corpus = common::rsicd_test_corpus(&shared);
    let samples: Vec<Sample> = corpus
        .iter()
        .map(|(id, r, h, _)| Sample { image_id: id, references: r, hypothesis: h })
        .collect();
    let opts = Options { meteor: mode, ..Options::default() };
    Some((evaluate_samples(&samples, &opts).unwrap(), common::fixture("rsicd_test_reference.json")))
}

#[test]
fn bleu_rouge_cider_match_pycocoevalcap() {
    let Some((r, f)) = run(MeteorMode::Skip) else { return };
    let mut max_diff = 0.0f64;
    let mut check = |what: String, got: f64, want: &Value| {
        let want = want.as_f64().unwrap();
        max_diff = max_diff.max((got - want).abs());
        common::close(&what, got, want, 1e-6);
    };
    for n in 0..4 {
        check(
            format!("corpus Bleu_{}", n + 1),
            r.corpus.get(&format!("Bleu_{}", n + 1)).unwrap(),
            &f["corpus"][format!("Bleu_{}", n + 1)],
        );
    }
    check("corpus ROUGE_L".into(), r.corpus.get("ROUGE_L").unwrap(), &f["corpus"]["ROUGE_L"]);
    check("corpus CIDEr".into(), r.corpus.get("CIDEr").unwrap(), &f["corpus"]["CIDEr"]);
    let per = &f["per_image"];
    for (i, img) in r.per_image.iter().enumerate() {
        for n in 0..4 {
            check(
                format!("{} Bleu_{}", img.image_id, n + 1),
                img.scores.get(&format!("Bleu_{}", n + 1)).unwrap(),
                &per[format!("Bleu_{}", n + 1)][i],
            );
        }
        check(
            format!("{} ROUGE_L", img.image_id),
            img.scores.get("ROUGE_L").unwrap(),
            &per["ROUGE_L"][i],
        );
        check(
            format!("{} CIDEr", img.image_id),
            img.scores.get("CIDEr").unwrap(),
            &per["CIDEr"][i],
        );
    }
    eprintln!("RSICD test split: largest |difference| from pycocoevalcap over {} BLEU/ROUGE-L/CIDEr-D values = {max_diff:.3e}",
        (r.per_image.len() + 1) * 6);
}

#[test]
fn meteor_jar_and_native_against_pycocoevalcap() {
    let Some(shared) = common::shared_dir("rsicd_reference meteor") else { return };
    let _ = shared;
    let Some((native, f)) = run(MeteorMode::Approximate) else { return };
    let want = f["corpus"]["METEOR"].as_f64().unwrap();
    let per: Vec<f64> =
        f["per_image"]["METEOR"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!(matches!(native.meteor, MeteorKind::Approximate { .. }));
    let got = native.corpus.get("METEOR (approx)").unwrap();
    let mean_abs = native
        .per_image
        .iter()
        .zip(&per)
        .map(|(i, w)| (i.scores.get("METEOR (approx)").unwrap() - w).abs())
        .sum::<f64>()
        / per.len() as f64;
    eprintln!(
        "native METEOR ({}): corpus {got:.6} vs official {want:.6} (gap {:+.6}); mean |per-image gap| {mean_abs:.6}",
        native.meteor.describe(),
        got - want
    );
    // The native value leaves out paraphrase matches, so it can only lose credit; the bound catches a
    // broken port, not the missing module.
    assert!((got - want).abs() < 0.02, "native METEOR drifted: {got} vs {want}");

    if common::meteor_jar("rsicd_reference meteor jar").is_none() {
        return;
    }
    let Some((exact, _)) = run(MeteorMode::Exact) else { return };
    common::close("corpus METEOR (jar)", exact.corpus.get("METEOR").unwrap(), want, 1e-6);
    for (img, w) in exact.per_image.iter().zip(&per) {
        common::close(
            &format!("{} METEOR (jar)", img.image_id),
            img.scores.get("METEOR").unwrap(),
            *w,
            1e-6,
        );
    }
}
