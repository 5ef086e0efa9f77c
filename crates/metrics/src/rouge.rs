//! ROUGE-L as pycocoevalcap's `Rouge` computes it (`rouge/rouge.py`; Lin, "ROUGE: A Package for Automatic
//! Evaluation of Summaries", 2004).
//!
//! Tokens come from `split(" ")`; the best precision and the best recall are taken independently over the
//! references; F uses beta = 1.2; the corpus score is the numpy mean of the per-image scores.

use rayon::prelude::*;

use crate::corpus::{EncodedImage, Prepared};
use crate::mean::numpy_mean;
use crate::{Metric, Report, Result, Scored};

const BETA: f64 = 1.2;

/// Length of the longest common subsequence.
pub fn lcs_len(a: &[u32], b: &[u32]) -> usize {
    let (long, short) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    let mut row = vec![0usize; short.len() + 1];
    for &x in long {
        let mut diag = 0;
        for (j, &y) in short.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = if x == y { diag + 1 } else { up.max(row[j]) };
            diag = up;
        }
    }
    row[short.len()]
}

/// ROUGE-L of one hypothesis against its references (token ids from `split(" ")`).
pub fn rouge_l(hyp: &[u32], refs: &[&[u32]]) -> f64 {
    let mut p_max = f64::NEG_INFINITY;
    let mut r_max = f64::NEG_INFINITY;
    for r in refs {
        let lcs = lcs_len(r, hyp) as f64;
        p_max = p_max.max(lcs / hyp.len() as f64);
        r_max = r_max.max(lcs / r.len() as f64);
    }
    let b2 = BETA.powi(2);
    if p_max != 0.0 && r_max != 0.0 {
        ((1.0 + b2) * p_max * r_max) / (r_max + b2 * p_max)
    } else {
        0.0
    }
}

/// Per-image ROUGE-L and their numpy mean.
pub fn rouge(images: &[EncodedImage]) -> Scored {
    let per_image: Vec<f64> = images
        .par_iter()
        .map(|img| {
            let refs: Vec<&[u32]> = img.refs.iter().map(|r| r.rouge_tokens.as_slice()).collect();
            rouge_l(&img.hyp.rouge_tokens, &refs)
        })
        .collect();
    Scored { qualifier: None, values: vec![(numpy_mean(&per_image), per_image)] }
}

/// ROUGE-L in [`crate::registry`].
pub struct RougeL;

impl Metric for RougeL {
    fn names(&self) -> &'static [&'static str] {
        &["ROUGE_L"]
    }

    fn compute(&self, corpus: &Prepared, _: &mut Report) -> Result<Option<Scored>> {
        Ok(Some(rouge(&corpus.images)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcs_by_hand() {
        assert_eq!(lcs_len(&[1, 2, 3, 4], &[2, 4]), 2);
        assert_eq!(lcs_len(&[1, 2, 3], &[3, 2, 1]), 1);
        assert_eq!(lcs_len(&[], &[1]), 0);
    }

    #[test]
    fn best_precision_and_recall_are_taken_separately() {
        // hyp a b; ref1 = a b c d e f (P 1, R 1/3); ref2 = a (P 1/2, R 1). Best P 1, best R 1 -> F = 1,
        // although no single reference gives F = 1.
        let f = rouge_l(&[0, 1], &[&[0, 1, 2, 3, 4, 5], &[0]]);
        assert!((f - 1.0).abs() < 1e-15);
    }
}
