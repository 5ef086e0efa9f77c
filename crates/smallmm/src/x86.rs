//! The x86-64 backends: the kernel of `kernel.rs` in AVX2 + FMA (8 lanes) and AVX-512F (16 lanes) intrinsics. The
//! binary is built for plain x86-64; these functions carry `#[target_feature]` and are only called after
//! `is_x86_feature_detected!` said yes (`Backend::supported`).
//!
//! The AVX-512 functions enable AVX-512VL as well (every AVX-512 CPU since Skylake-SP has it, and `supported` asks
//! for it): without it, 256-bit instructions exist only in their VEX encoding, which reaches registers 0-15, and the
//! lane sums' first level takes each accumulator's low 256-bit half, so LLVM kept all of a tile's accumulators in
//! those 16 registers and 9 of the 8 × 3 tile's 24 on the stack, a load and a store around each of their fused
//! multiply-adds. With it the tile uses 28 of the 32 registers; the f32 output head at 24 rows went from 18-19.5 to
//! 9-10 ms (`tests/bench.rs`-like loop, same process state), at 8 rows from 7.6 to 6.3 ms.
//!
//! How the weights are prefetched depends on the CPU's maker ([`prefetch_hint`]). On AMD they are prefetched as
//! non-temporal (`prefetchnta`), 4 KB ahead: a decoding step's weights are each read once per step, and the output
//! head alone is larger than the last-level cache; fetched so, they stay out of L2 and L3, where the step's KV cache,
//! activations and x are. The head alone read as fast either way (`T0` vs `NTA`, f32, 1-24 rows, ratios to the read
//! probe within the noise); the mid-size greedy step at batch 8 was 4-12% faster in each of 4 alternating pairs of
//! `pgrs bench worker` runs (7.29-9.57 against 7.86-9.99 ms; AMD EPYC, Zen 5). On Intel, `prefetchnta` fills L1
//! only, and a line evicted from L1 before its loads is fetched from memory again: on a 2-core Xeon VM (AVX-512, AMX)
//! the f32 head (257,216 × 256, 2 threads) took 26-29 ms at 1 row against 10-11 ms with `prefetcht0`, 22-23 against
//! 13-14 at 8 rows, 37-38 against 25-26 at 24 (docs/benchmarks.md, issue 14, step 20). There the weights go to L2
//! (`prefetcht1`), 16 KB ahead: the L1 has few fill buffers for misses to memory, and lines waiting in L2 are a
//! short load away; on the same VM the f32 head at 1 row took 6.2-7.2 against 7.6-7.8 ms with `prefetcht0` 4 KB
//! ahead (step 22), the 16384 × 2048 f32 matrix 2.3-2.4 against 2.7-2.9 ms, 8 and 24 rows within the noise.
//! Tiles of several weight rows also move the next tile's lines from L2 into L1 while they run (`prefetcht0`,
//! `Isa::prefetch_near`): the mid-size model's calls in `pgrs bench worker`, alternating builds, greedy at batch 8
//! 620-627 against 640-657 ms, beam 3 at batch 1 401-423 against 408-443 ms (the f32 head at 3 and 8 rows, 4
//! rounds: 7.6-7.9 (8.9 once) against 8.2-8.7 ms and 10.1-10.4 against 10.4-11.1 ms). A single row's tiles (one
//! weight row) do without.
//!
//! bf16 weights with f32 rows of x are widened to f32 (a 16-bit shift, exact) and multiplied in f32. bf16 weights
//! with bf16 rows (a bf16 model's layers) take AVX-512 BF16's `vdpbf16ps` where the CPU has it ([`avx512_bf16`]):
//! twice the multiply-adds per instruction of f32's, and no widening; its order and rounding are `kernel::dot_pair`'s.
use crate::kernel::{weight_rows, Elem, Isa, Portable, Problem};
use std::arch::x86_64::*;

/// `Isa::stream` by `put`, which stores `I::LANES` values from its second pointer at its first (aligned to the
/// vector's size) with a streaming store: plain stores up to the first aligned address and after the last full
/// vector, so lines only partly in `dst` stay in the caches' hands.
#[inline(always)]
unsafe fn stream_with<I: Isa>(
    dst: *mut f32,
    src: *const f32,
    len: usize,
    put: impl Fn(*mut f32, *const f32),
) {
    let bytes = I::LANES * 4;
    let mut i = (dst.align_offset(bytes)).min(len);
    std::ptr::copy_nonoverlapping(src, dst, i);
    while i + I::LANES <= len {
        put(dst.add(i), src.add(i));
        i += I::LANES;
    }
    std::ptr::copy_nonoverlapping(src.add(i), dst.add(i), len - i);
}

/// Tests set the prefetch hint (one of `_MM_HINT_T0`, `_MM_HINT_T1`, `_MM_HINT_NTA`, plus 1; 0: the CPU's), so that
/// every kernel runs on any CPU. A hint never changes a result, so tests running meanwhile get the same bits either
/// way.
#[cfg(test)]
pub(crate) static HINT_FOR_TESTS: std::sync::atomic::AtomicI32 =
    std::sync::atomic::AtomicI32::new(0);

/// The weights' prefetch hint, as `_mm_prefetch`'s strategy: `_MM_HINT_NTA` on AMD, `_MM_HINT_T1` elsewhere (see the
/// module header), decided once.
pub(crate) fn prefetch_hint() -> i32 {
    #[cfg(test)]
    match HINT_FOR_TESTS.load(std::sync::atomic::Ordering::SeqCst) {
        0 => {}
        h => return h - 1,
    }
    static HINT: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    *HINT.get_or_init(|| {
        let id = __cpuid(0);
        let vendor: Vec<u8> =
            [id.ebx, id.edx, id.ecx].iter().flat_map(|r| r.to_le_bytes()).collect();
        if vendor == b"AuthenticAMD" {
            _MM_HINT_NTA
        } else {
            _MM_HINT_T1
        }
    })
}

/// AVX2 + FMA; `HINT`: the weights' prefetch hint ([`prefetch_hint`]).
#[derive(Clone, Copy)]
pub(crate) struct Avx2<const HINT: i32>;

impl<const HINT: i32> Isa for Avx2<HINT> {
    type V = __m256;
    const LANES: usize = 8;
    const PREFETCH_BYTES: usize = crate::prefetch_bytes(HINT);
    #[inline(always)]
    unsafe fn zero() -> __m256 {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> __m256 {
        let h = _mm_loadu_si128(p.cast());
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
    }
    #[inline(always)]
    unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fmadd_ps(a, b, c)
    }
    /// The portable backend's lanes: AVX2 has no bf16 dot product, and `Backend::runs` keeps pairs off this backend;
    /// this is here so that every `Isa` means the same thing by it.
    #[inline(always)]
    unsafe fn dot_bf16(acc: __m256, x: __m256, w: __m256) -> __m256 {
        let lanes = |v: __m256| std::mem::transmute::<__m256, [f32; 8]>(v);
        let sums = Portable::<8>::dot_bf16(lanes(acc), lanes(x), lanes(w));
        std::mem::transmute::<[f32; 8], __m256>(sums)
    }
    #[inline(always)]
    unsafe fn prefetch(p: *const u8) {
        _mm_prefetch::<HINT>(p.cast());
    }
    #[inline(always)]
    unsafe fn prefetch_near(p: *const u8) {
        if HINT == _MM_HINT_T1 {
            _mm_prefetch::<_MM_HINT_T0>(p.cast());
        }
    }
    #[inline(always)]
    unsafe fn stream(dst: *mut f32, src: *const f32, len: usize) {
        stream_with::<Self>(dst, src, len, |d, s| _mm256_stream_ps(d, _mm256_loadu_ps(s)));
    }
    #[inline(always)]
    unsafe fn fence() {
        _mm_sfence();
    }
    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        hsum8(v)
    }
    #[inline(always)]
    unsafe fn hsums(v: &[__m256], out: &mut [f32]) {
        for (v, out) in v.chunks(8).zip(out.chunks_mut(8)) {
            hsum8_x8(v, out);
        }
    }
}

/// `hsum8` of up to 8 vectors at once, by the same additions: each level adds the same pairs of lanes for two
/// vectors in one instruction, after shuffles that line them up (24 instructions for 8 sums instead of 48).
#[inline(always)]
unsafe fn hsum8_x8(v: &[__m256], out: &mut [f32]) {
    let mut a = [_mm256_setzero_ps(); 8];
    a[..v.len()].copy_from_slice(v);
    // Lane i + lane i + 4: [a0's 4 sums, a1's 4 sums] from (a0, a1).
    let mut p = [_mm256_setzero_ps(); 4];
    for (m, p) in p.iter_mut().enumerate().take(v.len().div_ceil(2)) {
        let (x, y) = (a[2 * m], a[2 * m + 1]);
        *p = _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(x, y),
            _mm256_permute2f128_ps::<0x31>(x, y),
        );
    }
    // Lane i + lane i + 2 within each 128-bit half, for two vectors.
    let half = |x: __m256, y: __m256| {
        _mm256_add_ps(_mm256_shuffle_ps::<0x44>(x, y), _mm256_shuffle_ps::<0xEE>(x, y))
    };
    let q0 = half(p[0], p[1]);
    let q1 = if v.len() > 4 { half(p[2], p[3]) } else { q0 };
    // Lane 0 + lane 1: lane 4k + q now holds the sum of vector 2q + k.
    let r = _mm256_add_ps(_mm256_shuffle_ps::<0x88>(q0, q1), _mm256_shuffle_ps::<0xDD>(q0, q1));
    let mut lanes = [0.0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), r);
    for (i, o) in out.iter_mut().enumerate() {
        *o = lanes[4 * (i % 2) + i / 2];
    }
}

/// Halving tree of 8 lanes: `i + 4`, then `i + 2`, then `i + 1`.
#[inline(always)]
unsafe fn hsum8(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
    _mm_cvtss_f32(s)
}

/// AVX-512F and VL; `HINT`: the weights' prefetch hint ([`prefetch_hint`]).
#[derive(Clone, Copy)]
pub(crate) struct Avx512<const HINT: i32>;

impl<const HINT: i32> Isa for Avx512<HINT> {
    type V = __m512;
    const LANES: usize = 16;
    const PREFETCH_BYTES: usize = crate::prefetch_bytes(HINT);
    #[inline(always)]
    unsafe fn zero() -> __m512 {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> __m512 {
        let h = _mm256_loadu_si256(p.cast());
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
    }
    #[inline(always)]
    unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_fmadd_ps(a, b, c)
    }
    /// `vdpbf16ps`; inlined only into functions that enable `avx512bf16` ([`avx512_bf16`]).
    #[inline(always)]
    unsafe fn dot_bf16(acc: __m512, x: __m512, w: __m512) -> __m512 {
        let pairs = |v: __m512| std::mem::transmute::<__m512, __m512bh>(v);
        _mm512_dpbf16_ps(acc, pairs(x), pairs(w))
    }
    #[inline(always)]
    unsafe fn prefetch(p: *const u8) {
        _mm_prefetch::<HINT>(p.cast());
    }
    #[inline(always)]
    unsafe fn prefetch_near(p: *const u8) {
        if HINT == _MM_HINT_T1 {
            _mm_prefetch::<_MM_HINT_T0>(p.cast());
        }
    }
    #[inline(always)]
    unsafe fn stream(dst: *mut f32, src: *const f32, len: usize) {
        stream_with::<Self>(dst, src, len, |d, s| _mm512_stream_ps(d, _mm512_loadu_ps(s)));
    }
    #[inline(always)]
    unsafe fn fence() {
        _mm_sfence();
    }
    /// Halving tree of 16 lanes: `i + 8` (the two 256-bit halves), then as AVX2.
    #[inline(always)]
    unsafe fn hsum(v: __m512) -> f32 {
        hsum8(halves_added(v))
    }
    /// The first level for each vector, then `hsum8_x8`. A 16-vector form that kept the first level in 512-bit
    /// registers measured no faster on the output head at 1-24 rows (alternating in one process).
    #[inline(always)]
    unsafe fn hsums(v: &[__m512], out: &mut [f32]) {
        for (v, out) in v.chunks(8).zip(out.chunks_mut(8)) {
            let mut h = [_mm256_setzero_ps(); 8];
            for (h, &v) in h.iter_mut().zip(v) {
                *h = halves_added(v);
            }
            hsum8_x8(&h[..v.len()], out);
        }
    }
}

/// Lane `i` + lane `i + 8` of 16: the first level of `Avx512::hsum`.
#[inline(always)]
unsafe fn halves_added(v: __m512) -> __m256 {
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    _mm256_add_ps(_mm512_castps512_ps256(v), hi)
}

/// AVX2 + FMA, 16 vector registers: tiles of 4 rows × 3 weight rows (12 accumulators, 3 weight vectors and 1 x
/// vector; 3 × 4 needs 17 and spills, measured 40% slower), and one weight row at a time for a single row (see
/// [`avx512_tiles`]; on the f32 head with AVX2 forced, three rounds: 40-43.5 against 31.6-34.9 GB/s).
///
/// # Safety
/// The CPU has AVX2 and FMA; otherwise as `kernel::weight_rows`.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn avx2<E: Elem>(p: &Problem<E>, j0: usize, j1: usize) {
    match prefetch_hint() {
        _MM_HINT_NTA => avx2_tiles::<E, _MM_HINT_NTA>(p, j0, j1),
        _MM_HINT_T0 => avx2_tiles::<E, _MM_HINT_T0>(p, j0, j1),
        _ => avx2_tiles::<E, _MM_HINT_T1>(p, j0, j1),
    }
}

#[inline(always)]
unsafe fn avx2_tiles<E: Elem, const HINT: i32>(p: &Problem<E>, j0: usize, j1: usize) {
    if p.rows == 1 {
        weight_rows::<Avx2<HINT>, E, 1, 1>(p, j0, j1);
    } else {
        weight_rows::<Avx2<HINT>, E, 4, 3>(p, j0, j1);
    }
}

/// AVX-512F, 32 vector registers: tiles of 4 rows × 4 weight rows (16 accumulators) up to 4 rows, 8 × 3 (24
/// accumulators, 3 weight vectors and 1 x vector) from 5 rows on. With more rows than a tile holds, each weight
/// vector is loaded again, from L1, for each further group of rows; 8 × 3 takes 8 rows in one group, with 11 loads per
/// 24 multiply-adds instead of 16 per 32. Measured again once the accumulators all lived in registers (AVX-512VL, see
/// the module header), on the f32 output head (257,216 × 256), two rounds each: 4 × 4 / 8 × 3 at 1, 3, 8, 24 rows
/// 5.6-5.7, 6.7-6.9, 7.4-8.0, 9.1-9.3 ms; 4 × 6 / 6 × 4 6.0-6.8, 7.2-7.4, 6.9-7.6, 10.6-10.7 ms; 2 × 8 / 8 × 3
/// 6.1-6.9, 8.1, 6.9-7.2, 9.2-9.9 ms (8 and 24 rows the same tile as the first: the machine's noise).
///
/// # Safety
/// The CPU has AVX-512F and AVX-512VL; otherwise as `kernel::weight_rows`.
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
pub(crate) unsafe fn avx512<E: Elem>(p: &Problem<E>, j0: usize, j1: usize) {
    avx512_hinted(p, j0, j1);
}

/// [`avx512_tiles`] with the CPU's prefetch hint ([`prefetch_hint`]).
#[inline(always)]
unsafe fn avx512_hinted<E: Elem>(p: &Problem<E>, j0: usize, j1: usize) {
    match prefetch_hint() {
        _MM_HINT_NTA => avx512_tiles::<E, _MM_HINT_NTA>(p, j0, j1),
        _MM_HINT_T0 => avx512_tiles::<E, _MM_HINT_T0>(p, j0, j1),
        _ => avx512_tiles::<E, _MM_HINT_T1>(p, j0, j1),
    }
}

/// The tiles of [`avx512`] and [`avx512_bf16`] with the prefetch hint `HINT`, inlined into each so that it runs with that function's features.
///
/// A single row (greedy decoding at batch 1) takes one weight row at a time: the weights are then read in memory
/// order, one stream, where 4 weight rows side by side make 4 streams a row's length apart; each output's sum is the
/// same chain either way, so the bits are too. On the f32 output head (257,216 × 256, in huge pages, 2 threads,
/// alternating builds, three rounds): 50.9-52.5 GB/s against 43.2-45.3 (the read probe of `bench generate` beside
/// them: 44.5-52.7 GB/s); with one thread (separate runs) 35.9-36.4 against 27.0-33.1. bf16 × bf16 on the same
/// head: 2.21-2.41 against 2.26-2.60 ms. From 2 rows on, a weight vector feeds several rows and the tiles win (at 3
/// and 8 rows one weight row at a time measured 21-24 and 11-13 GB/s against 28 on one thread).
#[inline(always)]
unsafe fn avx512_tiles<E: Elem, const HINT: i32>(p: &Problem<E>, j0: usize, j1: usize) {
    if p.rows == 1 {
        weight_rows::<Avx512<HINT>, E, 1, 1>(p, j0, j1);
    } else if p.rows <= 4 {
        weight_rows::<Avx512<HINT>, E, 4, 4>(p, j0, j1);
    } else {
        weight_rows::<Avx512<HINT>, E, 8, 3>(p, j0, j1);
    }
}

/// bf16 rows against bf16 weights ([`Bf16Pair`]) with AVX-512 BF16: the tiles of [`avx512`], each instruction now 32
/// multiply-adds.
///
/// # Safety
/// The CPU has AVX-512F, AVX-512VL and AVX-512 BF16; otherwise as `kernel::weight_rows`.
#[target_feature(enable = "avx512f,avx512vl,avx512bf16,avx2,fma")]
pub(crate) unsafe fn avx512_bf16<E: Elem>(p: &Problem<E>, j0: usize, j1: usize) {
    avx512_hinted(p, j0, j1);
}
