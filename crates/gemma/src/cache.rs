//! KV cache for incremental decoding: post-RoPE keys and values per layer, `[B, kv_heads, T, head_dim]`.
//!
//! The cache is an explicit argument of `forward`, never hidden state, so training code cannot pick it up by accident.
use tch::Tensor;

#[derive(Debug, Default)]
pub struct LayerKv {
    pub k: Option<Tensor>,
    pub v: Option<Tensor>,
}

impl LayerKv {
    /// Appends the new keys/values and returns the full ones.
    pub fn append(&mut self, k: Tensor, v: Tensor) -> (Tensor, Tensor) {
        let (k, v) = match (self.k.take(), self.v.take()) {
            (Some(pk), Some(pv)) => (Tensor::cat(&[pk, k], 2), Tensor::cat(&[pv, v], 2)),
            _ => (k, v),
        };
        self.k = Some(k.shallow_clone());
        self.v = Some(v.shallow_clone());
        (k, v)
    }
}

#[derive(Debug)]
pub struct KvCache {
    pub layers: Vec<LayerKv>,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self { layers: (0..num_layers).map(|_| LayerKv::default()).collect() }
    }

    /// Number of cached positions.
    pub fn len(&self) -> i64 {
        self.layers.first().and_then(|l| l.k.as_ref()).map_or(0, |k| k.size()[2])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps, for each new batch row, the cached row `index[i]` (beam search reordering).
    pub fn reorder(&mut self, index: &Tensor) {
        for l in &mut self.layers {
            l.k = l.k.as_ref().map(|k| k.index_select(0, index));
            l.v = l.v.as_ref().map(|v| v.index_select(0, index));
        }
    }
}
