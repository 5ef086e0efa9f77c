//! METEOR 1.5's aligner (`edu.cmu.meteor.aligner.Aligner`) for the exact, stem and synonym modules: every
//! candidate word match, a fixed start for unambiguous matches, then a beam search (beam 40) that ranks
//! partial alignments by weighted matches, then fewer chunks, then less distance.
//!
//! Reproduced as the jar behaves, including: words compare by Java `String.hashCode`; the ranking
//! weights (1 for exact, 0.5 otherwise) are added to *integer* counters, so Java's compound assignment
//! truncates and a single stem or synonym match adds nothing; the distance of a match is charged to the
//! partial alignment it extends from rather than to the new one; sorting is stable.

use super::stats::{MeteorStats, StageMatches, MODULES};

pub const BEAM: usize = 40;

/// Module indices, in METEOR's order.
pub const EXACT: usize = 0;
pub const STEM: usize = 1;
pub const SYNONYM: usize = 2;

/// Ranking weight of each module inside the aligner (`MeteorScorer.loadConfiguration`).
const RANK_WEIGHT: [f64; MODULES] = [1.0, 0.5, 0.5, 0.5];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Match {
    /// Position in the reference (line 2).
    start: usize,
    /// Position in the hypothesis (line 1).
    match_start: usize,
    module: usize,
}

#[derive(Debug, Clone)]
struct Partial {
    matches: Vec<Option<Match>>,
    matches1: i32,
    matches2: i32,
    chunks: i32,
    idx: usize,
    last_match_end: Option<usize>,
    distance: i32,
    used1: Vec<bool>,
    used2: Vec<bool>,
}

impl Partial {
    fn is_used(&self, m: &Match) -> bool {
        self.used2[m.start] || self.used1[m.match_start]
    }

    /// Adds `m` as the next match: counters, chunks, position.
    fn take(&mut self, m: &Match) {
        let w = RANK_WEIGHT[m.module];
        // Java `int += double`: the sum is truncated back to an int.
        self.matches1 = (f64::from(self.matches1) + w) as i32;
        self.matches2 = (f64::from(self.matches2) + w) as i32;
        if self.last_match_end.is_some_and(|e| m.match_start != e) {
            self.chunks += 1;
        }
        self.idx = m.start + 1;
        self.last_match_end = Some(m.match_start + 1);
    }
}

/// `Constants.PARTIAL_COMPARE_TOTAL`: more weighted matches, then fewer chunks, then less distance.
fn compare(x: &Partial, y: &Partial) -> std::cmp::Ordering {
    (y.matches1 + y.matches2)
        .cmp(&(x.matches1 + x.matches2))
        .then(x.chunks.cmp(&y.chunks))
        .then(x.distance.cmp(&y.distance))
}

/// Java's `String.hashCode` (over UTF-16 code units), which the aligner uses as word identity.
pub fn java_hash(s: &str) -> i32 {
    let mut h: i32 = 0;
    for u in s.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(u));
    }
    h
}

/// What the aligner needs to know about a word.
pub struct WordInfo<'a> {
    pub hash: i32,
    pub stem_hash: Option<i32>,
    pub synsets: Option<&'a std::collections::HashSet<i32>>,
    pub function: bool,
}

/// Aligns a hypothesis (line 1) to a reference (line 2) and returns METEOR's statistics for the pair.
/// `modules` is the number of modules in use (1 = exact, 2 = + stem, 3 = + synonym).
pub fn align(test: &[WordInfo], reference: &[WordInfo], modules: usize) -> MeteorStats {
    let (n1, n2) = (test.len(), reference.len());
    let mut cands: Vec<Vec<Match>> = vec![Vec::new(); n2];
    let mut cov1 = vec![0u32; n1];
    let mut cov2 = vec![0u32; n2];
    let identical = n1 == n2 && test.iter().zip(reference).all(|(a, b)| a.hash == b.hash);
    let used_modules = if identical { 1 } else { modules };
    for module in 0..used_modules {
        for (j, r) in reference.iter().enumerate() {
            for (i, t) in test.iter().enumerate() {
                let hit = match module {
                    EXACT => t.hash == r.hash,
                    STEM => t.hash != r.hash && t.stem_hash.is_some() && t.stem_hash == r.stem_hash,
                    SYNONYM => {
                        t.hash != r.hash
                            && match (t.synsets, r.synsets) {
                                (Some(a), Some(b)) => a.iter().any(|s| b.contains(s)),
                                _ => false,
                            }
                    }
                    _ => false,
                };
                if hit {
                    cands[j].push(Match { start: j, match_start: i, module });
                    cov1[i] += 1;
                    cov2[j] += 1;
                }
            }
        }
    }
    // Unambiguous matches are fixed from the start.
    let mut initial = Partial {
        matches: vec![None; n2],
        matches1: 0,
        matches2: 0,
        chunks: 0,
        idx: 0,
        last_match_end: None,
        distance: 0,
        used1: vec![false; n1],
        used2: vec![false; n2],
    };
    for (j, c) in cands.iter().enumerate() {
        if let [m] = c.as_slice() {
            if cov2[j] == 1 && cov1[m.match_start] == 1 {
                initial.matches[j] = Some(*m);
                initial.used2[j] = true;
                initial.used1[m.match_start] = true;
            }
        }
    }
    let best = resolve(&cands, initial);

    let mut stats = MeteorStats {
        test_len: n1 as f64,
        ref_len: n2 as f64,
        test_function_words: test.iter().filter(|w| w.function).count() as f64,
        ref_function_words: reference.iter().filter(|w| w.function).count() as f64,
        ..MeteorStats::default()
    };
    let mut stages = [StageMatches::default(); MODULES];
    for m in best.matches.iter().flatten() {
        let s = &mut stages[m.module];
        if test[m.match_start].function {
            s.test_function += 1.0;
        } else {
            s.test_content += 1.0;
        }
        if reference[m.start].function {
            s.ref_function += 1.0;
        } else {
            s.ref_content += 1.0;
        }
    }
    stats.stages = stages;
    let (m1, m2, chunks) = count_and_chunks(&best.matches);
    stats.chunks = chunks as f64;
    stats.test_word_matches = m1 as f64;
    stats.ref_word_matches = m2 as f64;
    stats
}

// `current` runs one past the last reference word (the final step closes chunks), so it is an index.
#[allow(clippy::needless_range_loop)]
fn resolve(cands: &[Vec<Match>], start: Partial) -> Partial {
    let n2 = cands.len();
    let mut next: Vec<Partial> = vec![start];
    for current in 0..=n2 {
        let mut paths = std::mem::take(&mut next);
        paths.sort_by(compare);
        let fallback = paths[0].clone();
        for mut path in paths.into_iter().take(BEAM) {
            if current == n2 {
                if path.last_match_end.is_some() {
                    path.chunks += 1;
                }
                next.push(path);
                continue;
            }
            if path.used2[current] {
                if current < path.idx {
                    next.push(path);
                } else if let Some(m) = path.matches[path.idx] {
                    path.take(&m);
                    path.distance += (m.start as i32 - m.match_start as i32).abs();
                    next.push(path);
                }
                continue;
            }
            for m in &cands[current] {
                if path.is_used(m) {
                    continue;
                }
                let mut new_path = path.clone();
                new_path.used2[m.start] = true;
                new_path.used1[m.match_start] = true;
                new_path.matches[current] = Some(*m);
                new_path.take(m);
                // The jar adds the distance to the path being extended, not to the new one.
                path.distance += (m.start as i32 - m.match_start as i32).abs();
                next.push(new_path);
            }
            if path.last_match_end.is_some() {
                path.chunks += 1;
                path.last_match_end = None;
            }
            path.idx += 1;
            next.push(path);
        }
        if next.is_empty() {
            next.push(fallback);
        }
    }
    next.sort_by(compare);
    next.swap_remove(0)
}

/// Matched words on each side and the number of chunks (runs of matches contiguous on both sides).
fn count_and_chunks(matches: &[Option<Match>]) -> (usize, usize, usize) {
    let (mut m1, mut m2, mut chunks) = (0, 0, 0);
    let mut idx = 0;
    let mut last_end: Option<usize> = None;
    while idx < matches.len() {
        match matches[idx] {
            None => {
                if last_end.is_some() {
                    chunks += 1;
                    last_end = None;
                }
                idx += 1;
            }
            Some(m) => {
                m1 += 1;
                m2 += 1;
                if last_end.is_some_and(|e| m.match_start != e) {
                    chunks += 1;
                }
                idx = m.start + 1;
                last_end = Some(m.match_start + 1);
            }
        }
    }
    if last_end.is_some() {
        chunks += 1;
    }
    (m1, m2, chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_string_hash() {
        assert_eq!(java_hash(""), 0);
        assert_eq!(java_hash("a"), 97);
        assert_eq!(java_hash("hello"), 99162322);
        // Java's well-known collision.
        assert_eq!(java_hash("Aa"), java_hash("BB"));
    }
}
