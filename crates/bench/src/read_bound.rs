//! The memory-bandwidth bound of a cached decoding step (issue 14), measured in the run that reports against it.
//!
//! A decoding step with a few rows (batch × beams) multiplies each of them by every weight of the decoder, the tied
//! output head included, and attends over the KV cache: at least one read of all of those bytes. It can therefore
//! take no less than `bytes / read speed`, whatever the kernel; a side's fraction of the bound is that time over its
//! measured step time. The read speed is taken on this machine, in this run, with the run's thread count: the faster
//! of a sum over a 256 MB tensor through libtorch and a Rust loop on the widest vectors, prefetching ahead with each
//! of the hints smallmm's kernel may ask with (non-temporal, into all cache levels, into L2; the fastest kept), over the
//! same amount in transparent huge pages, as `pgrs caption` holds its weights (`paligemma::allocator`; neither probe
//! writes anything back, so neither pays for more than the read), each the median of 15 calls as the steps are.
use paligemma::names::LANGUAGE;
use paligemma::PaliGemmaConfig;
use std::time::Instant;

/// Bytes each read probe sums over: far beyond any cache, as the decoder's weights are.
pub const PROBE_BYTES: usize = 256 << 20;

/// Read speeds in bytes per second.
#[derive(Clone, Copy, Debug)]
pub struct ReadSpeed {
    /// `x.sum()` over a 256 MB f32 tensor, libtorch's reduction kernel on its intra-op threads (median call).
    pub torch: f64,
    /// The same sum in Rust, 64 independent accumulators per thread on the widest vectors, prefetching ahead as
    /// smallmm's kernel may (the fastest of its three prefetch hints), on a pool of the run's size,
    /// over memory in transparent huge pages where the kernel grants them.
    pub rust: f64,
}

impl ReadSpeed {
    /// The bound's speed: the faster probe.
    pub fn best(&self) -> f64 {
        self.torch.max(self.rust)
    }
}

/// Both probes, 15 calls each after one that faults the pages in; each speed is that of the median call. Medians,
/// as the step times they are compared with: on a shared machine the read speed swings (30-57 GB/s measured on the
/// 2-core development VM within minutes), and a best call against median steps would measure the swings. The Rust
/// probe runs after a pause: right after a libtorch op, libtorch's idle OpenMP workers spin on the cores its threads
/// need (measured: 22 against 40 GB/s interleaved).
pub fn measure(threads: usize) -> anyhow::Result<ReadSpeed> {
    use tch::{Device, Kind, Tensor};
    tch::set_num_threads(threads as i32);
    let n = PROBE_BYTES / 4;
    let t = Tensor::ones([n as i64], (Kind::Float, Device::Cpu));
    let torch = median_speed(|| {
        let _ = t.sum(Kind::Float).double_value(&[]);
    });
    drop(t);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build()?;
    let ones = HugePageOnes::new(n);
    let data = ones.as_slice();
    // Every prefetch hint of smallmm's kernel (which one it asks with depends on the CPU), the fastest kept.
    let rust = CHUNK_SUMS
        .map(|(_, chunk_sum)| {
            median_speed(|| {
                std::hint::black_box(pool.install(|| sum(std::hint::black_box(data), chunk_sum)));
            })
        })
        .into_iter()
        .fold(0.0, f64::max);
    Ok(ReadSpeed { torch, rust })
}

/// `len` f32 ones, 2 MiB aligned and advised for transparent huge pages before they are first touched, as libtorch
/// allocates the weights under `THP_MEM_ALLOC_ENABLE=1` (the advice is ignored where the kernel has none).
struct HugePageOnes {
    ptr: *mut f32,
    layout: std::alloc::Layout,
    len: usize,
}

impl HugePageOnes {
    fn new(len: usize) -> HugePageOnes {
        let layout =
            std::alloc::Layout::from_size_align(len.max(1) * 4, 2 << 20).expect("a valid layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc(layout) }.cast::<f32>();
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        #[cfg(target_os = "linux")]
        // SAFETY: the range is this allocation, not yet touched; the advice changes no content.
        unsafe {
            libc::madvise(ptr.cast(), layout.size(), libc::MADV_HUGEPAGE);
        }
        // SAFETY: `len` f32 fit the allocation, which nothing else references.
        unsafe { std::slice::from_raw_parts_mut(ptr, len) }.fill(1.0);
        HugePageOnes { ptr, layout, len }
    }

    fn as_slice(&self) -> &[f32] {
        // SAFETY: `len` initialised f32 (`new` filled them), alive as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for HugePageOnes {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.cast(), self.layout) }
    }
}

/// Bytes per second of the median of 15 calls of `read` (one more first, untimed), each reading [`PROBE_BYTES`].
fn median_speed(mut read: impl FnMut()) -> f64 {
    read();
    let mut times: Vec<f64> = (0..15)
        .map(|_| {
            let started = Instant::now();
            read();
            started.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    PROBE_BYTES as f64 / times[times.len() / 2]
}

/// One chunk's sum with each prefetch hint of smallmm's kernel (`smallmm::x86`: non-temporal on AMD, into L2 on
/// Intel, and into every level), each at the kernel's distance ahead ([`smallmm::prefetch_bytes`]), by name.
const CHUNK_SUMS: [(&str, ChunkSum); 3] =
    [("NTA", chunk_sum_nta), ("T0", chunk_sum_t0), ("T1", chunk_sum_t1)];

/// A sum over one chunk of the probe's memory.
type ChunkSum = fn(&[f32]) -> f32;

/// Sum of `data` over rayon's current pool, in chunks of 64K values, each by `chunk_sum` (one of [`CHUNK_SUMS`]).
fn sum(data: &[f32], chunk_sum: ChunkSum) -> f32 {
    use rayon::prelude::*;
    data.par_chunks(1 << 16).map(chunk_sum).sum()
}

smallmm::widest_vectors!(
    /// One chunk's sum on the widest vectors this CPU has, prefetching non-temporal.
    fn chunk_sum_nta(chunk: &[f32]) -> f32 = chunk_sum_loop::<NTA, { smallmm::prefetch_bytes(NTA) }>
);

smallmm::widest_vectors!(
    /// One chunk's sum, prefetching into every cache level.
    fn chunk_sum_t0(chunk: &[f32]) -> f32 = chunk_sum_loop::<T0, { smallmm::prefetch_bytes(T0) }>
);

smallmm::widest_vectors!(
    /// One chunk's sum, prefetching into L2.
    fn chunk_sum_t1(chunk: &[f32]) -> f32 = chunk_sum_loop::<T1, { smallmm::prefetch_bytes(T1) }>
);

/// `_mm_prefetch`'s strategies, by their x86 values (`_MM_HINT_NTA`, `_MM_HINT_T0`, `_MM_HINT_T1`).
const NTA: i32 = 0;
const T0: i32 = 3;
const T1: i32 = 2;

/// 64 independent accumulators (four vectors of 16 lanes with AVX-512), and each cache line prefetched `AHEAD` bytes
/// ahead with `HINT`, as smallmm's kernel asks for its weights. The plain loop it replaces (16 accumulators, baseline
/// x86-64 vectors, no prefetch) read 36-43 GB/s where this one (then prefetching one line in four) read 42-48 GB/s
/// on the development machine, and 58-70 against 76-83 GB/s in a faster moment (medians of 15 calls, 4 rounds
/// alternating); a greedy decoding step had read faster than that probe (105% of the bound, docs/benchmarks.md).
#[inline(always)]
fn chunk_sum_loop<const HINT: i32, const AHEAD: usize>(chunk: &[f32]) -> f32 {
    let mut acc = [0.0f32; 64];
    let mut blocks = chunk.chunks_exact(64);
    for b in &mut blocks {
        for line in 0..4 {
            prefetch::<HINT>(b.as_ptr().wrapping_add(AHEAD / 4 + 16 * line));
        }
        for (a, x) in acc.iter_mut().zip(b) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + blocks.remainder().iter().sum::<f32>()
}

/// Asks for the cache line at `p` with `HINT` (a hint: it never faults, wherever `p` points).
#[inline(always)]
fn prefetch<const HINT: i32>(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing architecturally and cannot fault.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<HINT>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// What one cached decoding step has to read and compute, averaged over the steps of a call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepBytes {
    /// Every parameter of the language model once (the tied embedding once, as the output head).
    pub weights: f64,
    /// Keys and values of every layer over the cache the step attends to (a sliding-window layer only its window).
    pub kv: f64,
    /// Multiply-adds: each row against every weight matrix (norms left out) and, per query head, against the keys
    /// and the values it attends to.
    pub fmas: f64,
}

impl StepBytes {
    pub fn total(&self) -> f64 {
        self.weights + self.kv
    }
}

/// The bytes of one decoding step of a call that started from a `prefix`-token cache (image tokens and prompt,
/// padding included) and generated `new_tokens` positions for `rows` rows, in a dtype of `elem` bytes. Step `s`
/// (`1..new_tokens`) attends over `prefix + s` positions, or at most the window on sliding-window layers.
pub fn decode_step_bytes(
    cfg: &PaliGemmaConfig,
    elem: f64,
    rows: usize,
    prefix: usize,
    new_tokens: usize,
) -> StepBytes {
    let text = format!("{}.{}.", LANGUAGE[0], LANGUAGE[1]);
    let shapes: Vec<Vec<i64>> = cfg
        .parameter_shapes()
        .into_iter()
        .filter(|(name, _)| name.starts_with(&text))
        .map(|(_, shape)| shape)
        .collect();
    let params: i64 = shapes.iter().map(|s| s.iter().product::<i64>()).sum();
    let matrices: i64 = shapes.iter().filter(|s| s.len() == 2).map(|s| s[0] * s[1]).sum();
    let t = &cfg.text_config;
    let steps = new_tokens.saturating_sub(1).max(1);
    let mut positions = 0.0; // over layers and steps
    for layer in 0..t.num_hidden_layers as usize {
        let window = t.layer_window(layer).map(|w| w as usize);
        for s in 1..=steps {
            let len = prefix + s;
            positions += window.map_or(len, |w| len.min(w)) as f64;
        }
    }
    let positions = positions / steps as f64;
    let per_position = 2.0 * (t.num_key_value_heads * t.head_dim) as f64 * rows as f64;
    let attention = 2.0 * (t.num_attention_heads * t.head_dim) as f64 * rows as f64 * positions;
    StepBytes {
        weights: params as f64 * elem,
        kv: positions * per_position * elem,
        fmas: rows as f64 * matrices as f64 + attention,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_huge_page_probe_sums_its_ones() {
        let _alone = crate::rss::LARGE_ALLOCATIONS.lock().unwrap_or_else(|e| e.into_inner());
        let ones = HugePageOnes::new(3 << 20);
        assert_eq!(ones.as_slice().len(), 3 << 20);
        for (hint, chunk_sum) in CHUNK_SUMS {
            assert_eq!(sum(ones.as_slice(), chunk_sum), (3 << 20) as f32, "{hint}");
        }
    }

    #[test]
    fn step_bytes_count_the_text_weights_once_and_the_cache_by_layer() {
        let mut cfg = PaliGemmaConfig::tiny(64, 63);
        let t = cfg.text_config.clone();
        let b = decode_step_bytes(&cfg, 4.0, 3, 10, 5);
        let (h, kv) = (t.hidden_size, t.num_key_value_heads * t.head_dim);
        let q = t.num_attention_heads * t.head_dim;
        let layer = h * q * 2 + h * kv * 2 + 3 * h * t.intermediate_size;
        let norms = gemma::DecoderLayer::norm_names(t.architecture()).len() as i64 * h;
        let params = t.vocab_size * h + t.num_hidden_layers * (layer + norms) + h;
        assert_eq!(b.weights, params as f64 * 4.0);
        // Steps 1..4 attend over 11..14 positions: 12.5 on average, per layer, K and V, 3 rows.
        let expect = t.num_hidden_layers as f64 * 12.5 * 2.0 * kv as f64 * 4.0 * 3.0;
        assert!((b.kv - expect).abs() < 1e-9, "{} vs {expect}", b.kv);
        let matrices = t.vocab_size * h + t.num_hidden_layers * layer;
        let attention = t.num_hidden_layers as f64 * 12.5 * 2.0 * q as f64 * 3.0;
        assert!((b.fmas - (3 * matrices) as f64 - attention).abs() < 1e-6, "{}", b.fmas);
        // A window of 12 on every layer caps the last two steps.
        cfg.text_config = t.into_gemma2(12);
        cfg.text_config.layer_types = None;
        let w = decode_step_bytes(&cfg, 4.0, 3, 10, 5);
        let layers = cfg.text_config.num_hidden_layers as f64;
        let sliding = (layers / 2.0).ceil();
        let per = 2.0 * kv as f64 * 4.0 * 3.0;
        let expect =
            (sliding * (11.0 + 12.0 + 12.0 + 12.0) / 4.0 + (layers - sliding) * 12.5) * per;
        assert!((w.kv - expect).abs() < 1e-9, "{} vs {expect}", w.kv);
    }
}
