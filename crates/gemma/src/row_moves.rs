//! Beam search's reorder of the KV cache in place: each batch row whose beam changed takes the filled positions of
//! another row, in buffers `[B, kv_heads, capacity, head_dim]`, and the rows that keep their beam are not touched.
//!
//! Selecting whole buffers (`index_select`, as transformers' `Cache.reorder_cache` does) copies every row and the
//! headroom into new tensors each step, on the decoding step's one libtorch thread: 2.2-2.3 ms for beam 3 at batch 8
//! on the mid-size model, against 0.72-0.83 ms for the moves here, plain copies of contiguous runs spread over
//! `smallmm::pool`'s threads (docs/benchmarks.md, issue 14, step 21). Other devices keep libtorch's whole-row select.
use std::collections::{HashMap, HashSet};
use tch::{Device, Tensor};

/// The rows an index changes: `(target, source)` pairs, each target once, none equal to its source.
#[derive(Debug, PartialEq)]
pub struct RowMoves {
    pairs: Vec<(usize, usize)>,
}

impl RowMoves {
    /// The moves that give row `i` the old row `index[i]`, for an index that keeps the count of `rows` (`None`
    /// otherwise, or for a source out of range); empty when every row keeps its place.
    pub fn of(index: &[i64], rows: i64) -> Option<RowMoves> {
        if index.len() as i64 != rows || index.iter().any(|&s| !(0..rows).contains(&s)) {
            return None;
        }
        let pairs = index
            .iter()
            .enumerate()
            .filter(|&(t, &s)| t as i64 != s)
            .map(|(t, &s)| (t, s as usize))
            .collect();
        Some(RowMoves { pairs })
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Applies the moves in place to each `(buffer, len)` (positions `..len` of every moved row, all read before
    /// any is written: a row may be both a source and a target, as in a swap) and returns true; or returns false,
    /// touching nothing, unless every buffer is a contiguous 4-d CPU tensor and smallmm is on (`PGRS_SMALLMM=0` leaves
    /// every decoding kernel to libtorch, this one too). The caller then selects whole rows with libtorch, as before,
    /// so GPU paths are unchanged.
    pub fn apply(&self, buffers: &[(&Tensor, i64)]) -> bool {
        let usable = |b: &Tensor| b.device() == Device::Cpu && b.is_contiguous() && b.dim() == 4;
        if !(smallmm::enabled() && buffers.iter().all(|(b, _)| usable(b))) {
            return false;
        }
        if self.is_empty() {
            return true;
        }
        let runs: Vec<Runs> = buffers.iter().map(|(b, len)| Runs::of(b, *len)).collect();
        // Sources that are also targets, set aside before any copy writes them.
        let targets: HashSet<usize> = self.pairs.iter().map(|p| p.0).collect();
        let mut aside: HashMap<(usize, usize), Vec<u8>> = HashMap::new();
        for (i, r) in runs.iter().enumerate() {
            for &(_, s) in self.pairs.iter().filter(|(_, s)| targets.contains(s)) {
                // SAFETY: `s` is a row of the buffer (`of` checked the range), read before any write below.
                aside.entry((i, s)).or_insert_with(|| unsafe { r.read_row(s) });
            }
        }
        // One task per (buffer, move, kv head), on the pool's threads.
        let tasks: Vec<(usize, (usize, usize), usize)> = (runs.iter().enumerate())
            .flat_map(|(i, r)| {
                self.pairs.iter().flat_map(move |&m| (0..r.heads).map(move |h| (i, m, h)))
            })
            .collect();
        let copy = |n: usize| {
            let (i, (t, s), h) = tasks[n];
            let r = &runs[i];
            // SAFETY: each (buffer, target, head) run is written by this task alone; the runs read are either set
            // aside or of rows no task writes (not targets), and lie within the buffer.
            unsafe {
                let src = match aside.get(&(i, s)) {
                    Some(row) => row.as_ptr().add(h * r.run),
                    None => r.at(s, h),
                };
                std::ptr::copy_nonoverlapping(src, r.at(t, h), r.run);
            }
        };
        smallmm::pool::for_each(tasks.len(), &copy);
        true
    }
}

/// Where a contiguous CPU buffer `[B, heads, capacity, head_dim]` keeps the filled runs of its rows, in bytes.
struct Runs {
    base: usize,
    heads: usize,
    /// Bytes from one head's positions to the next's, and from one row to the next.
    head_stride: usize,
    row_stride: usize,
    /// Bytes of one head's first `len` positions.
    run: usize,
}

impl Runs {
    fn of(buffer: &Tensor, len: i64) -> Runs {
        let size: Vec<usize> = buffer.size().iter().map(|&s| s as usize).collect();
        let elem = buffer.kind().elt_size_in_bytes();
        let head_stride = size[2] * size[3] * elem;
        Runs {
            base: buffer.data_ptr() as usize,
            heads: size[1],
            head_stride,
            row_stride: size[1] * head_stride,
            run: len as usize * size[3] * elem,
        }
    }

    /// # Safety
    /// `row` and `head` are within the buffer, which outlives the pointer.
    unsafe fn at(&self, row: usize, head: usize) -> *mut u8 {
        (self.base + row * self.row_stride + head * self.head_stride) as *mut u8
    }

    /// The filled runs of `row`, head after head.
    ///
    /// # Safety
    /// As [`Runs::at`].
    unsafe fn read_row(&self, row: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.heads * self.run);
        for h in 0..self.heads {
            out.extend_from_slice(std::slice::from_raw_parts(self.at(row, h), self.run));
        }
        out
    }
}

/// Reorders of 4 rows for tests: a swap, a cycle, rows copied to several, one row to all, the identity.
#[cfg(test)]
pub(crate) const REORDERS: [[i64; 4]; 5] =
    [[1, 0, 2, 3], [3, 0, 1, 2], [2, 2, 0, 0], [1, 1, 1, 1], [0, 1, 2, 3]];

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn moves_name_the_changed_rows_only() {
        assert_eq!(RowMoves::of(&[0, 0, 2], 3).unwrap().pairs, vec![(1, 0)]);
        assert!(RowMoves::of(&[0, 1], 2).unwrap().is_empty());
        assert_eq!(RowMoves::of(&[0, 0, 0], 1), None, "a new row count");
        assert_eq!(RowMoves::of(&[0, 3, 1], 3), None, "a source out of range");
    }

    #[test]
    fn moves_equal_selecting_rows() {
        // Swaps and cycles (sources that are targets), copies to several rows; two heads, f32 and bf16; buffers with
        // 2 and 3 heads in one call.
        for index in REORDERS {
            for kind in [Kind::Float, Kind::BFloat16] {
                let buffer = Tensor::randn([4, 2, 7, 6], (Kind::Float, Device::Cpu)).to_kind(kind);
                let other = Tensor::randn([4, 3, 7, 6], (Kind::Float, Device::Cpu)).to_kind(kind);
                let before = [buffer.copy(), other.copy()];
                assert!(RowMoves::of(&index, 4).unwrap().apply(&[(&buffer, 5), (&other, 5)]));
                for (got, before) in [&buffer, &other].into_iter().zip(&before) {
                    let want = before.index_select(0, &Tensor::from_slice(&index));
                    let what = format!("{index:?} {kind:?}, {} heads", got.size()[1]);
                    assert!(got.narrow(2, 0, 5).equal(&want.narrow(2, 0, 5)), "{what}");
                    assert!(
                        got.narrow(2, 5, 2).equal(&before.narrow(2, 5, 2)),
                        "{what}: past len untouched"
                    );
                }
            }
        }
    }

    #[test]
    fn buffers_the_moves_do_not_handle_are_left_untouched() {
        // A non-contiguous view and a 3-d tensor: the caller selects whole rows instead.
        let full = Tensor::randn([4, 2, 7, 6], (Kind::Float, Device::Cpu));
        let view = full.narrow(3, 0, 5);
        let flat = Tensor::randn([4, 7, 6], (Kind::Float, Device::Cpu));
        let moves = RowMoves::of(&[1, 0, 2, 3], 4).unwrap();
        for (buffer, what) in [(&view, "non-contiguous"), (&flat, "3-d")] {
            let before = buffer.copy();
            assert!(!moves.apply(&[(buffer, 5)]), "{what}");
            assert!(buffer.equal(&before), "{what}: untouched");
        }
    }
}
