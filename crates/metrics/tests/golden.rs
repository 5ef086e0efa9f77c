//! Four golden sets scored by pycocoevalcap 1.2 (`golden-metrics.json` in the shared reference data beside the
//! repository, skipped without it; the real PTB
//! tokenizer and METEOR jar): BLEU, ROUGE-L and CIDEr-D within 1e-9, METEOR (jar) within 1e-6, the PTB
//! tokenization of sets 1-3 string-equal to the jar's.

mod common;

use std::collections::BTreeMap;

use metrics::{evaluate, MeteorMode, Options, Tokenization};
use serde_json::Value;

fn map_refs(v: &Value) -> BTreeMap<String, Vec<String>> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, r)| {
            (
                k.clone(),
                r.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect(),
            )
        })
        .collect()
}

fn map_hyps(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, h)| (k.clone(), h.as_str().unwrap().to_string()))
        .collect()
}

/// (refs, hyps, tokenization) of a golden set.
fn inputs(set: &Value) -> (BTreeMap<String, Vec<String>>, BTreeMap<String, String>, Tokenization) {
    if set.get("raw_gts").is_some() {
        (map_refs(&set["raw_gts"]), map_hyps(&set["raw_res"]), Tokenization::Ptb)
    } else {
        (map_refs(&set["gts"]), map_hyps(&set["res"]), Tokenization::Pretokenized)
    }
}

fn golden() -> Option<Value> {
    let shared = common::shared_dir("golden")?;
    Some(common::read_json(&shared.join("reference/golden-metrics.json")))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

#[test]
fn bleu_rouge_cider_match_all_golden_sets() {
    let Some(g) = golden() else { return };
    let mut max_diff = 0.0f64;
    for (name, set) in g.as_object().unwrap() {
        let (refs, hyps, tokenization) = inputs(set);
        let opts = Options { tokenization, meteor: MeteorMode::Skip, ..Options::default() };
        let r = evaluate(&refs, &hyps, &opts).unwrap();
        let mut check = |what: String, got: f64, want: f64| {
            max_diff = max_diff.max((got - want).abs());
            common::close(&format!("{name} {what}"), got, want, 1e-9);
        };
        for n in 0..4 {
            check(
                format!("Bleu_{}", n + 1),
                r.corpus.get(&format!("Bleu_{}", n + 1)).unwrap(),
                f(&set["Bleu_1_4"][n]),
            );
        }
        check("ROUGE_L".into(), r.corpus.get("ROUGE_L").unwrap(), f(&set["ROUGE_L"]));
        check("CIDEr".into(), r.corpus.get("CIDEr").unwrap(), f(&set["CIDEr"]));
        let per = &set["per_image"];
        assert_eq!(r.per_image.len(), per["CIDEr"].as_array().unwrap().len());
        for (i, img) in r.per_image.iter().enumerate() {
            for n in 0..4 {
                check(
                    format!("{} Bleu_{}", img.image_id, n + 1),
                    img.scores.get(&format!("Bleu_{}", n + 1)).unwrap(),
                    f(&per["Bleu_1_4"][i][n]),
                );
            }
            check(
                format!("{} ROUGE_L", img.image_id),
                img.scores.get("ROUGE_L").unwrap(),
                f(&per["ROUGE_L"][i]),
            );
            check(
                format!("{} CIDEr", img.image_id),
                img.scores.get("CIDEr").unwrap(),
                f(&per["CIDEr"][i]),
            );
        }
    }
    eprintln!(
        "golden sets: largest |difference| over BLEU/ROUGE-L/CIDEr-D values = {max_diff:.3e}"
    );
}

#[test]
fn ptb_tokenization_equals_the_jar_on_golden_sets() {
    let Some(g) = golden() else { return };
    for (name, set) in g.as_object().unwrap() {
        let Some(raw) = set.get("raw_gts") else { continue };
        let (raw, ptb) = (map_refs(raw), map_refs(&set["ptb_gts"]));
        for (id, caps) in &raw {
            for (c, want) in caps.iter().zip(&ptb[id]) {
                assert_eq!(&metrics::tokenize_caption(c), want, "{name}/{id}: {c:?}");
            }
        }
        for (id, h) in map_hyps(&set["raw_res"]) {
            assert_eq!(
                metrics::tokenize_caption(&h),
                set["ptb_res"][&id].as_str().unwrap(),
                "{name}/{id} hyp"
            );
        }
    }
}

/// One jar process for all sets (it takes seconds to start), fed what pycocoevalcap feeds it.
#[test]
fn meteor_jar_matches_golden_sets() {
    let Some(g) = golden() else { return };
    if common::meteor_jar("meteor_jar_matches_golden_sets").is_none() {
        return;
    }
    let engine = metrics::meteor::MeteorEngine::new(MeteorMode::Exact, Default::default());
    for (name, set) in g.as_object().unwrap() {
        let (refs, hyps, tokenization) = inputs(set);
        let (ref_lists, hyp_list): (Vec<Vec<String>>, Vec<String>) = match tokenization {
            Tokenization::Ptb => {
                let flat: Vec<&str> = refs.values().flatten().map(String::as_str).collect();
                let mut tok = metrics::ptb::tokenize_captions(&flat).into_iter();
                let r = refs.values().map(|v| tok.by_ref().take(v.len()).collect()).collect();
                let h: Vec<&str> = hyps.values().map(String::as_str).collect();
                (r, metrics::ptb::tokenize_captions(&h))
            }
            Tokenization::Pretokenized => {
                (refs.values().cloned().collect(), hyps.values().cloned().collect())
            }
        };
        let m = engine.score(&ref_lists, &hyp_list).unwrap().unwrap();
        assert!(matches!(m.kind, metrics::MeteorKind::Exact { .. }));
        common::close(&format!("{name} METEOR"), m.corpus, f(&set["METEOR"]), 1e-6);
        for (i, (id, got)) in refs.keys().zip(&m.per_image).enumerate() {
            common::close(
                &format!("{name} {id} METEOR"),
                *got,
                f(&set["per_image"]["METEOR"][i]),
                1e-6,
            );
        }
    }
}

/// With the jar's data the native METEOR equals the official value wherever the jar finds no paraphrase
/// (sets 1, 2 and 4) and loses the paraphrase credit on set 3. Without a jar (built-in function words,
/// no synonyms) it is only checked to stay close, and the distance is printed.
#[test]
fn native_meteor_on_golden_sets() {
    let Some(g) = golden() else { return };
    for (name, set) in g.as_object().unwrap() {
        let (refs, hyps, tokenization) = inputs(set);
        let opts = Options { tokenization, meteor: MeteorMode::Approximate, ..Options::default() };
        let r = evaluate(&refs, &hyps, &opts).unwrap();
        assert_eq!(r.meteor.label(), "METEOR (approx)");
        let (got, want) = (r.corpus.get("METEOR (approx)").unwrap(), f(&set["METEOR"]));
        eprintln!("{name}: native METEOR {got:.6}, official {want:.6} ({})", r.meteor.describe());
        let with_jar_data = matches!(&r.meteor, metrics::MeteorKind::Approximate { modules, .. } if modules.contains(&"synonym"));
        if !with_jar_data {
            // One-image sets are rough without synonyms (set 3: 0.386 vs 0.518); the corpus-level bound is
            // in tests/rsicd_reference.rs.
            assert!((got - want).abs() < 0.15, "{name}: {got} vs {want}");
        } else if name == "set3_single_image" {
            assert!(
                got < want - 0.01,
                "{name}: the paraphrase match should be missing: {got} vs {want}"
            );
        } else {
            common::close(&format!("{name} native METEOR"), got, want, 1e-9);
        }
    }
}
