//! Validation, tokenization and word interning of a corpus before scoring.
//!
//! pycocoevalcap asserts that every evaluated image has exactly one hypothesis and at least one
//! reference, and that results name only known images; here those are [`MetricsError`]s naming the ids.

use std::collections::{BTreeMap, HashSet};

use crate::error::{MetricsError, Result};
use crate::ngram::Vocab;
use crate::ptb::tokenize_captions;
use crate::text::{split_space, split_whitespace};
use crate::Tokenization;

/// One image to score: its id, its reference captions and the hypothesis.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    pub image_id: &'a str,
    pub references: &'a [String],
    pub hypothesis: &'a str,
}

/// A tokenized sentence as word ids: `words` split like Python's `split()` (BLEU, CIDEr-D), `rouge_tokens`
/// like `split(" ")` (ROUGE-L).
#[derive(Debug, Clone)]
pub struct Sentence {
    pub words: Vec<u32>,
    pub rouge_tokens: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct EncodedImage {
    pub refs: Vec<Sentence>,
    pub hyp: Sentence,
}

/// A validated corpus in evaluation order, tokenized and interned.
#[derive(Debug)]
pub struct Prepared {
    pub ids: Vec<String>,
    /// Tokenized reference strings (what METEOR receives).
    pub refs: Vec<Vec<String>>,
    /// Tokenized hypothesis strings.
    pub hyps: Vec<String>,
    pub images: Vec<EncodedImage>,
    pub vocab: Vocab,
}

/// Checks that references and hypotheses describe the same images; returns samples in id order.
pub fn pair<'a>(
    refs: &'a BTreeMap<String, Vec<String>>,
    hyps: &'a BTreeMap<String, String>,
) -> Result<Vec<Sample<'a>>> {
    let unknown: Vec<String> = hyps.keys().filter(|k| !refs.contains_key(*k)).cloned().collect();
    if !unknown.is_empty() {
        return Err(MetricsError::UnknownImages { count: unknown.len(), ids: unknown });
    }
    let missing: Vec<String> = refs.keys().filter(|k| !hyps.contains_key(*k)).cloned().collect();
    if !missing.is_empty() {
        return Err(MetricsError::MissingHypotheses { count: missing.len(), ids: missing });
    }
    Ok(refs
        .iter()
        .map(|(id, r)| Sample { image_id: id, references: r, hypothesis: &hyps[id] })
        .collect())
}

pub fn prepare(samples: &[Sample<'_>], tokenization: Tokenization) -> Result<Prepared> {
    if samples.is_empty() {
        return Err(MetricsError::EmptyCorpus);
    }
    let mut seen = HashSet::with_capacity(samples.len());
    for s in samples {
        if !seen.insert(s.image_id) {
            return Err(MetricsError::DuplicateImage { image_id: s.image_id.to_owned() });
        }
        if s.references.is_empty() {
            return Err(MetricsError::NoReferences { image_id: s.image_id.to_owned() });
        }
    }
    // pycocoevalcap tokenizes all references in one jar call and all hypotheses in another, in image order.
    let ref_stream: Vec<&str> =
        samples.iter().flat_map(|s| s.references.iter().map(String::as_str)).collect();
    let hyp_stream: Vec<&str> = samples.iter().map(|s| s.hypothesis).collect();
    let (ref_tok, hyp_tok) = match tokenization {
        Tokenization::Ptb => (tokenize_captions(&ref_stream), tokenize_captions(&hyp_stream)),
        Tokenization::Pretokenized => (
            ref_stream.iter().map(|s| s.to_string()).collect(),
            hyp_stream.iter().map(|s| s.to_string()).collect(),
        ),
    };
    let mut ref_iter = ref_tok.into_iter();
    let tokenized: Vec<(Vec<String>, String)> = samples
        .iter()
        .zip(hyp_tok)
        .map(|(s, h)| (ref_iter.by_ref().take(s.references.len()).collect(), h))
        .collect();

    let mut vocab = Vocab::default();
    let mut encode = |s: &str| Sentence {
        words: split_whitespace(s).map(|w| vocab.id(w)).collect(),
        rouge_tokens: split_space(s).map(|w| vocab.id(w)).collect(),
    };
    let mut images = Vec::with_capacity(samples.len());
    for (refs, hyp) in &tokenized {
        let refs = refs.iter().map(|r| encode(r)).collect();
        images.push(EncodedImage { refs, hyp: encode(hyp) });
    }
    let (refs, hyps) = tokenized.into_iter().unzip();
    Ok(Prepared {
        ids: samples.iter().map(|s| s.image_id.to_owned()).collect(),
        refs,
        hyps,
        images,
        vocab,
    })
}
