//! The native METEOR's parts against the METEOR 1.5 jar's own classes
//! (`scripts/metrics/meteor_native_fixture.py` + `MeteorReference.java`): the Snowball stemmer on the
//! caption vocabulary, the `-norm` normalizer, and whole-segment statistics with the exact, stem and
//! synonym modules on the RSICD test corpus, all equal.

mod common;

use metrics::meteor::normalize::normalize;
use metrics::meteor::resources::Resources;
use metrics::meteor::stats::MeteorStats;
use metrics::meteor::stemmer::stem;
use sha2::{Digest, Sha256};

#[test]
fn stems_equal_the_jar() {
    let f = common::fixture("meteor_native.json");
    let pairs = f["stems"].as_array().unwrap();
    let bad: Vec<String> = pairs
        .iter()
        .filter_map(|p| {
            let (w, s) = (p[0].as_str().unwrap(), p[1].as_str().unwrap());
            (stem(w) != s).then(|| format!("{w:?}: jar {s:?}, ours {:?}", stem(w)))
        })
        .collect();
    assert!(bad.is_empty(), "{} of {} stems differ:\n{}", bad.len(), pairs.len(), bad.join("\n"));
}

fn jar_resources(test: &str) -> Option<Resources> {
    let jar = common::meteor_jar(test)?;
    Some(Resources::from_jar(&jar).unwrap())
}

#[test]
fn normalizer_equals_the_jar() {
    let Some(res) = jar_resources("normalizer_equals_the_jar") else { return };
    let f = common::fixture("meteor_native.json");
    for case in f["normalize_edge_cases"].as_array().unwrap() {
        let (input, want) = (case[0].as_str().unwrap(), case[1].as_str().unwrap());
        assert_eq!(normalize(input, &res.prefixes), want, "normalize({input:?})");
    }
    let Some(shared) = common::shared_dir("normalizer_equals_the_jar") else { return };
    let corpus = common::rsicd_test_corpus(&shared);
    let refs: Vec<&str> = corpus.iter().flat_map(|c| c.1.iter().map(String::as_str)).collect();
    let hyps: Vec<&str> = corpus.iter().map(|c| c.2.as_str()).collect();
    let mut segments = metrics::ptb::tokenize_captions(&refs);
    segments.extend(metrics::ptb::tokenize_captions(&hyps));
    let out: Vec<String> = segments.iter().map(|s| normalize(s, &res.prefixes)).collect();
    let digest: String =
        Sha256::digest(out.join("\n").as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        digest,
        f["normalize_corpus"]["sha256"].as_str().unwrap(),
        "normalized corpus differs"
    );
}

#[test]
fn three_module_statistics_equal_the_jar() {
    let Some(res) = jar_resources("three_module_statistics_equal_the_jar") else { return };
    let Some(shared) = common::shared_dir("three_module_statistics_equal_the_jar") else { return };
    let f = common::fixture("meteor_native.json");
    let native = metrics::meteor::native::NativeMeteor::new(res);
    assert_eq!(native.modules(), ["exact", "stem", "synonym"]);
    let corpus = common::rsicd_test_corpus(&shared);
    let refs: Vec<&str> = corpus.iter().flat_map(|c| c.1.iter().map(String::as_str)).collect();
    let hyps: Vec<&str> = corpus.iter().map(|c| c.2.as_str()).collect();
    let mut ref_tok = metrics::ptb::tokenize_captions(&refs).into_iter();
    let hyp_tok = metrics::ptb::tokenize_captions(&hyps);
    let mut bad = Vec::new();
    for (i, (c, line)) in corpus.iter().zip(f["stats"].as_array().unwrap()).enumerate() {
        let r: Vec<String> = ref_tok.by_ref().take(c.1.len()).collect();
        let got = native.segment_stats(&r, &hyp_tok[i]);
        let want = MeteorStats::parse(line.as_str().unwrap()).unwrap();
        if got != want {
            bad.push(format!(
                "{} ({}): hyp {:?}\n  jar : {want:?}\n  ours: {got:?}",
                c.0, c.3, hyp_tok[i]
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} images differ:\n{}",
        bad.len(),
        corpus.len(),
        bad.iter().take(5).cloned().collect::<Vec<_>>().join("\n")
    );
}
