//! BLEU-1..4 as pycocoevalcap's `Bleu(4)` computes it (`bleu/bleu_scorer.py`, option `closest`; Papineni et
//! al., "BLEU: a Method for Automatic Evaluation of Machine Translation", ACL 2002).
//!
//! Clipped n-gram matches against each n-gram's maximum count in any single reference; the effective
//! reference length is the closest one (ties go to the shorter); `tiny = 1e-15` and `small = 1e-9` keep every
//! value finite and positive. The corpus score pools the counts of all images (it is not the mean of the
//! per-image scores).

use rayon::prelude::*;

use crate::corpus::{EncodedImage, Prepared};
use crate::ngram::{FastMap, NgramCounts, NgramKey, MAX_N};
use crate::{Metric, Report, Result, Scored};

const TINY: f64 = 1e-15;
const SMALL: f64 = 1e-9;

/// Sufficient statistics of one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BleuStats {
    pub test_len: usize,
    pub ref_len: usize,
    pub guess: [usize; MAX_N],
    pub correct: [usize; MAX_N],
}

impl BleuStats {
    pub fn new(hyp: &[u32], refs: &[&[u32]]) -> Self {
        let mut max_ref: FastMap<NgramKey, u32> = FastMap::default();
        for r in refs {
            for (k, c) in NgramCounts::new(r).iter() {
                let e = max_ref.entry(k).or_insert(0);
                *e = (*e).max(c);
            }
        }
        let test = NgramCounts::new(hyp);
        let test_len = hyp.len();
        let mut correct = [0usize; MAX_N];
        for (n, list) in test.by_order.iter().enumerate() {
            for &(k, c) in list {
                correct[n] += c.min(max_ref.get(&k).copied().unwrap_or(0)) as usize;
            }
        }
        let guess = std::array::from_fn(|k| test_len.saturating_sub(k));
        // `min((abs(l - testlen), l) for l in reflen)[1]`: closest length, ties to the shorter reference.
        let ref_len = refs
            .iter()
            .map(|r| (r.len().abs_diff(test_len), r.len()))
            .min()
            .map(|(_, l)| l)
            .unwrap_or(0);
        BleuStats { test_len, ref_len, guess, correct }
    }

    /// Cumulative BLEU-1..4 from these (possibly pooled) statistics.
    pub fn score(&self) -> [f64; MAX_N] {
        let mut out = [0.0; MAX_N];
        let mut bleu = 1.0f64;
        for (k, v) in out.iter_mut().enumerate() {
            bleu *= (self.correct[k] as f64 + TINY) / (self.guess[k] as f64 + SMALL);
            *v = bleu.powf(1.0 / (k as f64 + 1.0));
        }
        let ratio = (self.test_len as f64 + TINY) / (self.ref_len as f64 + SMALL);
        if ratio < 1.0 {
            let penalty = (1.0 - 1.0 / ratio).exp();
            for v in &mut out {
                *v *= penalty;
            }
        }
        out
    }

    fn add(&mut self, other: &BleuStats) {
        self.test_len += other.test_len;
        self.ref_len += other.ref_len;
        for k in 0..MAX_N {
            self.guess[k] += other.guess[k];
            self.correct[k] += other.correct[k];
        }
    }
}

/// Corpus and per-image BLEU-1..4, and the pooled statistics (hypothesis length, effective reference
/// length, …) behind the corpus values.
pub fn bleu(images: &[EncodedImage]) -> (Scored, BleuStats) {
    let stats: Vec<BleuStats> = images
        .par_iter()
        .map(|img| {
            let refs: Vec<&[u32]> = img.refs.iter().map(|r| r.words.as_slice()).collect();
            BleuStats::new(&img.hyp.words, &refs)
        })
        .collect();
    let mut totals = BleuStats::default();
    for s in &stats {
        totals.add(s);
    }
    let corpus = totals.score();
    let per_image: Vec<_> = stats.iter().map(BleuStats::score).collect();
    let values = (0..MAX_N).map(|n| (corpus[n], per_image.iter().map(|s| s[n]).collect()));
    (Scored { qualifier: None, values: values.collect() }, totals)
}

/// BLEU-1..4 in [`crate::registry`]; it also notes BLEU's word counts in the report.
pub struct Bleu;

impl Metric for Bleu {
    fn names(&self) -> &'static [&'static str] {
        &["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"]
    }

    fn compute(&self, corpus: &Prepared, report: &mut Report) -> Result<Option<Scored>> {
        let (scored, totals) = bleu(&corpus.images);
        (report.hypothesis_words, report.reference_words) = (totals.test_len, totals.ref_len);
        Ok(Some(scored))
    }
}
