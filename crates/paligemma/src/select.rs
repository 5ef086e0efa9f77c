//! Picking tokens from a decoding step's scores on CPU: the greedy argmax and beam search's top-k, each one pass over
//! the rows at the speed of reading them, on rayon's threads.
//!
//! Issue 14 (docs/benchmarks.md): libtorch runs `argmax` and `topk` over a step's `[rows, 257,216]` f32 scores on its
//! one decoding thread (`generate`'s `OneThread`), and its `topk` sorts candidates: 1.2-1.5 ms per beam-3 step at
//! batch 1, about a tenth of the step. A scan that keeps the few best values needs one read.
//!
//! Both functions give libtorch's answer or none: [`argmax_rows`] returns the first index of the largest value, as
//! `torch.argmax` documents; [`top_k_rows`] answers only when the answer is unique, i.e. its k values and the
//! (k+1)-th are all different, so that no tie-break (which `torch.topk` leaves unspecified) can order them otherwise.
//! Both leave NaN, other dtypes, devices and layouts to libtorch (`None`), and the callers fall back to it, so a
//! generation picks the same ids either way: the tests below compare both answers with libtorch's on random rows,
//! ties and NaN, and the HF parity tests' greedy and beam ids go through them. `PGRS_SMALLMM=0` turns them off with
//! the products.
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

/// Values read per chunk: a chunk none of whose values can enter the result is skipped with one vectorisable test.
const CHUNK: usize = 64;

/// Rows shorter than this are scanned on the calling thread (waking rayon's workers costs tens of µs).
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
    let (values, _, n) = rows_of(t)?;
    values.chunks(n).map(|row| argmax(row).map(|i| i as i64)).collect()
}

/// First index of the maximum of a non-empty row, `None` if it holds a NaN (libtorch counts NaN as the maximum).
fn argmax(row: &[f32]) -> Option<usize> {
    if row.len() < PARALLEL_FROM {
        return argmax_from(row, 0);
    }
    let half = row.len() / 2;
    let (a, b) = rayon::join(|| argmax_from(&row[..half], 0), || argmax_from(&row[half..], half));
    let (a, b) = (a?, b?);
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
        let parts: Vec<Option<Best>> = row
            .par_chunks(row.len().div_ceil(2))
            .enumerate()
            .map(|(p, part)| Best::scan(part, p * row.len().div_ceil(2), k + 1))
            .collect();
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
}
