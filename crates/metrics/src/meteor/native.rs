//! The native METEOR: METEOR 1.5's pipeline for the exact, stem and synonym modules, without Java.
//!
//! Per image, as `Meteor -stdio` does for a `SCORE` line: the hypothesis and each reference are
//! normalized (`-norm`) and lowercased, the hypothesis is aligned to each reference, and the statistics
//! of the best-scoring reference are kept; the corpus score sums the statistics. The official metric also
//! has a paraphrase module (a 61 MB table) that this port leaves out, so its value is an approximation and
//! is always reported as "METEOR (approx)"; `tests/meteor_native.rs` measures how close it is.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use super::aligner::{align, java_hash, WordInfo};
use super::normalize::normalize;
use super::resources::Resources;
use super::stats::{MeteorParams, MeteorStats};
use super::stemmer::stem;

pub struct NativeMeteor {
    resources: Resources,
    params: MeteorParams,
}

/// Per-word data, computed once per distinct word.
struct Word {
    hash: i32,
    stem_hash: i32,
    synsets: Option<HashSet<i32>>,
    function: bool,
}

impl NativeMeteor {
    pub fn new(resources: Resources) -> Self {
        NativeMeteor { resources, params: MeteorParams::default() }
    }

    /// The modules in use, in METEOR's order.
    pub fn modules(&self) -> Vec<&'static str> {
        if self.resources.synonyms.is_some() {
            vec!["exact", "stem", "synonym"]
        } else {
            vec!["exact", "stem"]
        }
    }

    pub fn resources(&self) -> &Resources {
        &self.resources
    }

    fn word(&self, w: &str) -> Word {
        Word {
            hash: java_hash(w),
            stem_hash: java_hash(&stem(w)),
            synsets: self.resources.synonyms.as_ref().map(|s| s.all_synsets(w)),
            function: self.resources.function_words.contains(&w.to_lowercase()),
        }
    }

    fn infos<'a>(&self, words: &[&str], cache: &'a HashMap<String, Word>) -> Vec<WordInfo<'a>> {
        words
            .iter()
            .map(|w| {
                let d = &cache[*w];
                WordInfo {
                    hash: d.hash,
                    stem_hash: Some(d.stem_hash),
                    synsets: d.synsets.as_ref(),
                    function: d.function,
                }
            })
            .collect()
    }

    /// Statistics of a hypothesis against its references (the best-scoring reference's), given the exact
    /// text the pycocoevalcap wrapper would send on its `SCORE` line.
    pub fn segment_stats(&self, refs: &[String], hyp: &str) -> MeteorStats {
        // Rebuild and re-split the protocol line so that '|||' inside a reference behaves as in the jar.
        let line = super::jar::score_line(refs, hyp);
        let mut parts: Vec<&str> = line.split("|||").collect();
        while parts.last().is_some_and(|p| p.is_empty()) {
            // Java's String.split drops trailing empty strings.
            parts.pop();
        }
        let java_trim = |s: &str| s.trim_matches(|c: char| c <= ' ').to_string();
        let test = java_trim(parts.last().copied().unwrap_or(""));
        let refs: Vec<String> =
            parts[1..parts.len().saturating_sub(1)].iter().map(|r| java_trim(r)).collect();

        let norm_test = normalize(&test, &self.resources.prefixes);
        let norm_refs: Vec<String> =
            refs.iter().map(|r| normalize(r, &self.resources.prefixes)).collect();
        let split = |s: &str| {
            s.split([' ', '\t', '\n', '\r', '\u{c}'])
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let test_words = split(&norm_test);
        let ref_words: Vec<Vec<String>> = norm_refs.iter().map(|r| split(r)).collect();
        let mut cache: HashMap<String, Word> = HashMap::new();
        for w in test_words.iter().chain(ref_words.iter().flatten()) {
            if !cache.contains_key(w) {
                cache.insert(w.clone(), self.word(w));
            }
        }
        let modules = self.modules().len();
        let test_refs: Vec<&str> = test_words.iter().map(String::as_str).collect();
        let test_info = self.infos(&test_refs, &cache);
        let mut best: Option<(f64, MeteorStats)> = None;
        for r in &ref_words {
            let r: Vec<&str> = r.iter().map(String::as_str).collect();
            let stats = align(&test_info, &self.infos(&r, &cache), modules);
            let score = stats.score(&self.params);
            // `if (curStats.score > stats.score)` starting from -1: the first best reference wins ties.
            if best.as_ref().is_none_or(|(b, _)| score > *b) {
                best = Some((score, stats));
            }
        }
        best.map(|(_, s)| s).unwrap_or_default()
    }

    /// Per-image scores, the corpus score and the statistics, as the jar's `EVAL` computes them.
    pub fn score_corpus(
        &self,
        refs: &[Vec<String>],
        hyps: &[String],
    ) -> (Vec<f64>, f64, Vec<MeteorStats>) {
        let stats: Vec<MeteorStats> =
            refs.par_iter().zip(hyps).map(|(r, h)| self.segment_stats(r, h)).collect();
        let per_image = stats.iter().map(|s| s.score(&self.params)).collect();
        let corpus = MeteorStats::aggregate(&stats).score(&self.params);
        (per_image, corpus, stats)
    }
}
