//! The library API: errors name the offending ids, results do not depend on the thread count, external
//! CIDEr document frequencies are labelled and reduce to the standard value when built from the evaluated
//! references, and scores are named by pycocoevalcap's keys (in the JSON too), in pycocoevalcap's order.

use std::collections::BTreeMap;
use std::sync::Arc;

use metrics::{
    evaluate, evaluate_samples, DfSource, DocumentFrequency, MeteorMode, MetricsError, Options,
    Sample, Tokenization,
};

fn corpus() -> (BTreeMap<String, Vec<String>>, BTreeMap<String, String>) {
    let refs = [
        (
            "a",
            vec!["Many green trees are around a building.", "A building is surrounded by trees."],
        ),
        ("b", vec!["Several planes are parked at the airport.", "Some planes are on the apron."]),
        (
            "c",
            vec!["A river passes through the farmland.", "A curved river runs across farmlands."],
        ),
        ("d", vec!["A bare land.", "It is a piece of bare land."]),
    ];
    let hyps = [
        ("a", "many trees are around a white building"),
        ("b", "planes are parked in an airport"),
        ("c", "a river goes through green farmland"),
        ("d", ""),
    ];
    (
        refs.iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect(),
        hyps.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    )
}

fn no_meteor() -> Options {
    Options { meteor: MeteorMode::Skip, ..Options::default() }
}

#[test]
fn mismatched_ids_are_errors_naming_them() {
    let (refs, mut hyps) = corpus();
    hyps.insert("zz".into(), "a caption".into());
    match evaluate(&refs, &hyps, &no_meteor()) {
        Err(e @ MetricsError::UnknownImages { count: 1, .. }) => {
            assert!(e.to_string().contains("\"zz\""))
        }
        other => panic!("expected UnknownImages, got {other:?}"),
    }
    let (refs, mut hyps) = corpus();
    hyps.remove("b");
    match evaluate(&refs, &hyps, &no_meteor()) {
        Err(e @ MetricsError::MissingHypotheses { count: 1, .. }) => {
            assert!(e.to_string().contains("\"b\""))
        }
        other => panic!("expected MissingHypotheses, got {other:?}"),
    }
}

#[test]
fn empty_inputs_are_errors() {
    let (mut refs, hyps) = corpus();
    refs.get_mut("c").unwrap().clear();
    assert!(
        matches!(evaluate(&refs, &hyps, &no_meteor()), Err(MetricsError::NoReferences { image_id }) if image_id == "c")
    );
    assert!(matches!(
        evaluate(&BTreeMap::new(), &BTreeMap::new(), &no_meteor()),
        Err(MetricsError::EmptyCorpus)
    ));
    let r = vec!["x".to_string()];
    let dup = [
        Sample { image_id: "i", references: &r, hypothesis: "x" },
        Sample { image_id: "i", references: &r, hypothesis: "y" },
    ];
    assert!(matches!(
        evaluate_samples(&dup, &no_meteor()),
        Err(MetricsError::DuplicateImage { .. })
    ));
    let empty_df = Options {
        cider_df: DfSource::External(Arc::new(DocumentFrequency::default())),
        ..no_meteor()
    };
    let (refs, hyps) = corpus();
    assert!(matches!(evaluate(&refs, &hyps, &empty_df), Err(MetricsError::EmptyDocumentFrequency)));
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let (refs, hyps) = corpus();
    let opts = Options { meteor: MeteorMode::Approximate, ..Options::default() };
    let many = evaluate(&refs, &hyps, &opts).unwrap();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| evaluate(&refs, &hyps, &opts))
        .unwrap();
    assert_eq!(many.corpus, one.corpus);
    assert_eq!(many.per_image, one.per_image);
}

#[test]
fn external_document_frequencies_are_labelled_and_reduce_to_the_standard_value() {
    let (refs, hyps) = corpus();
    let standard = evaluate(&refs, &hyps, &no_meteor()).unwrap();
    // Built from the evaluated references themselves (tokenized like the evaluation), the external
    // document frequencies and image count are the standard ones.
    let tokenized: Vec<Vec<String>> =
        refs.values().map(|r| metrics::ptb::tokenize_captions(r)).collect();
    let df =
        DocumentFrequency::from_references(tokenized.iter().map(|r| r.iter().map(String::as_str)));
    assert_eq!(df.images(), refs.len());
    let opts = Options { cider_df: DfSource::External(Arc::new(df)), ..no_meteor() };
    let same = evaluate(&refs, &hyps, &opts).unwrap();
    assert_eq!(same.corpus.get("CIDEr (external df)"), standard.corpus.get("CIDEr"));
    assert_eq!(same.corpus_metrics().last().unwrap().0, "CIDEr (external df)");
    assert!(same.to_json(false).get("CIDEr").is_none());
    // From a larger corpus the value changes (a single evaluated image no longer scores 0).
    let one_ref: BTreeMap<String, Vec<String>> =
        refs.iter().take(1).map(|(k, v)| (k.clone(), v.clone())).collect();
    let one_hyp: BTreeMap<String, String> =
        hyps.iter().take(1).map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(evaluate(&one_ref, &one_hyp, &no_meteor()).unwrap().corpus.get("CIDEr"), Some(0.0));
    let external = evaluate(&one_ref, &one_hyp, &opts).unwrap();
    assert!(external.corpus.get("CIDEr (external df)").unwrap() > 0.0);
}

#[test]
fn json_has_pycocoevalcap_keys_and_labels_the_approximation() {
    let (refs, hyps) = corpus();
    let r =
        evaluate(&refs, &hyps, &Options { meteor: MeteorMode::Approximate, ..Options::default() })
            .unwrap();
    let j = r.to_json(false);
    for k in ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR (approx)", "ROUGE_L", "CIDEr"] {
        assert!(j[k].is_f64(), "missing {k}");
    }
    assert!(j.get("METEOR").is_none(), "an approximate METEOR must never appear as METEOR");
    assert_eq!(j["per_image"]["d"]["image_id"], "d");
    assert!(
        j["per_image"]["d"]["Bleu_4"].as_f64().unwrap() < 1e-6,
        "the empty hypothesis scores ~0"
    );
    assert!(r.table().contains("METEOR (approx)"));
    let p = evaluate(
        &refs,
        &hyps,
        &Options { tokenization: Tokenization::Pretokenized, ..no_meteor() },
    )
    .unwrap();
    assert!(p.to_json(false).get("METEOR (skipped)").is_none(), "skipped metrics are left out");
}

#[test]
fn scores_are_named_in_pycocoevalcap_order_and_the_evaluator_is_shareable() {
    fn shareable<T: Send + Sync>() {}
    shareable::<metrics::Evaluator>();
    let (refs, hyps) = corpus();
    let r =
        evaluate(&refs, &hyps, &Options { meteor: MeteorMode::Approximate, ..Options::default() })
            .unwrap();
    let names: Vec<&str> = r.corpus_metrics().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR (approx)", "ROUGE_L", "CIDEr"]
    );
    for img in &r.per_image {
        assert!(img.scores.iter().map(|(n, _)| n).eq(names.iter().copied()), "{}", img.image_id);
    }
    let registered: Vec<&str> =
        metrics::registry(&Options::default()).iter().flat_map(|m| m.names().to_vec()).collect();
    assert_eq!(registered, ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"]);
}
