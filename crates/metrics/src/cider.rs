//! CIDEr-D as pycocoevalcap's `Cider` computes it (`cider/cider_scorer.py`; Vedantam et al., "CIDEr:
//! Consensus-based Image Description Evaluation", CVPR 2015).
//!
//! Document frequency counts, over the evaluated images, how many images' reference sets contain each n-gram;
//! weights are `tf * (ln N - ln max(1, df))`; the similarity clips the hypothesis weight at the reference
//! weight, divides by both norms when neither is zero, and applies a Gaussian length penalty (sigma 6) on the
//! difference of *bigram* counts; an image's score is `10 * mean over n of (sum over references) /
//! #references`, duplicates included; the corpus score is the numpy mean over images. A corpus of one image
//! scores 0 (ln 1 = 0), as in the reference.
//!
//! The standard metric takes its document frequencies from the evaluated references. For a small
//! evaluation set that is a poor estimate, so [`DocumentFrequency::from_references`] can supply them from
//! another corpus (typically the training references); that value is *not* comparable with published
//! CIDEr and is labelled as such in every report.

use rayon::prelude::*;

use crate::corpus::{EncodedImage, Prepared};
use crate::mean::{numpy_mean, pairwise_sum};
use crate::ngram::{FastMap, NgramCounts, NgramKey, Vocab, MAX_N};
use crate::text::split_whitespace;
use crate::{Metric, Report, Result, Scored};

const SIGMA: f64 = 6.0;

/// Document frequencies of n-grams over a set of images' references, with the number of images.
#[derive(Debug, Clone, Default)]
pub struct DocumentFrequency {
    by_word: FastMap<Vec<String>, u32>,
    images: usize,
}

impl DocumentFrequency {
    /// Counts, for every 1..4-gram, the number of images whose references contain it (duplicates in one
    /// image count once). Captions must already be tokenized the way the evaluation tokenizes them (use
    /// [`crate::ptb::tokenize_caption`] on raw captions).
    pub fn from_references<'a, I, R>(images: I) -> Self
    where
        I: IntoIterator<Item = R>,
        R: IntoIterator<Item = &'a str>,
    {
        let mut by_word: FastMap<Vec<String>, u32> = FastMap::default();
        let mut count = 0;
        for refs in images {
            count += 1;
            let mut seen: std::collections::HashSet<Vec<&str>> = Default::default();
            for r in refs {
                let words: Vec<&str> = split_whitespace(r).collect();
                for n in 1..=MAX_N {
                    for w in words.windows(n) {
                        seen.insert(w.to_vec());
                    }
                }
            }
            for g in seen {
                *by_word.entry(g.into_iter().map(str::to_owned).collect()).or_insert(0) += 1;
            }
        }
        DocumentFrequency { by_word, images: count }
    }

    /// Number of images the frequencies were counted over.
    pub fn images(&self) -> usize {
        self.images
    }

    /// Re-keys the frequencies by this corpus' word ids; n-grams with a word the corpus never uses cannot
    /// match anything and are skipped.
    fn encode(&self, vocab: &Vocab) -> FastMap<NgramKey, f64> {
        let mut out = FastMap::default();
        'grams: for (g, &df) in &self.by_word {
            let mut ids = Vec::with_capacity(g.len());
            for w in g {
                match vocab.get(w) {
                    Some(id) => ids.push(id),
                    None => continue 'grams,
                }
            }
            out.insert(crate::ngram::key(&ids), f64::from(df));
        }
        out
    }
}

/// Where CIDEr-D's document frequencies come from.
#[derive(Debug, Clone, Default)]
pub enum DfSource {
    /// The references of the evaluated images (the standard metric).
    #[default]
    Corpus,
    /// Another corpus' references (non-standard; labelled in reports).
    External(std::sync::Arc<DocumentFrequency>),
}

/// A sentence's tf-idf vectors (per order, first-occurrence order), their norms and its bigram count.
struct Vector {
    weights: [Vec<(NgramKey, f64)>; MAX_N],
    norm: [f64; MAX_N],
    length: f64,
}

impl Vector {
    fn new(counts: &NgramCounts, df: &FastMap<NgramKey, f64>, log_n: f64) -> Self {
        let mut norm = [0.0; MAX_N];
        let mut length = 0u32;
        let weights = std::array::from_fn(|n| {
            let list = &counts.by_order[n];
            let mut sq = 0.0;
            let v: Vec<(NgramKey, f64)> = list
                .iter()
                .map(|&(k, tf)| {
                    let d = df.get(&k).copied().unwrap_or(0.0).max(1.0).ln();
                    let w = f64::from(tf) * (log_n - d);
                    sq += w.powi(2);
                    (k, w)
                })
                .collect();
            norm[n] = sq;
            if n == 1 {
                length += list.iter().map(|&(_, tf)| tf).sum::<u32>();
            }
            v
        });
        for x in &mut norm {
            *x = x.sqrt();
        }
        Vector { weights, norm, length: f64::from(length) }
    }

    fn weight(&self, n: usize, k: NgramKey) -> f64 {
        // Sentences are short (tens of n-grams), so a scan beats hashing.
        self.weights[n].iter().find(|&&(g, _)| g == k).map(|&(_, w)| w).unwrap_or(0.0)
    }
}

fn sim(hyp: &Vector, r: &Vector) -> [f64; MAX_N] {
    let delta = hyp.length - r.length;
    // `np.e ** x` is a `pow`, not an `exp`; keep it so for identical rounding.
    let penalty = std::f64::consts::E.powf(-(delta.powi(2)) / (2.0 * SIGMA.powi(2)));
    std::array::from_fn(|n| {
        let mut val = 0.0;
        for &(k, wh) in &hyp.weights[n] {
            let wr = r.weight(n, k);
            val += wh.min(wr) * wr;
        }
        if hyp.norm[n] != 0.0 && r.norm[n] != 0.0 {
            val /= hyp.norm[n] * r.norm[n];
        }
        val * penalty
    })
}

/// Per-image CIDEr-D and their numpy mean, qualified "(external df)" with external document frequencies.
pub fn cider(images: &[EncodedImage], vocab: &Vocab, source: &DfSource) -> Scored {
    let counts: Vec<(NgramCounts, Vec<NgramCounts>)> = images
        .par_iter()
        .map(|img| {
            (
                NgramCounts::new(&img.hyp.words),
                img.refs.iter().map(|r| NgramCounts::new(&r.words)).collect(),
            )
        })
        .collect();
    let (df, n_images) = match source {
        DfSource::Corpus => {
            let mut df: FastMap<NgramKey, f64> = FastMap::default();
            let mut seen: FastMap<NgramKey, ()> = FastMap::default();
            for (_, refs) in &counts {
                seen.clear();
                for r in refs {
                    for (k, _) in r.iter() {
                        seen.insert(k, ());
                    }
                }
                for &k in seen.keys() {
                    *df.entry(k).or_insert(0.0) += 1.0;
                }
            }
            (df, images.len())
        }
        DfSource::External(ext) => (ext.encode(vocab), ext.images()),
    };
    let log_n = (n_images as f64).ln();
    let per_image: Vec<f64> = counts
        .par_iter()
        .map(|(hyp, refs)| {
            let h = Vector::new(hyp, &df, log_n);
            let mut score = [0.0f64; MAX_N];
            for r in refs {
                let s = sim(&h, &Vector::new(r, &df, log_n));
                for n in 0..MAX_N {
                    score[n] += s[n];
                }
            }
            let mut avg = pairwise_sum(&score) / MAX_N as f64;
            avg /= refs.len() as f64;
            avg * 10.0
        })
        .collect();
    let qualifier = matches!(source, DfSource::External(_)).then_some("(external df)");
    Scored { qualifier, values: vec![(numpy_mean(&per_image), per_image)] }
}

/// CIDEr-D in [`crate::registry`], with document frequencies from this source.
pub struct CiderD(pub DfSource);

impl Metric for CiderD {
    fn names(&self) -> &'static [&'static str] {
        &["CIDEr"]
    }

    fn compute(&self, corpus: &Prepared, _: &mut Report) -> Result<Option<Scored>> {
        Ok(Some(cider(&corpus.images, &corpus.vocab, &self.0)))
    }
}
