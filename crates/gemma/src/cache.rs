//! KV cache for incremental decoding: post-RoPE keys and values per layer, `[B, kv_heads, T, head_dim]`.
//!
//! The cache is an explicit argument of `forward`, never hidden state, so training code cannot pick it up by accident.
//!
//! Each layer keeps its keys and values in buffers with room for more positions than they hold: the first append
//! leaves room for the `headroom` positions the caller expects (a generation's new tokens), and a step writes its
//! position in place. Concatenating instead copied the whole cache on every decoding step (13.8 MB of keys and values
//! per step for beam 3 at batch 8 on the mid-size model). A step past the room grows the buffers to twice the size.
use crate::row_moves::RowMoves;
use tch::Tensor;

#[derive(Debug, Default)]
pub struct LayerKv {
    /// `[B, kv_heads, capacity, head_dim]` keys and values; positions `..len` are filled.
    buffers: Option<(Tensor, Tensor)>,
    len: i64,
    headroom: i64,
}

impl LayerKv {
    /// Appends the new keys/values `[B, kv_heads, L, head_dim]` and returns views of all of them.
    pub fn append(&mut self, k: Tensor, v: Tensor) -> (Tensor, Tensor) {
        let end = self.len + k.size()[2];
        let capacity = self.buffers.as_ref().map_or(0, |(bk, _)| bk.size()[2]);
        if end > capacity {
            let capacity = (end + self.headroom).max(2 * capacity);
            let old = self.buffers.take();
            let grow = |new: &Tensor, old: Option<&Tensor>| {
                let mut size = new.size();
                size[2] = capacity;
                let buffer = Tensor::empty(size.as_slice(), (new.kind(), new.device()));
                if let Some(old) = old {
                    buffer.narrow(2, 0, self.len).copy_(&old.narrow(2, 0, self.len));
                }
                buffer
            };
            self.buffers = Some((
                grow(&k, old.as_ref().map(|(bk, _)| bk)),
                grow(&v, old.as_ref().map(|(_, bv)| bv)),
            ));
        }
        let (bk, bv) = self.buffers.as_ref().expect("allocated above");
        bk.narrow(2, self.len, end - self.len).copy_(&k);
        bv.narrow(2, self.len, end - self.len).copy_(&v);
        self.len = end;
        (bk.narrow(2, 0, end), bv.narrow(2, 0, end))
    }

    /// The cached keys and values, `[B, kv_heads, T, head_dim]` views (`None` before the first append).
    pub fn get(&self) -> Option<(Tensor, Tensor)> {
        self.buffers.as_ref().map(|(k, v)| (k.narrow(2, 0, self.len), v.narrow(2, 0, self.len)))
    }
}

#[derive(Debug)]
pub struct KvCache {
    pub layers: Vec<LayerKv>,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self::with_headroom(num_layers, 0)
    }

    /// A cache whose first append leaves room for `headroom` more positions in each layer (e.g. the new tokens of a
    /// generation), so that decoding steps never copy it.
    pub fn with_headroom(num_layers: usize, headroom: i64) -> Self {
        let layer = || LayerKv { headroom: headroom.max(0), ..LayerKv::default() };
        Self { layers: (0..num_layers).map(|_| layer()).collect() }
    }

    /// Number of cached positions.
    pub fn len(&self) -> i64 {
        self.layers.first().map_or(0, |l| l.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps, for each new batch row, the cached row `index[i]` (beam search reordering).
    ///
    /// With as many rows before as after (every beam-search step after the first), only the rows whose beam changed
    /// are copied, and only their filled positions, in place ([`RowMoves`], on CPU): selecting whole buffers copies
    /// every row and the headroom into new tensors each step (14 MB at beam 3, batch 8 on the mid-size model;
    /// docs/benchmarks.md, issue 14). Elsewhere, or where the moves decline, whole rows are selected.
    pub fn reorder(&mut self, index: &Tensor) {
        // A CPU index only: reading a GPU one would wait for the device (GPU caches select whole rows, as before).
        let rows = (self.layers.first().and_then(|l| l.buffers.as_ref()))
            .filter(|_| index.device() == tch::Device::Cpu)
            .map(|(k, _)| k.size()[0]);
        let moves =
            rows.zip(Vec::<i64>::try_from(index).ok()).and_then(|(r, i)| RowMoves::of(&i, r));
        let buffers: Vec<(&Tensor, i64)> = (self.layers.iter())
            .filter_map(|l| l.buffers.as_ref().map(|(k, v)| [(k, l.len), (v, l.len)]))
            .flatten()
            .collect();
        if moves.is_some_and(|m| m.apply(&buffers)) {
            return;
        }
        for l in &mut self.layers {
            l.buffers = l
                .buffers
                .as_ref()
                .map(|(k, v)| (k.index_select(0, index), v.index_select(0, index)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn steps(cache: &mut KvCache, parts: &[Tensor]) -> Vec<Tensor> {
        parts.iter().map(|p| cache.layers[0].append(p.copy(), p * 2.0).0).collect()
    }

    #[test]
    fn appends_in_place_and_through_growth_equal_concatenation() {
        let opts = (Kind::Float, Device::Cpu);
        let parts: Vec<Tensor> =
            [5, 1, 1, 1, 3, 1].iter().map(|&l| Tensor::randn([2, 1, l, 4], opts)).collect();
        // Headroom 0 grows at the second append (to 2 x 5) and the fifth (to 2 x 10); 2 at the fourth (to 2 x 7);
        // 100 never (5 + 100).
        for (headroom, capacity) in [(0, 20), (2, 14), (100, 105)] {
            let mut cache = KvCache::with_headroom(1, headroom);
            let got = steps(&mut cache, &parts);
            for (i, g) in got.iter().enumerate() {
                let want = Tensor::cat(&parts[..=i], 2);
                assert!(g.equal(&want), "headroom {headroom}, step {i}");
            }
            assert_eq!(cache.len(), 12);
            let buffers = cache.layers[0].buffers.as_ref().unwrap();
            assert_eq!(buffers.0.size()[2], capacity, "headroom {headroom}");
            let (k, v) = cache.layers[0].get().unwrap();
            assert!(v.equal(&(&k * 2.0)));
        }
    }

    #[test]
    fn reorder_keeps_the_chosen_rows_and_later_appends_follow() {
        let opts = (Kind::Float, Device::Cpu);
        let mut cache = KvCache::with_headroom(2, 4);
        let first = Tensor::randn([3, 1, 6, 4], opts);
        for l in &mut cache.layers {
            let _ = l.append(first.copy(), first.copy());
        }
        let index = Tensor::from_slice(&[2i64, 2, 0]);
        cache.reorder(&index);
        let next = Tensor::randn([3, 1, 1, 4], opts);
        let (k, _) = cache.layers[1].append(next.copy(), next.copy());
        let want = Tensor::cat(&[first.index_select(0, &index), next], 2);
        assert!(k.equal(&want));
        assert_eq!(cache.len(), 6, "layer 0 has not seen the step yet");
    }

    #[test]
    fn reorder_in_place_equals_selecting_whole_rows() {
        // Same row count (`REORDERS`), then a new row count (beam expansion).
        let opts = (Kind::Float, Device::Cpu);
        for index in crate::row_moves::REORDERS {
            let mut cache = KvCache::with_headroom(2, 3);
            let first = Tensor::randn([4, 2, 5, 3], opts);
            for l in &mut cache.layers {
                let _ = l.append(first.copy(), &first * -1.0);
            }
            let before = cache.layers[0].buffers.as_ref().map(|(k, _)| k.data_ptr()).unwrap();
            cache.reorder(&Tensor::from_slice(&index));
            let want = first.index_select(0, &Tensor::from_slice(&index));
            for l in &cache.layers {
                let (k, v) = l.get().unwrap();
                assert!(k.equal(&want) && v.equal(&(&want * -1.0)), "{index:?}");
            }
            let after = cache.layers[0].buffers.as_ref().map(|(k, _)| k.data_ptr()).unwrap();
            assert_eq!(before, after, "{index:?}: rows copied in place");
        }
        let mut cache = KvCache::with_headroom(1, 2);
        let first = Tensor::randn([2, 1, 4, 3], opts);
        let _ = cache.layers[0].append(first.copy(), first.copy());
        let expand = Tensor::from_slice(&[0i64, 0, 0, 1, 1, 1]);
        cache.reorder(&expand);
        assert!(cache.layers[0].get().unwrap().0.equal(&first.index_select(0, &expand)));
    }
}
