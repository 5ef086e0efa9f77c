//! The one kernel every backend runs: `out[r, j] = Σ_c x[r, c] · w[j, c]` over a range of weight rows `j`, written
//! once, generic over the vector instructions ([`Isa`]) and the weight element ([`Elem`]).
//!
//! Summation order, the property the tests rely on: every output has **one** vector accumulator of `LANES` lanes;
//! lane `l` adds `x[c]·w[c]` with a fused multiply-add for `c = l, l + LANES, …` over the full vectors of `k`, in
//! ascending `c`; the lanes are then summed as a halving tree (lane `i` += lane `i + LANES/2`, …, down to one) and the
//! last `k mod LANES` products are added one by one with a scalar fused multiply-add, in ascending `c`. Nothing of
//! that depends on which tile, how many rows, which thread or which chunk computed the output, so a row computed
//! alone is bit-identical to the same row computed among 31 others (issue 14: "batched = one by one"), and the
//! portable backend with the same lane count gives bit-identical results to the SIMD one.
//!
//! bf16 × bf16 ([`Bf16Pair`], on AVX-512 BF16): the vectors hold pairs of bf16, and `vdpbf16ps` replaces the fused
//! multiply-add. Lane `l` then takes the pairs `l, l + LANES, …` (elements `2l, 2l + 1`, then `2l + 2·LANES`, …), the
//! odd element of a pair first, each with a fused multiply-add that reads denormals as 0 and flushes denormal results
//! to 0 ([`dot_pair`]); the pairs past the last full vector go one by one the same way. That order, too, depends only
//! on `k` and the backend.
//!
//! Speed comes from tiling, not from splitting one sum: a tile holds `R × J` accumulators (R rows of x against J
//! weight rows), so each weight vector loaded from memory feeds R fused multiply-adds and each x vector J, and the
//! R·J independent chains hide the latency of the multiply-adds. A tile sweeps `k` in passes of `KC` columns (x's
//! slice stays in L1), parking its accumulators in a buffer between passes, which leaves every lane's order as
//! above, and prefetches the weights a few KB ahead of the pass it runs.

/// Vector instructions the kernel is written in. Everything is `#[inline(always)]` so that it lands inside the
/// `#[target_feature]` function of its backend (module `x86`), where the intrinsics are allowed to inline.
pub(crate) trait Isa {
    type V: Copy;
    const LANES: usize;
    /// How far ahead of the pass that runs its weights are prefetched, at least (whole passes, in the order the passes
    /// read the weights): 2 KB ahead was measured short (bf16 head: 11 → 14 GB/s at 8 rows with 4 KB, no gain from
    /// 8 KB); a backend whose prefetches go to L2 asks from farther (`crate::prefetch_bytes`).
    const PREFETCH_BYTES: usize = 4096;
    /// All lanes 0.
    unsafe fn zero() -> Self::V;
    /// `LANES` f32 from `p` (unaligned).
    unsafe fn load(p: *const f32) -> Self::V;
    /// `LANES` bf16 (their bits) from `p`, widened exactly to f32.
    unsafe fn load_bf16(p: *const u16) -> Self::V;
    /// `a · b + c`, rounded once per lane.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `vdpbf16ps`: each lane of `x` and `w` holds a pair of bf16 (the low half first in memory), and lane `l` of the
    /// result is [`dot_pair`]`(acc[l], x[l], w[l])`.
    unsafe fn dot_bf16(acc: Self::V, x: Self::V, w: Self::V) -> Self::V;
    /// The lanes summed as a halving tree (see the module header).
    unsafe fn hsum(v: Self::V) -> f32;
    /// `out[i] = hsum(v[i])` for each `i`, bit for bit (`v` and `out` of the same length, at most 32). Backends
    /// override it to sum several vectors' lanes at once: the same additions, fewer instructions.
    #[inline(always)]
    unsafe fn hsums(v: &[Self::V], out: &mut [f32]) {
        for (o, &v) in out.iter_mut().zip(v) {
            *o = Self::hsum(v);
        }
    }
    /// Asks for the cache line at `p` (any address: a hint never faults), to be read once.
    #[inline(always)]
    unsafe fn prefetch(_p: *const u8) {}
    /// Asks for the cache line at `p`, of the next tile, to be moved into L1 where `prefetch` leaves lines in L2.
    #[inline(always)]
    unsafe fn prefetch_near(_p: *const u8) {}
    /// Copies `len` values from `src` to `dst`, whose whole cache lines may bypass the caches (streaming stores).
    #[inline(always)]
    unsafe fn stream(dst: *mut f32, src: *const f32, len: usize) {
        std::ptr::copy_nonoverlapping(src, dst, len);
    }
    /// Orders this thread's streaming stores before its later stores (they are weakly ordered), so that whoever
    /// synchronises with the thread afterwards sees them.
    #[inline(always)]
    unsafe fn fence() {}
}

/// A weight element: f32, bf16 stored as its 16 bits (`u16`, as libtorch stores `BFloat16`) and multiplied by f32
/// rows, or a pair of bf16 ([`Bf16Pair`]) multiplied by pairs of bf16.
pub(crate) trait Elem: Copy + Send + Sync {
    /// An element of x's rows: f32, or for [`Bf16Pair`] a pair of bf16 too.
    type X: Copy + Send + Sync;
    /// Whether the kernel needs AVX-512 BF16 (`vdpbf16ps`).
    const PAIRS: bool = false;
    /// `LANES` weight elements from `p`, as the vector the products take.
    unsafe fn load<I: Isa>(p: *const Self) -> I::V;
    /// `LANES` elements of x from `p`.
    unsafe fn load_x<I: Isa>(p: *const Self::X) -> I::V;
    /// `acc + x · w` lane by lane, in this element's way.
    #[inline(always)]
    unsafe fn madd<I: Isa>(x: I::V, w: I::V, acc: I::V) -> I::V {
        I::fma(x, w, acc)
    }
    /// `s + x · w` for one element past the last full vector, as one lane of `madd` adds it.
    fn madd_one(x: Self::X, w: Self, s: f32) -> f32;
}

impl Elem for f32 {
    type X = f32;
    #[inline(always)]
    unsafe fn load<I: Isa>(p: *const Self) -> I::V {
        I::load(p)
    }
    #[inline(always)]
    unsafe fn load_x<I: Isa>(p: *const f32) -> I::V {
        I::load(p)
    }
    #[inline(always)]
    fn madd_one(x: f32, w: f32, s: f32) -> f32 {
        x.mul_add(w, s)
    }
}

impl Elem for u16 {
    type X = f32;
    #[inline(always)]
    unsafe fn load<I: Isa>(p: *const Self) -> I::V {
        I::load_bf16(p)
    }
    #[inline(always)]
    unsafe fn load_x<I: Isa>(p: *const f32) -> I::V {
        I::load(p)
    }
    /// bf16 is the top half of an f32: widening is exact.
    #[inline(always)]
    fn madd_one(x: f32, w: u16, s: f32) -> f32 {
        x.mul_add(bf16_to_f32(w), s)
    }
}

/// Two consecutive bf16 (their bits), elements `2i` and `2i + 1` of a row: the unit `vdpbf16ps` multiplies. A row
/// of `k` bf16 is `k / 2` pairs (`k` even); the alignment stays a bf16's, so any bf16 slice of even length is one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub(crate) struct Bf16Pair(pub [u16; 2]);

impl Elem for Bf16Pair {
    type X = Bf16Pair;
    const PAIRS: bool = true;
    #[inline(always)]
    unsafe fn load<I: Isa>(p: *const Self) -> I::V {
        I::load(p.cast())
    }
    #[inline(always)]
    unsafe fn load_x<I: Isa>(p: *const Bf16Pair) -> I::V {
        I::load(p.cast())
    }
    #[inline(always)]
    unsafe fn madd<I: Isa>(x: I::V, w: I::V, acc: I::V) -> I::V {
        I::dot_bf16(acc, x, w)
    }
    #[inline(always)]
    fn madd_one(x: Bf16Pair, w: Bf16Pair, s: f32) -> f32 {
        dot_pair(s, x, w)
    }
}

/// bf16 bits widened to the f32 they are the top half of (exact).
#[inline(always)]
pub(crate) fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// One lane of `vdpbf16ps` as Intel's SDM specifies it: `acc += x[1]·w[1]`, then `acc += x[0]·w[0]`, each a fused
/// multiply-add rounded to nearest even that reads denormal inputs as 0 and flushes a denormal result to 0 (the MXCSR
/// plays no part). The project's Zen 5 machine gave the same bits on 3.2 M random lanes, exponents from -125 to 125;
/// summing the pair first, in f64, differed in 5% of them.
#[inline(always)]
pub(crate) fn dot_pair(acc: f32, x: Bf16Pair, w: Bf16Pair) -> f32 {
    fn flush(v: f32) -> f32 {
        if v.is_subnormal() {
            0.0f32.copysign(v)
        } else {
            v
        }
    }
    let f = |h: u16| flush(bf16_to_f32(h));
    let s = flush(f(x.0[1]).mul_add(f(w.0[1]), flush(acc)));
    flush(f(x.0[0]).mul_add(f(w.0[0]), s))
}

/// Where the sums go: `out[r, j]` at `ptr + (r - row0) · stride + (j - col0)`. The call's output (`[rows, n]`), shared
/// by its threads, each writing only its own weight rows' columns; or a thread's staging buffer for a block of it.
/// The call's output may hold bf16 (`bf16`): each sum is then rounded as it is written.
#[derive(Clone, Copy)]
pub(crate) struct Out {
    /// f32 values, or bf16 bits when `bf16`.
    ptr: *mut f32,
    bf16: bool,
    stride: usize,
    row0: usize,
    col0: usize,
}
// SAFETY: `matmul_on` hands disjoint column ranges to the threads, so no element is written twice or read.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

/// What the sums are written as: f32, or bf16 bits (`u16`) rounded to nearest even.
pub(crate) trait Sum: Copy {
    /// The whole output, `[rows, n]` row-major.
    fn out(out: &mut [Self], n: usize) -> Out;
}

impl Sum for f32 {
    fn out(out: &mut [f32], n: usize) -> Out {
        Out { ptr: out.as_mut_ptr(), bf16: false, stride: n, row0: 0, col0: 0 }
    }
}

impl Sum for u16 {
    fn out(out: &mut [u16], n: usize) -> Out {
        Out { ptr: out.as_mut_ptr().cast(), bf16: true, stride: n, row0: 0, col0: 0 }
    }
}

impl Out {
    /// Whether the sums are written as bf16.
    pub(crate) fn is_bf16(&self) -> bool {
        self.bf16
    }

    /// Where `out[r, j]` goes, counted in elements.
    #[inline(always)]
    fn index(&self, r: usize, j: usize) -> usize {
        (r - self.row0) * self.stride + (j - self.col0)
    }

    /// Where `out[r, j]` goes in an f32 output (a staging buffer).
    #[inline(always)]
    unsafe fn at(&self, r: usize, j: usize) -> *mut f32 {
        self.ptr.add(self.index(r, j))
    }

    /// Writes `out[r, j]`.
    #[inline(always)]
    unsafe fn put(&self, r: usize, j: usize, v: f32) {
        if self.bf16 {
            *self.ptr.cast::<u16>().add(self.index(r, j)) = f32_to_bf16(v);
        } else {
            *self.at(r, j) = v;
        }
    }

    /// Writes `out[r, j..j + len]` from `len` staged f32: with streaming stores, or rounded to bf16 (half the bytes,
    /// through the caches).
    #[inline(always)]
    unsafe fn put_run<I: Isa>(&self, r: usize, j: usize, src: *const f32, len: usize) {
        if self.bf16 {
            let dst = self.ptr.cast::<u16>().add(self.index(r, j));
            for i in 0..len {
                *dst.add(i) = f32_to_bf16(*src.add(i));
            }
        } else {
            I::stream(self.at(r, j), src, len);
        }
    }
}

/// f32 rounded to bf16 (nearest, ties to even; NaN to the quiet NaN 0x7FC0), as libtorch's `BFloat16` conversion
/// (`c10::detail::round_to_nearest_even`).
#[inline(always)]
pub(crate) fn f32_to_bf16(v: f32) -> u16 {
    if v.is_nan() {
        return 0x7FC0;
    }
    let b = v.to_bits();
    (b.wrapping_add(0x7FFF + ((b >> 16) & 1)) >> 16) as u16
}

/// One call's operands: `x [rows, k]` and `w [n, k]` row-major, `out [rows, n]` row-major. The public functions
/// check the lengths before building it.
#[derive(Clone, Copy)]
pub(crate) struct Problem<'a, E: Elem> {
    pub x: &'a [E::X],
    pub rows: usize,
    pub k: usize,
    pub w: &'a [E],
    pub n: usize,
    pub out: Out,
    /// Whether the sums are staged per block and written to `out` with streaming stores ([`weight_rows`]).
    pub stream: bool,
    /// Gemma 2's final soft-capping `c · tanh(s / c)` ([`crate::math::softcap`]) of every sum before it is written,
    /// with `c` this; f32 outputs only.
    pub cap: Option<f32>,
}

/// Columns per pass over a tile (a multiple of every lane count): the pass's slice of x, 32 rows × 256 × 4 bytes, and
/// of the tile's weights stay in L1 (48 KB on Zen 5) however large `k` is. Splitting `k` into passes keeps each
/// lane's accumulator in memory between passes, so the order of the sums is unchanged.
const KC: usize = 256;

/// Rows of x per block: the accumulators of one block of rows live in a stack buffer of this many rows.
const ROW_BLOCK: usize = 32;

/// Columns of a staging buffer (`Problem::stream`): a multiple of the tile widths (3, 4) and of a cache line's 16
/// values, so that a block of columns starting on a whole line fills whole lines. 32 rows × 96 × 4 bytes = 12 KB.
pub(crate) const STAGE_COLS: usize = 96;

/// Weight rows `j0..j1` against all rows of x: tiles of `J` weight rows (the rows past the last full `J` one at a
/// time), each swept by the rows of x in groups of `R ≤ 8` (the rows left in one smaller group).
///
/// # Safety
/// `j0 ≤ j1 ≤ n`, no other thread writes these columns, and `I`'s instructions are available (the caller is a
/// `#[target_feature]` function that checked them, or `I` is portable).
#[inline(always)]
pub(crate) unsafe fn weight_rows<I: Isa, E: Elem, const R: usize, const J: usize>(
    p: &Problem<E>,
    j0: usize,
    j1: usize,
) {
    const { assert!(R <= 8, "the rows left after the full groups go in one group of 1-7") };
    if p.k / I::LANES * I::LANES <= KC {
        // One pass covers k (the mid-size models' k = 256): the accumulators stay in registers, and no buffer is
        // zeroed (8 KB per call, which for the thousands of blocks of a decoding step took 4% of its CPU time).
        return weight_rows_in::<I, E, R, J>(p, j0, j1, &mut [], &mut []);
    }
    let mut acc = [[I::zero(); J]; ROW_BLOCK];
    let mut acc1 = [[I::zero(); 1]; ROW_BLOCK];
    weight_rows_in::<I, E, R, J>(p, j0, j1, &mut acc, &mut acc1);
}

/// `weight_rows` with the buffers the accumulators are parked in between passes (empty when one pass covers `k`).
#[inline(always)]
unsafe fn weight_rows_in<I: Isa, E: Elem, const R: usize, const J: usize>(
    p: &Problem<E>,
    j0: usize,
    j1: usize,
    acc: &mut [[I::V; J]],
    acc1: &mut [[I::V; 1]],
) {
    let ahead = Ahead::new::<E>(I::PREFETCH_BYTES, p.k / I::LANES * I::LANES, J, p.n);
    let mut stage = std::mem::MaybeUninit::<[f32; ROW_BLOCK * STAGE_COLS]>::uninit();
    let stage = stage.as_mut_ptr().cast::<f32>();
    // Without streaming, all columns in one go. One call of `tiles` below, not one per case: two inlined copies of
    // the tile loops left the optimiser spilling accumulators (measured 1.9x slower at 24 rows).
    let chunk = if p.stream { STAGE_COLS } else { (j1 - j0).max(1) };
    for r0 in (0..p.rows).step_by(ROW_BLOCK) {
        let rows = r0..(r0 + ROW_BLOCK).min(p.rows);
        for ja in (j0..j1).step_by(chunk) {
            let jb = (ja + chunk).min(j1);
            let staged = Out { ptr: stage, bf16: false, stride: STAGE_COLS, row0: r0, col0: ja };
            let q = Problem { out: if p.stream { staged } else { p.out }, ..*p };
            tiles::<I, E, R, J>(&q, rows.clone(), ja..jb, &ahead, acc, acc1);
            if let Some(cap) = p.cap {
                for r in rows.clone() {
                    // Every value of these rows and columns was just written by `finish`, as f32.
                    softcap_run(q.out.at(r, ja), jb - ja, cap);
                }
            }
            if p.stream {
                for r in rows.clone() {
                    // Every value of these rows and columns was just written by `finish`.
                    p.out.put_run::<I>(r, ja, staged.at(r, ja), jb - ja);
                }
            }
        }
    }
    if p.stream {
        I::fence();
    }
}

/// `v ← c · tanh(v / c)` for the `len` values at `run`, by [`crate::math::softcap_in_place`] (a call, not inlined
/// here: inlined, its registers left the tiles' loops slower, a PaliGemma 2 step at 8 rows 9.5-9.8 → 11-12.5 ms). The
/// sums are finished first, so a capped output is the plain one capped, the same bits as capping the product
/// afterwards, in a pass over values still in L1.
#[inline(always)]
unsafe fn softcap_run(run: *mut f32, len: usize, cap: f32) {
    crate::math::softcap_in_place(std::slice::from_raw_parts_mut(run, len), cap);
}

/// Columns `js` of `rows`: tiles of `J` weight rows, the rows past the last full `J` one at a time.
#[inline(always)]
unsafe fn tiles<I: Isa, E: Elem, const R: usize, const J: usize>(
    p: &Problem<E>,
    rows: std::ops::Range<usize>,
    js: std::ops::Range<usize>,
    ahead: &Ahead,
    acc: &mut [[I::V; J]],
    acc1: &mut [[I::V; 1]],
) {
    let mut j = js.start;
    while j + J <= js.end {
        weight_tile::<I, E, R, J>(p, rows.clone(), j, ahead, acc);
        j += J;
    }
    while j < js.end {
        weight_tile::<I, E, R, 1>(p, rows.clone(), j, &Ahead::NONE, acc1);
        j += 1;
    }
}

/// `out[rows, j..j + J]`: passes of `KC` columns over the full vectors of `k`, the last finishing the sums. While the
/// first rows of a pass run, the weights of a later pass (`ahead`) are prefetched: the hardware prefetcher alone
/// leaves the multiply-adds waiting on memory once a tile is read by several groups of rows (measured on 8 rows of
/// the f32 head: 13 → 27 GB/s).
#[inline(always)]
unsafe fn weight_tile<I: Isa, E: Elem, const R: usize, const J: usize>(
    p: &Problem<E>,
    rows: std::ops::Range<usize>,
    j: usize,
    ahead: &Ahead,
    acc: &mut [[I::V; J]],
) {
    let (k, full) = (p.k, p.k / I::LANES * I::LANES);
    if full == 0 {
        // No full vector: the sums are the one-by-one products of `finish` alone.
        for r in rows {
            for jj in 0..J {
                finish(p, r, j + jj, 0.0, full);
            }
        }
        return;
    }
    let tile = p.w.as_ptr().add(j * k);
    let mut c0 = 0;
    while c0 < full {
        let c1 = (c0 + KC).min(full);
        let next = ahead.of(j, c0).map_or(std::ptr::null(), |(j, c)| p.w.as_ptr().add(j * k + c));
        let span = Span { j, cols: c0..c1, full };
        let mut r = rows.start;
        while r < rows.end {
            let acc = acc.get_mut(r - rows.start..).unwrap_or_default();
            let pf = if r == rows.start { next } else { std::ptr::null() };
            r += match rows.end - r {
                left if left >= R => pass::<I, E, R, J>(p, r, tile, &span, pf, acc),
                1 => pass::<I, E, 1, J>(p, r, tile, &span, pf, acc),
                2 => pass::<I, E, 2, J>(p, r, tile, &span, pf, acc),
                3 => pass::<I, E, 3, J>(p, r, tile, &span, pf, acc),
                4 => pass::<I, E, 4, J>(p, r, tile, &span, pf, acc),
                5 => pass::<I, E, 5, J>(p, r, tile, &span, pf, acc),
                6 => pass::<I, E, 6, J>(p, r, tile, &span, pf, acc),
                _ => pass::<I, E, 7, J>(p, r, tile, &span, pf, acc),
            };
        }
        c0 = c1;
    }
}

/// Where a pass runs: the tile's first weight row `j`, its columns, and the end of `k`'s full vectors. The first
/// pass of a tile starts its sums at zero, the last finishes them; passes in between park them in `acc`.
struct Span {
    j: usize,
    cols: std::ops::Range<usize>,
    full: usize,
}

/// Which pass to prefetch for: `passes` passes later in the order the weights are read (the passes of a tile, then
/// those of the next tile), up to the last weight row: past the end of this thread's block too, since the pool gives a
/// thread runs of consecutive blocks (measured with rayon, which does too: 1 row of 16384 × 2048 f32, 5.25 → 4.9 ms).
struct Ahead {
    passes: usize,
    per_tile: usize,
    j: usize,
    j_end: usize,
}

impl Ahead {
    const NONE: Ahead = Ahead { passes: 0, per_tile: 1, j: 1, j_end: 0 };

    /// `bytes` ahead, for tiles of `j` rows over the `full` columns of complete vectors, in rows up to `j_end`
    /// (exclusive).
    fn new<E>(bytes: usize, full: usize, j: usize, j_end: usize) -> Ahead {
        let pass_bytes = j * KC.min(full).max(1) * std::mem::size_of::<E>();
        Ahead { passes: bytes.div_ceil(pass_bytes), per_tile: full.div_ceil(KC).max(1), j, j_end }
    }

    /// (first weight row, first column) of the pass to prefetch while the pass at (`j`, `c0`) runs.
    #[inline(always)]
    fn of(&self, j: usize, c0: usize) -> Option<(usize, usize)> {
        let pass = c0 / KC + self.passes;
        let j = j + pass / self.per_tile * self.j;
        (j + self.j <= self.j_end).then_some((j, pass % self.per_tile * KC))
    }
}

/// Rows `r..r + R` of x against the tile's `J` weight rows over the span's columns: the sums start at zero on the
/// tile's first pass (else from `acc[..R]`) and are finished into `out` on its last (else parked in `acc[..R]`);
/// prefetches the same shape of weights at `pf` (unless null). Returns `R`.
#[inline(always)]
unsafe fn pass<I: Isa, E: Elem, const R: usize, const J: usize>(
    p: &Problem<E>,
    r: usize,
    tile: *const E,
    span: &Span,
    pf: *const E,
    acc: &mut [[I::V; J]],
) -> usize {
    let (k, cols) = (p.k, span.cols.clone());
    let x = p.x.as_ptr().add(r * k);
    let mut a = [[I::zero(); J]; R];
    if cols.start > 0 {
        a.copy_from_slice(&acc[..R]);
    }
    let mut c = cols.start;
    while c < cols.end {
        if !pf.is_null() {
            for jj in 0..J {
                I::prefetch(pf.wrapping_add(jj * k + c - cols.start).cast());
                if J > 1 {
                    I::prefetch_near(tile.wrapping_add((J + jj) * k + c).cast());
                }
            }
        }
        // Plain loops, not `array::from_fn`: a closure the optimiser does not inline would leave the intrinsics in
        // a function without the target features, as calls.
        let mut wv = [I::zero(); J];
        for (jj, v) in wv.iter_mut().enumerate() {
            *v = E::load::<I>(tile.add(jj * k + c));
        }
        for (rr, a_r) in a.iter_mut().enumerate() {
            let xv = E::load_x::<I>(x.add(rr * k + c));
            for (a, &w) in a_r.iter_mut().zip(&wv) {
                *a = E::madd::<I>(xv, w, *a);
            }
        }
        c += I::LANES;
    }
    if cols.end < span.full {
        acc[..R].copy_from_slice(&a);
        return R;
    }
    let mut sums = [0.0f32; 8 * 4];
    let sums = &mut sums[..R * J];
    I::hsums(a.as_flattened(), sums);
    for rr in 0..R {
        for jj in 0..J {
            finish(p, r + rr, span.j + jj, sums[rr * J + jj], span.full);
        }
    }
    R
}

/// `out[r, j]`: `sum` (the lanes of the output's accumulator, summed), then the columns past the last full vector
/// added one by one.
#[inline(always)]
unsafe fn finish<E: Elem>(p: &Problem<E>, r: usize, j: usize, sum: f32, full: usize) {
    let (x, w) = (p.x.as_ptr().add(r * p.k), p.w.as_ptr().add(j * p.k));
    let mut s = sum;
    for c in full..p.k {
        s = E::madd_one(*x.add(c), *w.add(c), s);
    }
    p.out.put(r, j, s);
}

/// Plain Rust with the lane count and order of a SIMD backend (8: AVX2, 16: AVX-512): the fallback off x86-64 and
/// the bit-exact reference of the tests. `f32::mul_add` is a fused multiply-add everywhere (a libm call where the
/// CPU has none).
#[derive(Clone, Copy)]
pub(crate) struct Portable<const L: usize>;

impl<const L: usize> Isa for Portable<L> {
    type V = [f32; L];
    const LANES: usize = L;
    #[inline(always)]
    unsafe fn zero() -> Self::V {
        [0.0; L]
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self::V {
        p.cast::<[f32; L]>().read_unaligned()
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u16) -> Self::V {
        let h = p.cast::<[u16; L]>().read_unaligned();
        h.map(bf16_to_f32)
    }
    #[inline(always)]
    unsafe fn fma(a: Self::V, b: Self::V, mut c: Self::V) -> Self::V {
        for l in 0..L {
            c[l] = a[l].mul_add(b[l], c[l]);
        }
        c
    }
    #[inline(always)]
    unsafe fn dot_bf16(mut acc: Self::V, x: Self::V, w: Self::V) -> Self::V {
        let pair = |v: f32| Bf16Pair([v.to_bits() as u16, (v.to_bits() >> 16) as u16]);
        for l in 0..L {
            acc[l] = dot_pair(acc[l], pair(x[l]), pair(w[l]));
        }
        acc
    }
    #[inline(always)]
    unsafe fn hsum(mut v: Self::V) -> f32 {
        let mut half = L / 2;
        while half > 0 {
            for i in 0..half {
                v[i] += v[i + half];
            }
            half /= 2;
        }
        v[0]
    }
}

/// The portable backend's entry point (the x86 ones are in crate `x86`): tiles of 2 rows × 4 weight rows.
///
/// # Safety
/// As [`weight_rows`].
pub(crate) unsafe fn portable<E: Elem, const L: usize>(p: &Problem<E>, j0: usize, j1: usize) {
    weight_rows::<Portable<L>, E, 2, 4>(p, j0, j1);
}
