//! Picking tokens from a decoding step's scores on CPU: the greedy argmax and beam search's candidates, each one pass
//! over the rows at the speed of reading them, on the threads of `smallmm::pool` (awake between a step's loops).
//!
//! Issue 14 (docs/benchmarks.md): libtorch runs `argmax` and `topk` over a step's `[rows, 257,216]` f32 scores on its
//! one decoding thread (`generate`'s `OneThread`), and its `topk` sorts candidates: 1.2-1.5 ms per beam-3 step at
//! batch 1, about a tenth of the step. A scan that keeps the few best values needs one read. Beam search also turned
//! the logits into log-probabilities first (log-softmax, the running scores added): [`beam_candidates`] does it all
//! in that one read, computing log-probabilities for its few candidates only.
//!
//! The functions give libtorch's answer or none: [`argmax_rows`] returns the first index of the largest value, as
//! `torch.argmax` documents; [`top_k_rows`] and [`beam_candidates`] answer only when the answer is unique, i.e. the
//! k values and the (k+1)-th are all different, so that no tie-break (which `torch.topk` leaves unspecified) can
//! order them otherwise. They leave NaN, other dtypes, devices and layouts to libtorch (`None`), and the callers fall
//! back to it, so a generation picks the same ids either way: the tests below compare the answers with libtorch's on
//! random rows, ties and NaN, and the HF parity tests' greedy and beam ids go through them. `PGRS_SMALLMM=0` turns
//! them off with the products.
use smallmm::math::exp;
use tch::{Device, Kind, Tensor};

/// Values read per chunk: a chunk none of whose values can enter the result is skipped with one vectorisable test.
const CHUNK: usize = 64;

/// Rows shorter than this are scanned on the calling thread (starting a parallel loop costs a few µs, and tens when
/// the helpers have gone to sleep).
const PARALLEL_FROM: usize = 1 << 16;

/// The row-major f32 values of a contiguous CPU tensor `[rows, n]`, or `None` where libtorch should do the work.
fn rows_of(t: &Tensor) -> Option<(&[f32], usize, usize)> {
    let (rows, n) = t.size2().ok()?;
    let usable = t.device() == Device::Cpu
        && t.kind() == Kind::Float
        && t.is_contiguous()
        && !t.requires_grad()
        && rows > 0
        && n > 0
        && smallmm::enabled();
    if !usable {
        return None;
    }
    let (rows, n) = (rows as usize, n as usize);
    // SAFETY: a contiguous f32 CPU tensor of rows × n elements, borrowed for as long as `t`.
    let values = unsafe { std::slice::from_raw_parts(t.data_ptr() as *const f32, rows * n) };
    Some((values, rows, n))
}

/// The index of each row's largest value (the first one among equals), as `t.argmax(-1)` gives it, for `t [rows, n]`
/// f32; `None` when libtorch should answer (not a contiguous f32 CPU tensor, a NaN in some row, `PGRS_SMALLMM=0`).
pub fn argmax_rows(t: &Tensor) -> Option<Vec<i64>> {
    let (values, rows, n) = rows_of(t)?;
    if rows > 1 && values.len() >= PARALLEL_FROM {
        // Whole rows spread over the threads in one parallel call. Row after row, each split in two, took 8
        // parallel calls for a greedy step at batch 8: 295-299 against 92-106 µs (docs/benchmarks.md, issue 14).
        let row = |r: usize| argmax_from(&values[r * n..(r + 1) * n], 0).map(|i| i as i64);
        return smallmm::pool::map(rows, row).into_iter().collect();
    }
    values.chunks(n).map(|row| argmax(row).map(|i| i as i64)).collect()
}

/// First index of the maximum of a non-empty row, `None` if it holds a NaN (libtorch counts NaN as the maximum).
fn argmax(row: &[f32]) -> Option<usize> {
    if row.len() < PARALLEL_FROM {
        return argmax_from(row, 0);
    }
    let half = row.len() / 2;
    let parts = smallmm::pool::map(2, |p| match p {
        0 => argmax_from(&row[..half], 0),
        _ => argmax_from(&row[half..], half),
    });
    let (a, b) = (parts[0]?, parts[1]?);
    // The left half's index is the smaller: it wins unless the right half's value is larger.
    Some(if row[b] > row[a] { b } else { a })
}

/// [`argmax`] on one thread, indices offset by `offset`.
fn argmax_from(row: &[f32], offset: usize) -> Option<usize> {
    let (mut best, mut at) = (row[0], 0);
    if best.is_nan() {
        return None;
    }
    for (c, chunk) in row.chunks(CHUNK).enumerate() {
        // `!(x <= best)` is also true for NaN, so a NaN always reaches the scalar loop.
        if chunk.iter().fold(true, |all, &x| all & (x <= best)) {
            continue;
        }
        for (i, &x) in chunk.iter().enumerate() {
            if x.is_nan() {
                return None;
            }
            if x > best {
                (best, at) = (x, c * CHUNK + i);
            }
        }
    }
    Some(offset + at)
}

/// Each row's `k` largest values, in descending order, and their indices, as `t.topk(k, 1, true, true)` gives them for
/// `t [rows, n]` f32 with `k < n`; `None` when libtorch should answer: a tie among the k + 1 largest values of a row
/// (libtorch's order among equal values is unspecified), a NaN, `k ≥ n`, or a tensor [`argmax_rows`] refuses.
pub fn top_k_rows(t: &Tensor, k: usize) -> Option<(Tensor, Tensor)> {
    let (values, rows, n) = rows_of(t)?;
    if k == 0 || k >= n {
        return None;
    }
    let mut vals = Vec::with_capacity(rows * k);
    let mut idx = Vec::with_capacity(rows * k);
    for row in values.chunks(n) {
        let best = top_k(row, k)?;
        vals.extend(best.iter().map(|&(v, _)| v));
        idx.extend(best.iter().map(|&(_, i)| i as i64));
    }
    let shape = [rows as i64, k as i64];
    Some((Tensor::from_slice(&vals).view(shape), Tensor::from_slice(&idx).view(shape)))
}

/// The `k` best (value, index) of a row, descending, if they and the (k+1)-th are all different and no value is NaN.
fn top_k(row: &[f32], k: usize) -> Option<Vec<(f32, usize)>> {
    let best = if row.len() < PARALLEL_FROM {
        Best::scan(row, 0, k + 1)?
    } else {
        let half = row.len().div_ceil(2);
        let parts = smallmm::pool::map(2, |p| {
            Best::scan(&row[p * half..row.len().min((p + 1) * half)], p * half, k + 1)
        });
        let mut all = Best::new(k + 1);
        for part in parts {
            part?.found.into_iter().for_each(|(v, i)| all.offer(v, i));
        }
        all
    };
    // Unique when the k values and the (k+1)-th strictly decrease: a value equal to the (k+1)-th changes nothing.
    let found = best.found;
    let distinct = found.windows(2).all(|w| w[0].0 > w[1].0);
    (found.len() == k + 1 && distinct).then(|| found[..k].to_vec())
}

/// Beam search's candidates for one step, as `generate` computed them with libtorch: `lp = log_softmax(logits) +
/// scores` viewed `[B, K·V]`, then `lp.topk(keep)` (values descending, flat indices `beam · V + token`), for
/// `logits [B·K, V]` f32 and the running beams' `scores [B, K]` f32. One read of the logits instead of five passes
/// over `[B·K, V]` (log-softmax's max, sum and write, the score's add, the top-k's read): per row its `keep + 1`
/// largest logits, its maximum and `Σ exp(x - max)`, in pieces of [`PIECE`] values on the pool's threads.
///
/// Exact in what it picks: within a row, `(x - max - ln Σ) + score` never decreases as `x` grows, so the `keep + 1`
/// largest logits of each row hold every candidate that can enter the top `keep + 1` of its batch row (a row that
/// gave all `keep + 1` could not fit them in the top `keep`); the answer stands when those top `keep + 1` values are
/// all different, as [`top_k_rows`] asks, and is `None` otherwise (and where [`top_k_rows`] is), for libtorch to
/// decide. The values are libtorch's formula with `Σ` summed in f64 (libtorch sums in f32 lanes), so they differ from
/// its by rounding (the tests bound it); each row's result depends on that row alone, so batched equals one by one.
pub fn beam_candidates(logits: &Tensor, scores: &Tensor, keep: usize) -> Option<(Tensor, Tensor)> {
    let (values, rows, v) = rows_of(logits)?;
    let (b, k) = scores.size2().ok()?;
    let (b, k) = (b as usize, k as usize);
    if scores.kind() != Kind::Float || b * k != rows || keep == 0 || keep + 1 > v {
        return None;
    }
    let scores = Vec::<f32>::try_from(scores.reshape([-1])).ok()?;
    let pieces_per_row = v.div_ceil(PIECE);
    let stats = |p: usize| {
        let (r, i) = (p / pieces_per_row, p % pieces_per_row * PIECE);
        piece_stats(&values[r * v..][i..v.min(i + PIECE)], i, keep + 1)
    };
    let pieces: Vec<Option<Piece>> = if values.len() < PARALLEL_FROM {
        (0..rows * pieces_per_row).map(stats).collect()
    } else {
        smallmm::pool::map(rows * pieces_per_row, stats)
    };
    let mut vals = Vec::with_capacity(b * keep);
    let mut idx = Vec::with_capacity(b * keep);
    for (batch_row, beams) in pieces.chunks(k * pieces_per_row).enumerate() {
        let mut all = Vec::with_capacity(k * (keep + 1));
        for (beam, row) in beams.chunks(pieces_per_row).enumerate() {
            let score = scores[batch_row * k + beam];
            let candidates = row_candidates(row, keep + 1)?;
            all.extend(candidates.into_iter().map(|(lp, i)| (lp + score, beam * v + i)));
        }
        // Stable: equal values keep their order, and equal values in the top keep + 1 are refused just below.
        all.sort_by(|x, y| y.0.total_cmp(&x.0));
        let top = &all[..keep + 1];
        if top.iter().any(|c| c.0.is_nan()) || top.windows(2).any(|w| w[0].0 <= w[1].0) {
            return None;
        }
        vals.extend(top[..keep].iter().map(|c| c.0));
        idx.extend(top[..keep].iter().map(|c| c.1 as i64));
    }
    let shape = [b as i64, keep as i64];
    Some((Tensor::from_slice(&vals).view(shape), Tensor::from_slice(&idx).view(shape)))
}

/// Values per piece of a row in [`beam_candidates`]: a piece's two reads (its best values, then its exponentials)
/// find it in L2, and a row of 257,216 logits gives 8 pieces to share among threads.
const PIECE: usize = 1 << 15;

/// What [`beam_candidates`] needs of one piece of a row.
struct Piece {
    /// Its `keep` largest values (by logit, the first among equals first), indices within the row.
    best: Best,
    /// `Σ exp(x - best.found[0])`, in f64.
    sum: f64,
}

/// One row's `keep` largest log-probabilities `x - max - ln Σ exp(x - max)` (descending) with their indices, from its
/// pieces; `None` when the row's maximum is not finite.
fn row_candidates(pieces: &[Option<Piece>], keep: usize) -> Option<Vec<(f32, usize)>> {
    let pieces: Vec<&Piece> = pieces.iter().map(Option::as_ref).collect::<Option<_>>()?;
    let max = pieces.iter().map(|p| p.best.found[0].0).fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return None;
    }
    let mut sum = 0.0f64;
    let mut best = Best::new(keep);
    for p in &pieces {
        let piece_max = p.best.found[0].0;
        if piece_max > f32::NEG_INFINITY {
            sum += p.sum * (f64::from(piece_max) - f64::from(max)).exp();
        }
        p.best.found.iter().for_each(|&(x, i)| best.offer(x, i));
    }
    let log_sum = sum.ln() as f32;
    Some(best.found.into_iter().map(|(x, i)| (x - max - log_sum, i)).collect())
}

smallmm::widest_vectors!(
    /// [`Piece`] of `part` (indices offset by `offset`), `None` on a NaN; vectorised for this CPU.
    fn piece_stats(part: &[f32], offset: usize, keep: usize) -> Option<Piece> = piece_stats_loop
);

/// The code every backend compiles: the scan for the best values, then the sum of exponentials in 16 f32 lanes over
/// blocks of 1,024 values, the blocks' sums added in f64 (f32 lanes over a whole row would lose about 1e-6).
#[inline(always)]
fn piece_stats_loop(part: &[f32], offset: usize, keep: usize) -> Option<Piece> {
    let best = Best::scan(part, offset, keep)?;
    let max = best.found[0].0;
    let mut sum = 0.0f64;
    for xs in part.chunks(1024) {
        let mut acc = [0.0f32; 16];
        let lanes = xs.chunks_exact(16);
        let tail = lanes.remainder().iter().fold(0.0, |a, &x| a + exp(x - max));
        for c in lanes {
            for i in 0..16 {
                acc[i] += exp(c[i] - max);
            }
        }
        sum += f64::from(acc.iter().fold(tail, |a, &x| a + x));
    }
    Some(Piece { best, sum })
}

/// The `keep` largest values seen so far, descending (equal values in the order offered).
struct Best {
    keep: usize,
    found: Vec<(f32, usize)>,
}

impl Best {
    fn new(keep: usize) -> Best {
        Best { keep, found: Vec::with_capacity(keep + 1) }
    }

    /// Below this, nothing enters.
    fn floor(&self) -> f32 {
        if self.found.len() < self.keep {
            f32::NEG_INFINITY
        } else {
            self.found[self.keep - 1].0
        }
    }

    /// Takes a (non-NaN) value if it is among the `keep` largest.
    fn offer(&mut self, v: f32, i: usize) {
        if self.found.len() == self.keep && v <= self.floor() {
            return;
        }
        let at = self.found.partition_point(|&(u, _)| u >= v);
        self.found.insert(at, (v, i));
        self.found.truncate(self.keep);
    }

    /// The `keep` largest of `part` (indices offset by `offset`), `None` on a NaN. Values equal to the floor are
    /// taken too while the buffer is not full; once full, an equal value cannot change which values are largest,
    /// only reveal a tie, which `top_k` detects from the k + 1 values it keeps (the (k+1)-th equal to the k-th).
    #[inline(always)]
    fn scan(part: &[f32], offset: usize, keep: usize) -> Option<Best> {
        let mut best = Best::new(keep);
        for (c, chunk) in part.chunks(CHUNK).enumerate() {
            let floor = best.floor();
            if best.found.len() == keep && chunk.iter().fold(true, |all, &x| all & (x < floor)) {
                continue;
            }
            for (i, &x) in chunk.iter().enumerate() {
                if x.is_nan() {
                    return None;
                }
                best.offer(x, offset + c * CHUNK + i);
            }
        }
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(rows: i64, n: i64, seed: i64) -> Tensor {
        tch::manual_seed(seed);
        Tensor::randn([rows, n], (Kind::Float, Device::Cpu))
    }

    #[test]
    fn argmax_equals_libtorch_on_both_paths() {
        for (rows, n) in [(1, 7), (3, 1000), (8, PARALLEL_FROM as i64 * 4 + 13), (2, 257_216)] {
            let t = random(rows, n, n);
            let want = Vec::<i64>::try_from(t.argmax(-1, false)).unwrap();
            assert_eq!(argmax_rows(&t).unwrap(), want, "{rows} x {n}");
        }
    }

    #[test]
    fn argmax_takes_the_first_of_equal_maxima_and_leaves_nan_to_libtorch() {
        let n = PARALLEL_FROM * 2 + 5;
        let mut v = vec![0.0f32; n];
        for i in [3, n / 2 + 1, n - 1] {
            v[i] = 2.0; // one in each half, the first in the left
        }
        let t = Tensor::from_slice(&v).view([1, n as i64]);
        assert_eq!(argmax_rows(&t).unwrap(), vec![3]);
        assert_eq!(Vec::<i64>::try_from(t.argmax(-1, false)).unwrap(), vec![3]);
        // Only in the right half, twice: the first of those.
        v[3] = 0.0;
        let t = Tensor::from_slice(&v).view([1, n as i64]);
        assert_eq!(argmax_rows(&t).unwrap(), vec![n as i64 / 2 + 1]);
        v[10] = f32::NAN;
        assert!(argmax_rows(&Tensor::from_slice(&v).view([1, n as i64])).is_none());
        // Several rows, each whole on one thread: equal maxima in each, then a NaN in one row.
        let mut rows = vec![0.0f32; 3 * n];
        for (r, at) in [(0, [5, n - 2]), (1, [n / 2 + 1, n / 2 + 2]), (2, [0, 1])] {
            at.iter().for_each(|&i| rows[r * n + i] = 1.0 + r as f32);
        }
        let t = Tensor::from_slice(&rows).view([3, n as i64]);
        assert_eq!(argmax_rows(&t).unwrap(), vec![5, n as i64 / 2 + 1, 0]);
        assert_eq!(
            Vec::<i64>::try_from(t.argmax(-1, false)).unwrap(),
            vec![5, n as i64 / 2 + 1, 0]
        );
        rows[n + 7] = f32::NAN;
        assert!(argmax_rows(&Tensor::from_slice(&rows).view([3, n as i64])).is_none());
        let t = Tensor::from_slice(&[1.0f32, 3.0, 2.0, 0.0]).view([2, 2]);
        assert!(argmax_rows(&t.to_kind(Kind::Double)).is_none(), "f64");
        assert!(argmax_rows(&t.tr()).is_none(), "not contiguous");
        assert!(argmax_rows(&t.view([4])).is_none(), "not [rows, n]");
    }

    #[test]
    fn top_k_equals_libtorch_on_both_paths() {
        for (rows, n, k) in
            [(1, 10, 3), (2, 5000, 6), (8, 771_648, 6), (3, PARALLEL_FROM as i64 + 1, 1)]
        {
            let t = random(rows, n, k + n);
            let (v, i) = top_k_rows(&t, k as usize).expect("random values have no ties");
            let (want_v, want_i) = t.topk(k, 1, true, true);
            assert!(v.equal(&want_v), "{rows} x {n}, k {k}: values");
            assert!(i.equal(&want_i), "{rows} x {n}, k {k}: indices");
        }
    }

    #[test]
    fn top_k_leaves_ties_nan_and_other_inputs_to_libtorch() {
        let mut v: Vec<f32> = (0..200).map(|i| i as f32).collect();
        let t = |v: &[f32]| Tensor::from_slice(v).view([1, v.len() as i64]);
        assert!(top_k_rows(&t(&v), 3).is_some());
        v[5] = 198.0; // equal to the 2nd largest
        assert!(top_k_rows(&t(&v), 3).is_none());
        v[5] = 197.0; // equal to the 3rd: which of the two is 3rd is libtorch's choice
        assert!(top_k_rows(&t(&v), 3).is_none());
        v[5] = 196.0; // equal to the 4th: the top 3 are still unique
        let (vals, idx) = top_k_rows(&t(&v), 3).unwrap();
        assert_eq!(Vec::<f32>::try_from(vals.view(-1)).unwrap(), vec![199.0, 198.0, 197.0]);
        assert_eq!(Vec::<i64>::try_from(idx.view(-1)).unwrap(), vec![199, 198, 197]);
        v[5] = 5.0;
        v[150] = f32::NAN;
        assert!(top_k_rows(&t(&v), 3).is_none());
        v[150] = 150.0;
        assert!(top_k_rows(&t(&v), 200).is_none(), "k ≥ n");
        assert!(top_k_rows(&t(&v), 0).is_none(), "k = 0");
        assert!(top_k_rows(&t(&v).to_kind(Kind::Double), 3).is_none(), "f64");
        assert!(top_k_rows(&t(&v).view([2, 100]).tr(), 3).is_none(), "not contiguous");
    }
    /// What `generate` computed before [`beam_candidates`]: libtorch's log-softmax, the scores added, `topk`.
    fn libtorch_candidates(logits: &Tensor, scores: &Tensor, keep: i64) -> (Tensor, Tensor) {
        let (b, k) = scores.size2().unwrap();
        let lp = logits.log_softmax(-1, Kind::Float).view([b, k, -1]) + scores.unsqueeze(-1);
        lp.view([b, -1]).topk(keep, 1, true, true)
    }

    fn assert_same_candidates(logits: &Tensor, scores: &Tensor, keep: i64, what: &str) {
        let (v, i) = beam_candidates(logits, scores, keep as usize).expect(what);
        let (want_v, want_i) = libtorch_candidates(logits, scores, keep);
        assert!(i.equal(&want_i), "{what}: indices {i:?} against libtorch's {want_i:?}");
        // libtorch sums exp in f32 lanes: over 257,216 logits its log-probabilities are off by up to 2e-5 (measured),
        // these by under 1e-6; both are compared with f64's.
        let (b, k) = scores.size2().unwrap();
        let exact = (logits.to_kind(Kind::Double).log_softmax(-1, Kind::Double).view([b, k, -1])
            + scores.to_kind(Kind::Double).unsqueeze(-1))
        .view([b, -1])
        .gather(1, &i, false);
        let off = |v: &Tensor| f64::try_from((v - &exact).abs().max()).unwrap();
        assert!(off(&v) <= 2e-6, "{what}: {:e} from f64's values", off(&v));
        let relative = off(&want_v).max(off(&v)) / f64::try_from(exact.abs().max()).unwrap();
        assert!(relative <= 1e-5, "{what}: libtorch's values {relative:e} (relative) from f64's");
    }

    #[test]
    fn beam_candidates_equal_libtorch_on_both_paths() {
        // Small rows on this thread; 8 x 3 rows of a PaliGemma vocabulary in pieces on the pool's threads; a vocabulary
        // whose last piece holds one value.
        for (b, k, v, keep) in
            [(1, 2, 50, 4), (2, 3, 1000, 6), (8, 3, 257_216, 6), (1, 3, PIECE as i64 * 2 + 1, 6)]
        {
            let logits = random(b * k, v, v + k) * 3.0;
            let scores = random(b, k, b) - 5.0;
            assert_same_candidates(&logits, &scores, keep, &format!("{b} x {k} beams, {v} tokens"));
        }
    }

    #[test]
    fn beam_candidates_at_the_first_step_take_the_first_beam_only() {
        // generate's first step: every beam holds the prompt's logits, the beams after the first score -1e9, so
        // their candidates tie among themselves but never reach the top.
        let row = random(1, 3000, 7);
        let logits = Tensor::cat(&[&row, &row, &row], 0);
        let scores = Tensor::from_slice(&[0.0f32, -1e9, -1e9]).view([1, 3]);
        assert_same_candidates(&logits, &scores, 6, "first step");
    }

    #[test]
    fn beam_candidates_skip_masked_pieces_and_leave_ties_and_non_finite_rows_to_libtorch() {
        let v = PIECE * 2 + 100;
        let mut x: Vec<f32> = Vec::try_from(random(1, v as i64, 3).view(-1)).unwrap();
        x[..PIECE].iter_mut().for_each(|x| *x = f32::NEG_INFINITY); // a piece of masked tokens
        let logits = |x: &[f32]| Tensor::from_slice(x).view([1, x.len() as i64]);
        let one = Tensor::zeros([1, 1], (Kind::Float, Device::Cpu));
        assert_same_candidates(&logits(&x), &one, 4, "a masked piece");
        // Two beams with the same logits and scores: every candidate has its twin.
        let two = Tensor::cat(&[logits(&x), logits(&x)], 0);
        assert!(
            beam_candidates(&two, &Tensor::zeros([1, 2], (Kind::Float, Device::Cpu)), 4).is_none()
        );
        // A tie at the 5th (keep + 1-th) place of one row.
        let mut tied = x.clone();
        let (_, i) = logits(&x).topk(5, 1, true, true);
        let i = Vec::<i64>::try_from(i.view(-1)).unwrap();
        tied[i[4] as usize] = tied[i[3] as usize];
        assert!(beam_candidates(&logits(&tied), &one, 4).is_none());
        // A tie below it changes nothing.
        let mut below = x.clone();
        below[i[4] as usize] = x[i[4] as usize];
        let (_, j) = logits(&x).topk(7, 1, true, true);
        let j = Vec::<i64>::try_from(j.view(-1)).unwrap();
        below[j[6] as usize] = below[j[5] as usize];
        assert_same_candidates(&logits(&below), &one, 4, "a tie below the top 5");
        // Early in a piece, late in one, and among masked values.
        for (bad, at) in [
            (f32::NAN, PIECE + 5),
            (f32::NAN, PIECE + 3000),
            (f32::INFINITY, PIECE + 3000),
            (f32::NAN, 7),
        ] {
            let mut y = x.clone();
            y[at] = bad;
            assert!(beam_candidates(&logits(&y), &one, 4).is_none(), "{bad} at {at}");
        }
        let masked = vec![f32::NEG_INFINITY; 10];
        assert!(beam_candidates(&logits(&masked), &one, 4).is_none(), "every token masked");
        assert!(beam_candidates(&logits(&x[..4]), &one, 4).is_none(), "keep + 1 > V");
        assert!(
            beam_candidates(&logits(&x), &one.to_kind(Kind::Double), 4).is_none(),
            "f64 scores"
        );
        assert!(beam_candidates(&two, &one, 4).is_none(), "rows != B x K");
    }
}
