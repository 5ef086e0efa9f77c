//! Beam search's reorder of the KV cache in place: each batch row whose beam changed takes the filled positions of
//! another row, in buffers `[B, kv_heads, capacity, head_dim]`, and the rows that keep their beam are not touched.
//!
//! Selecting whole buffers (`index_select`, as transformers' `Cache.reorder_cache` does) copied every row and the
//! headroom into new tensors each step, on the decoding step's one libtorch thread: 1.5-2 ms of a 27 ms beam-3 step at
//! batch 8 on the mid-size model (docs/benchmarks.md, issue 14). On CPU the moves here are plain copies of contiguous
//! runs spread over `smallmm::pool`'s threads; elsewhere (and with `PGRS_SMALLMM=0`) libtorch copies the moved rows.
use std::collections::HashMap;
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

    /// Applies the moves to each `(buffer, len)`: positions `..len` of every moved row, all read before any is
    /// written (a row may be both a source and a target, as in a swap).
    pub fn apply(&self, buffers: &[(&Tensor, i64)]) {
        if self.is_empty() {
            return;
        }
        let heads = buffers.first().map(|(b, _)| b.size().get(1).copied());
        // `PGRS_SMALLMM=0` leaves every decoding kernel to libtorch, this one too.
        let on_cpu = smallmm::enabled()
            && buffers.iter().all(|(b, _)| {
                b.device() == Device::Cpu
                    && b.is_contiguous()
                    && b.dim() == 4
                    && Some(b.size().get(1).copied()) == heads
            });
        if on_cpu {
            self.apply_on_cpu(buffers);
        } else {
            self.apply_with_libtorch(buffers);
        }
    }

    fn apply_with_libtorch(&self, buffers: &[(&Tensor, i64)]) {
        let (targets, sources): (Vec<i64>, Vec<i64>) =
            self.pairs.iter().map(|&(t, s)| (t as i64, s as i64)).unzip();
        for (buffer, len) in buffers {
            let mut live = buffer.narrow(2, 0, *len);
            let dev = buffer.device();
            let rows = live.index_select(0, &Tensor::from_slice(&sources).to_device(dev));
            let _ = live.index_copy_(0, &Tensor::from_slice(&targets).to_device(dev), &rows);
        }
    }

    /// Copies per (buffer, move, kv head) on the pool's threads, for contiguous CPU buffers with the same number of
    /// heads; the sources that are also targets are set aside first, so that every copy reads what the rows held
    /// before.
    fn apply_on_cpu(&self, buffers: &[(&Tensor, i64)]) {
        let runs: Vec<Runs> = buffers.iter().map(|(b, len)| Runs::of(b, *len)).collect();
        let targets: std::collections::HashSet<usize> = self.pairs.iter().map(|p| p.0).collect();
        let mut aside: HashMap<(usize, usize), Vec<u8>> = HashMap::new();
        for (i, r) in runs.iter().enumerate() {
            for &(_, s) in self.pairs.iter().filter(|(_, s)| targets.contains(s)) {
                // SAFETY: `s` is a row of the buffer (`of` checked the range), read before any write below.
                aside.entry((i, s)).or_insert_with(|| unsafe { r.read_row(s) });
            }
        }
        let heads = runs.first().map_or(0, |r| r.heads);
        let per_buffer = self.pairs.len() * heads;
        let copy = |n: usize| {
            let (i, rest) = (n / per_buffer, n % per_buffer);
            let ((t, s), h) = (self.pairs[rest / heads], rest % heads);
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
        smallmm::pool::for_each(runs.len() * per_buffer, &copy);
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
    fn moves_equal_selecting_rows_on_both_paths() {
        // Swaps and cycles (sources that are targets), copies to several rows; two heads, f32 and bf16; on the CPU
        // path (contiguous) and libtorch's (a buffer that is a non-contiguous view).
        for index in REORDERS {
            for kind in [Kind::Float, Kind::BFloat16] {
                for contiguous in [true, false] {
                    let full =
                        Tensor::randn([4, 2, 7, 6], (Kind::Float, Device::Cpu)).to_kind(kind);
                    let buffer = if contiguous { full.copy() } else { full.narrow(3, 0, 5) };
                    let before = buffer.copy();
                    let other = (&buffer * 2.0).to_kind(kind);
                    RowMoves::of(&index, 4).unwrap().apply(&[(&buffer, 5), (&other, 5)]);
                    let want = before.index_select(0, &Tensor::from_slice(&index));
                    let what = format!("{index:?} {kind:?} contiguous {contiguous}");
                    assert!(buffer.narrow(2, 0, 5).equal(&want.narrow(2, 0, 5)), "{what}");
                    assert!(
                        buffer.narrow(2, 5, 2).equal(&before.narrow(2, 5, 2)),
                        "{what}: past len untouched"
                    );
                    let other_want = (&want * 2.0).to_kind(kind);
                    assert!(
                        other.narrow(2, 0, 5).equal(&other_want.narrow(2, 0, 5)),
                        "{what}: second buffer"
                    );
                }
            }
        }
    }
}
