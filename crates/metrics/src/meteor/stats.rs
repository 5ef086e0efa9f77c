//! METEOR 1.5 sufficient statistics and the score computed from them.
//!
//! Reference: METEOR 1.5's `MeteorStats` / `MeteorScorer.computeMetrics` (<https://github.com/cmu-mtlab/meteor>).
//! The 23 numbers per segment are `tl rl tf rf`, then for each of the four modules (exact, stem, synonym,
//! paraphrase) `[test content, ref content, test function, ref function]` matches, then `chunks`,
//! `test word matches`, `ref word matches`. Corpus METEOR sums the statistics (skipping `chunks` of
//! segments that are perfect single-chunk matches) and scores the sum, so it is not the mean of the
//! per-image scores. Arithmetic follows the Java order of operations so results agree to the last bit
//! in practice.

/// Number of alignment modules (exact, stem, synonym, paraphrase).
pub const MODULES: usize = 4;

/// Parameters of METEOR 1.5 for English, task "rank" (the defaults of `-l en`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeteorParams {
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
    pub delta: f64,
    /// Weights of the exact, stem, synonym and paraphrase modules.
    pub weights: [f64; MODULES],
}

impl Default for MeteorParams {
    fn default() -> Self {
        MeteorParams {
            alpha: 0.85,
            beta: 0.20,
            gamma: 0.60,
            delta: 0.75,
            weights: [1.0, 0.6, 0.8, 0.6],
        }
    }
}

/// Matches of one module, in test/reference and content/function-word parts.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StageMatches {
    pub test_content: f64,
    pub ref_content: f64,
    pub test_function: f64,
    pub ref_function: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MeteorStats {
    pub test_len: f64,
    pub ref_len: f64,
    pub test_function_words: f64,
    pub ref_function_words: f64,
    pub stages: [StageMatches; MODULES],
    pub chunks: f64,
    pub test_word_matches: f64,
    pub ref_word_matches: f64,
}

impl MeteorStats {
    /// Parses the jar's space-separated 23 numbers.
    pub fn parse(line: &str) -> Option<MeteorStats> {
        let v: Vec<f64> = line.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
        if v.len() != 23 {
            return None;
        }
        let stages = std::array::from_fn(|i| StageMatches {
            test_content: v[4 + 4 * i],
            ref_content: v[5 + 4 * i],
            test_function: v[6 + 4 * i],
            ref_function: v[7 + 4 * i],
        });
        Some(MeteorStats {
            test_len: v[0],
            ref_len: v[1],
            test_function_words: v[2],
            ref_function_words: v[3],
            stages,
            chunks: v[20],
            test_word_matches: v[21],
            ref_word_matches: v[22],
        })
    }

    fn total_matches(&self) -> (f64, f64) {
        let mut t = 0.0;
        let mut r = 0.0;
        for s in &self.stages {
            t += s.test_content;
            r += s.ref_content;
            t += s.test_function;
            r += s.ref_function;
        }
        (t, r)
    }

    /// Every word of both sides matched, in one chunk: fragmentation is 0 and the aggregate skips `chunks`.
    fn is_perfect(&self) -> bool {
        let (t, r) = self.total_matches();
        t == self.test_len && r == self.ref_len && self.chunks == 1.0
    }

    /// `MeteorScorer.computeMetrics`.
    pub fn score(&self, p: &MeteorParams) -> f64 {
        let d = p.delta;
        let test_wlen = (d * (self.test_len - self.test_function_words))
            + ((1.0 - d) * self.test_function_words);
        let ref_wlen =
            (d * (self.ref_len - self.ref_function_words)) + ((1.0 - d) * self.ref_function_words);
        let mut test_wm = 0.0;
        let mut ref_wm = 0.0;
        for (s, w) in self.stages.iter().zip(p.weights) {
            test_wm += s.test_content * w * d;
        }
        for (s, w) in self.stages.iter().zip(p.weights) {
            ref_wm += s.ref_content * w * d;
        }
        for (s, w) in self.stages.iter().zip(p.weights) {
            test_wm += s.test_function * w * (1.0 - d);
        }
        for (s, w) in self.stages.iter().zip(p.weights) {
            ref_wm += s.ref_function * w * (1.0 - d);
        }
        let precision = test_wm / test_wlen;
        let recall = ref_wm / ref_wlen;
        let fmean = 1.0 / (((1.0 - p.alpha) / precision) + (p.alpha / recall));
        let frag = if self.is_perfect() {
            0.0
        } else {
            self.chunks / ((self.test_word_matches + self.ref_word_matches) / 2.0)
        };
        let penalty = p.gamma * frag.powf(p.beta);
        let score = fmean * (1.0 - penalty);
        if score.is_nan() {
            0.0
        } else {
            score.max(0.0)
        }
    }

    /// `MeteorStats.addStats`.
    pub fn add(&mut self, o: &MeteorStats) {
        self.test_len += o.test_len;
        self.ref_len += o.ref_len;
        self.test_function_words += o.test_function_words;
        self.ref_function_words += o.ref_function_words;
        for (a, b) in self.stages.iter_mut().zip(&o.stages) {
            a.test_content += b.test_content;
            a.ref_content += b.ref_content;
            a.test_function += b.test_function;
            a.ref_function += b.ref_function;
        }
        if !o.is_perfect() {
            self.chunks += o.chunks;
        }
        self.test_word_matches += o.test_word_matches;
        self.ref_word_matches += o.ref_word_matches;
    }

    /// Sum of the statistics of a corpus, as the jar's `EVAL` aggregates them.
    pub fn aggregate<'a>(all: impl IntoIterator<Item = &'a MeteorStats>) -> MeteorStats {
        let mut total = MeteorStats::default();
        for s in all {
            total.add(s);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_match_scores_one_and_is_skipped_in_chunks() {
        // The jar's stats for "a bare land" against itself.
        let s = MeteorStats::parse("3.0 3.0 1.0 1.0 2.0 2.0 1.0 1.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 1.0 3.0 3.0")
            .unwrap();
        assert_eq!(s.score(&MeteorParams::default()), 1.0);
        let agg = MeteorStats::aggregate([&s, &s]);
        assert_eq!(agg.chunks, 0.0);
        assert_eq!(agg.score(&MeteorParams::default()), 1.0);
    }

    #[test]
    fn empty_hypothesis_scores_zero_not_nan() {
        let s = MeteorStats::parse("0.0 3.0 0.0 1.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0")
            .unwrap();
        assert_eq!(s.score(&MeteorParams::default()), 0.0);
        assert!(MeteorStats::parse("1 2 3").is_none());
    }
}
