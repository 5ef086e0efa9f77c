//! `y = x Wᵀ` for a few rows of x (≤ 32: decoding steps, batch × beams) on CPU, at the speed of reading W.
//!
//! Issue 14: libtorch's BLAS runs the output head's product for one decoding step (f32, 257,216 × 256) at 6-7 GB/s of
//! weights read on the project's 2-core AMD machine, while reading the table runs at 26-30 GB/s. With 1-32 rows a
//! product is one pass over the weights, so the right kernel is a streaming one: each weight row is loaded once and
//! meets every row of x while it is in L1 (the classic "GEMV with several right-hand sides"; the register tiling
//! follows the micro-kernels of BLIS / Goto & van de Geijn, "Anatomy of high-performance matrix multiplication",
//! 2008, with the weight matrix streamed instead of packed, since it is read once).
//!
//! - [`matmul_rows_f32`] / [`matmul_rows_bf16`]: the kernels on plain slices (no libtorch), weights row-major
//!   `[n, k]` as `nn.Linear` and the tied embedding store them; f32 accumulation, bf16 weights widened exactly.
//!   [`matmul_rows_bf16_dot`]: bf16 rows and bf16 weights by AVX-512 BF16's dot products ([`bf16_dot`] says where).
//! - [`linear`] (feature `tch`, on by default): the same on tensors, `None` where the shape, dtype, device, layout,
//!   autograd or the [`chosen`] rule says libtorch should do it, so callers write
//!   `smallmm::linear(x, w).unwrap_or_else(|| x.linear::<Tensor>(w, None))`.
//! - [`math`]: Cephes-style `exp` / `tanh` and a lane-wise fold that vectorise, for the decoding step's element-wise
//!   passes in `gemma` and `paligemma`.
//! - Threads: the calling thread and the helpers of [`pool`] (as many in all as rayon's global pool,
//!   `RAYON_NUM_THREADS`, default one per CPU), which stay awake between a decoding step's products, over blocks of
//!   weight rows; weights under 128 KB on the calling thread. `gemma`'s decoding attention and `paligemma::select` run
//!   their loops there too.
//! - Backends: chosen at run time from the CPU (`is_x86_feature_detected!`), the binary stays plain x86-64:
//!   AVX-512F with AVX-512VL, else AVX2 + FMA, else none for [`linear`] (portable Rust for the slice functions; on
//!   aarch64 too); bf16 rows by bf16 weights on AVX-512 BF16 where the CPU has it, else widened to f32. bf16 results
//!   are rounded as they are written (libtorch's rounding), so a bf16 product makes no f32 copy of its output.
//! - `PGRS_SMALLMM=0` in the environment turns [`linear`] off (read once per process), and with it the other
//!   decoding-step kernels that ask [`enabled`] (`gemma`'s RMSNorm and RoPE rows, final soft-capping and
//!   attention, `paligemma::select`).
//!
//! Results: each output is summed in an order that depends only on `k` and the backend (see `kernel.rs`), so a row
//! computed alone equals it computed in a batch bit for bit. The order differs from MKL's, so results differ from
//! libtorch's by rounding: measured relative to the row's largest |output| (the measure the tests use; a single
//! output near 0 can differ by more of itself while being as exact as libtorch's), below 1e-6 at k = 256-16384 in
//! f32, where libtorch's own error against f64 sums is 3-5e-7 (the tests assert 1e-5, issue 14's bound).
//!
//! Speed on the project's 2-core Zen 5 VM (`tests/bench.rs`): the f32 output head of the mid-size model (257,216 ×
//! 256, 263 MB) at 1-8 rows in 5-11 ms (25-52 GB/s, one row the fastest: its weights are read as one stream; one
//! plain read of the table: 32-55 GB/s), at 24-32 rows in 9-13 ms (where the multiply-adds bound it: 24 rows at
//! about 68% of the peak loop's rate), against 9-54 ms for libtorch as `gemma` computes it today. Beware that
//! libtorch's OpenMP workers spin for milliseconds after each parallel op (libgomp's default wait policy) and take a
//! core from this crate's threads when it runs right after one: `OMP_WAIT_POLICY=PASSIVE` gives it back (measured
//! on the head right after a libtorch op: 1 row 22 → 33 GB/s, 8 rows 18 → 26 GB/s; libtorch's own head unchanged).
//! On a 2-core Xeon VM (Intel, AVX-512 and AMX; one core reads at about half the speed of two), the same head at 1-3
//! rows in 8-10 ms (27-33 GB/s, at the plain read's 26-34), 8 rows 10-12 ms, 24 rows 20-22 ms (about 45% of the
//! peak multiply-add rate), against 10.5-37 ms for libtorch's MKL; the weights' prefetch hint is chosen by the
//! CPU's maker there (`x86.rs`).
mod kernel;
pub mod math;
pub mod pool;
#[cfg(feature = "tch")]
mod torch;
#[cfg(target_arch = "x86_64")]
mod x86;

use kernel::{Bf16Pair, Elem, Problem, Sum};
use std::sync::OnceLock;
#[cfg(feature = "tch")]
pub use torch::{linear, linear_softcapped, records_gradient, takes_rows, try_linear};

/// The most rows of x [`chosen`] hands to this crate: decoding's batch × beams.
pub const MAX_ROWS: usize = 32;

/// How far ahead the kernel asks for its weights with the prefetch hint `hint` (`_mm_prefetch`'s strategy, its x86
/// value): 16 KB when they go to L2 (`_MM_HINT_T1`, 2), else 4 KB, L1 holding less (`x86.rs`). `bench`'s read probe
/// prefetches as far ahead.
pub const fn prefetch_bytes(hint: i32) -> usize {
    const T1: i32 = 2;
    if hint == T1 {
        16384
    } else {
        4096
    }
}

/// The environment variable that turns [`linear`] off when set to `0` (or `false`, `off`).
const ENV_VAR: &str = "PGRS_SMALLMM";

/// How the kernel runs. Each backend has its own summation order (its lane count), fixed for the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// AVX-512F and AVX-512VL, 16 lanes.
    Avx512,
    /// AVX2 + FMA, 8 lanes.
    Avx2,
    /// Plain Rust in the order of [`Backend::Avx512`] (bit-identical to it; for tests).
    Portable16,
    /// Plain Rust in the order of [`Backend::Avx2`] (bit-identical to it): the fallback off x86-64.
    Portable8,
}

impl Backend {
    /// The fastest backend this CPU runs (detected once).
    pub fn best() -> Backend {
        static BEST: OnceLock<Backend> = OnceLock::new();
        *BEST.get_or_init(|| {
            [Backend::Avx512, Backend::Avx2]
                .into_iter()
                .find(|b| b.supported())
                .unwrap_or(Backend::Portable8)
        })
    }

    /// Whether this CPU runs the backend.
    pub fn supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512vl")
                    && Backend::Avx2.supported()
            }
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(not(target_arch = "x86_64"))]
            Backend::Avx512 | Backend::Avx2 => false,
            Backend::Portable16 | Backend::Portable8 => true,
        }
    }

    /// Whether it uses vector instructions: only those beat libtorch, so [`linear`] needs one.
    pub fn is_simd(self) -> bool {
        matches!(self, Backend::Avx512 | Backend::Avx2)
    }

    /// Whether the backend multiplies bf16 rows by bf16 weights in pairs ([`matmul_rows_bf16_dot`]): AVX-512 with
    /// AVX-512 BF16 (`vdpbf16ps`), and the portable backends, which follow it lane by lane.
    pub fn runs_bf16_dot(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => self.supported() && is_x86_feature_detected!("avx512bf16"),
            Backend::Portable16 | Backend::Portable8 => true,
            _ => false,
        }
    }

    /// Whether the backend runs weights of type `E` on this CPU.
    fn runs<E: Elem>(self) -> bool {
        if E::PAIRS {
            self.runs_bf16_dot()
        } else {
            self.supported()
        }
    }

    /// The kernel over weight rows `j0..j1` for weights of type `E`.
    fn kernel<E: Elem>(self) -> unsafe fn(&Problem<E>, usize, usize) {
        assert!(self.runs::<E>(), "smallmm: this CPU cannot run {self:?} here");
        match self {
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 if E::PAIRS => x86::avx512_bf16::<E>,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => x86::avx512::<E>,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => x86::avx2::<E>,
            Backend::Portable16 => kernel::portable::<E, 16>,
            Backend::Portable8 => kernel::portable::<E, 8>,
            #[allow(unreachable_patterns)] // off x86-64, where `supported` already refused them
            _ => unreachable!(),
        }
    }
}

/// Whether `PGRS_SMALLMM` allows [`linear`] and the other decoding-step kernels (read once).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| switch_on(std::env::var(ENV_VAR).ok().as_deref()))
}

/// `PGRS_SMALLMM`'s value read as a switch: unset or anything but `0`, `false`, `off`, `no` is on.
fn switch_on(value: Option<&str>) -> bool {
    !matches!(
        value.map(|v| v.trim().to_ascii_lowercase()).as_deref(),
        Some("0" | "false" | "off" | "no")
    )
}

/// Whether bf16 × bf16 products with `k` columns run on AVX-512 BF16's dot products here ([`matmul_rows_bf16_dot`]
/// on the [`Backend::best`] backend): the CPU has it and `k` is even (a row is whole pairs).
pub fn bf16_dot(k: usize) -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    k.is_multiple_of(2)
        && *ON.get_or_init(|| Backend::best().is_simd() && Backend::best().runs_bf16_dot())
}

/// The operands' element types, for [`chosen`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightKind {
    /// f32 weights (and f32 rows).
    F32,
    /// bf16 weights widened to f32: f32 rows, or bf16 rows where [`bf16_dot`] is false.
    Bf16,
    /// bf16 weights and bf16 rows where [`bf16_dot`] is true.
    Bf16Dot,
}

impl WeightKind {
    /// The kind of a product of rows of bf16 (`x_bf16`) or f32 with weights of bf16 (`w_bf16`) or f32, `k` wide.
    pub fn of(x_bf16: bool, w_bf16: bool, k: usize) -> WeightKind {
        match (x_bf16, w_bf16) {
            (_, false) => WeightKind::F32,
            (true, true) if bf16_dot(k) => WeightKind::Bf16Dot,
            _ => WeightKind::Bf16,
        }
    }
}

/// The rule [`linear`] applies: this crate where it measured faster than libtorch 2.13 on the project's 2-core Zen 5
/// machine (the crate's `tests/bench.rs`, weights read from memory), libtorch elsewhere. With `n × k` weights and
/// `rows` rows of x (1 to [`MAX_ROWS`]):
///
/// - f32: always (1.2-4.6x up to 8 rows on the layer shapes of the mid-size model and PaliGemma 3B, 2-4x on the
///   output head and on tall weights at any row count). At 9-32 rows some layer shapes measured alone run at 0.7-1.4x
///   of MKL (the mid-size model's 256 × 2048 down projection at 32 rows: 413 against 292 µs), but a decoding step
///   runs libtorch on one thread only when every product is here (`paligemma::generate`); otherwise libtorch's
///   OpenMP workers spin-wait beside the head's threads (19% of the CPU samples in perf). Beam 3 × batch 8 (24 rows,
///   mid-size model), alternating: step 29.9 / 31.0 / 32.8 -> 27.7 / 21.4 / 25.8 ms (docs/benchmarks.md, issue 14).
/// - bf16 × bf16 on AVX-512 BF16 ([`WeightKind::Bf16Dot`]): up to 8 rows, and at any row count for weights of 32 MB
///   or more with `k ≤ 512` (the mid-size model's output head). At 1-8 rows it measured 0.98-4.2x of libtorch's
///   oneDNN (which uses the same instruction) on every layer shape and 1.6-1.7x on the head; at 24-32 rows the head
///   1.3-1.6x (24 rows 5.7-6.2 against 8.8-8.9 ms, two runs), the layer shapes 0.3-0.7x except the 64- and 256-row
///   ones (1.7-3x at 32 rows). Where the CPU has AMX-BF16 ([`amx_bf16`]), oneDNN multiplies in tiles and the head
///   past 8 rows is libtorch's too: on a 2-core Xeon VM with AMX, 24 rows 22.4 against 14.1 ms, 32 rows 28.9 against
///   13.9 (8 rows: 8.4 against 12.2; docs/benchmarks.md, issue 14, step 20).
/// - bf16 weights widened to f32 ([`WeightKind::Bf16`]): up to 8 rows when `k ≤ 512` (the mid-size model's 256-wide
///   layers and head: 1.1-3x), and 1-2 rows when the weights have 32 MB or more (the head, a 3B model's MLP up and
///   gate projections: 1.7-2x). libtorch's bf16 products use the CPU's AVX-512 BF16 dot products (oneDNN), twice the
///   multiply-adds of f32's, and win the rest (up to 5x at 32 rows).
///
/// Off when `PGRS_SMALLMM=0`, and on CPUs without AVX2 (libtorch everywhere).
pub fn chosen(rows: usize, n: usize, k: usize, kind: WeightKind) -> bool {
    enabled() && Backend::best().is_simd() && rule(rows, n, k, kind, amx_bf16())
}

/// [`chosen`]'s rule for a CPU with or without AMX-BF16.
fn rule(rows: usize, n: usize, k: usize, kind: WeightKind, amx: bool) -> bool {
    if rows == 0 || rows > MAX_ROWS {
        return false;
    }
    let mb = (n * k) as f64 * if kind == WeightKind::F32 { 4.0 } else { 2.0 } / (1 << 20) as f64;
    match kind {
        WeightKind::F32 => true,
        WeightKind::Bf16Dot => rows <= 8 || (k <= 512 && mb >= 32.0 && !amx),
        WeightKind::Bf16 => (rows <= 8 && k <= 512) || (rows <= 2 && mb >= 32.0),
    }
}

/// Whether the CPU has AMX-BF16 (CPUID leaf 7, EDX bit 22; Intel since Sapphire Rapids), whose tile multiplies
/// libtorch's oneDNN uses for bf16 products of more than a few rows. `is_x86_feature_detected!("amx-bf16")` is not
/// stable yet.
pub fn amx_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static AMX: OnceLock<bool> = OnceLock::new();
        *AMX.get_or_init(|| std::arch::x86_64::__cpuid_count(7, 0).edx & (1 << 22) != 0)
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Weights smaller than this are done on the calling thread. In the decode loop, with libtorch on one thread
/// (`paligemma::generate`), the mid-size model's 2 MB MLP products on two threads took its decoder stack at one row
/// from 1.94 to 1.73 ms per step (one run each, docs/benchmarks.md, issue 14). On the Zen 5 machine the second thread
/// gained a few µs at most below 1 MB (256 × 256 f32 at 1 row 8.3 → 6.7 µs, step 15); on a Xeon VM, where one core
/// reads at half the speed of two, the 256 KB q and o projections of the mid-size model took 65-85 against 99-142 µs
/// for the 4 layers (1 and 8 rows, three alternating rounds, step 20), so only the 64 KB k and v ones stay here.
const SEQUENTIAL_BYTES: usize = 128 << 10;

/// Weights from which the outputs are written with streaming stores, past the caches: weights larger than the
/// last-level cache (32 MB on the project's machine) evict the call's first outputs before it ends, so nothing is
/// lost, and a plain store first reads the line it writes (read for ownership). The output head at 24 rows writes
/// 25 MB of logits; scattered over 24 rows, one value at a time, its stores took up to a fifth of the product's time.
const STREAM_BYTES: usize = 32 << 20;

/// Weight bytes per item of the pool's loop (an item is a contiguous block of weight rows, streamed once; the pool
/// hands out runs of items).
const BLOCK_BYTES: usize = 64 << 10;

/// `out[r, j] = Σ_c x[r, c] · w[j, c]` for `x [rows, k]`, `w [n, k]` (f32) and `out [rows, n]`, all row-major, on the
/// [`Backend::best`] backend.
///
/// # Panics
/// If a slice's length does not match `rows`, `k` and `n`.
pub fn matmul_rows_f32(x: &[f32], rows: usize, k: usize, w: &[f32], n: usize, out: &mut [f32]) {
    matmul_on(Backend::best(), x, (rows, k), w, n, out, (SEQUENTIAL_BYTES, STREAM_BYTES));
}

/// As [`matmul_rows_f32`] with bf16 weights given as their bits (`half::bf16::to_bits`, libtorch's `BFloat16`
/// storage), widened exactly to f32; x and the sums are f32.
pub fn matmul_rows_bf16(x: &[f32], rows: usize, k: usize, w: &[u16], n: usize, out: &mut [f32]) {
    matmul_on(Backend::best(), x, (rows, k), w, n, out, (SEQUENTIAL_BYTES, STREAM_BYTES));
}

/// `out = x wᵀ` for bf16 rows `x [rows, k]` and bf16 weights `w [n, k]` (their bits), f32 sums, by AVX-512 BF16's
/// `vdpbf16ps` ([`bf16_dot`] says where the CPU has it): each lane adds products of two bf16, exact in f32, with
/// fused multiply-adds that read denormals as 0 and flush denormal results to 0. libtorch's bf16 products (oneDNN)
/// use the same instruction.
///
/// # Panics
/// As [`matmul_rows_f32`], if `k` is odd, and where [`Backend::best`] cannot run it ([`bf16_dot`] is false).
pub fn matmul_rows_bf16_dot(
    x: &[u16],
    rows: usize,
    k: usize,
    w: &[u16],
    n: usize,
    out: &mut [f32],
) {
    matmul_rows_bf16_dot_on(Backend::best(), x, rows, k, w, n, out);
}

/// [`matmul_rows_bf16_dot`] on a given backend (tests and benchmarks); the portable ones follow `vdpbf16ps` lane by
/// lane.
///
/// # Panics
/// As [`matmul_rows_bf16_dot`], and if `backend` does not run it ([`Backend::runs_bf16_dot`]).
pub fn matmul_rows_bf16_dot_on(
    backend: Backend,
    x: &[u16],
    rows: usize,
    k: usize,
    w: &[u16],
    n: usize,
    out: &mut [f32],
) {
    assert!(k.is_multiple_of(2), "smallmm: bf16 dot products need an even k, not {k}");
    assert_eq!(x.len(), rows * k, "smallmm: x's length is not rows × k = {rows} × {k}");
    assert_eq!(w.len(), n * k, "smallmm: w's length is not n × k = {n} × {k}");
    let (x, w) = (pairs(x), pairs(w));
    matmul_on(backend, x, (rows, k / 2), w, n, out, (SEQUENTIAL_BYTES, STREAM_BYTES));
}

/// bf16 values taken two by two (the length's parity was checked with `k`, or the lengths check fails).
fn pairs(v: &[u16]) -> &[Bf16Pair] {
    // SAFETY: `Bf16Pair` is `repr(transparent)` over `[u16; 2]`: same alignment as u16, twice the size.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), v.len() / 2) }
}

/// [`matmul_rows_f32`] on a given backend (tests and benchmarks).
///
/// # Panics
/// As [`matmul_rows_f32`], and if the CPU cannot run `backend`.
pub fn matmul_rows_f32_on(
    backend: Backend,
    x: &[f32],
    rows: usize,
    k: usize,
    w: &[f32],
    n: usize,
    out: &mut [f32],
) {
    matmul_on(backend, x, (rows, k), w, n, out, (SEQUENTIAL_BYTES, STREAM_BYTES));
}

/// [`matmul_rows_bf16`] on a given backend (tests and benchmarks).
///
/// # Panics
/// As [`matmul_rows_f32_on`].
pub fn matmul_rows_bf16_on(
    backend: Backend,
    x: &[f32],
    rows: usize,
    k: usize,
    w: &[u16],
    n: usize,
    out: &mut [f32],
) {
    matmul_on(backend, x, (rows, k), w, n, out, (SEQUENTIAL_BYTES, STREAM_BYTES));
}

/// The product on `backend`, on the calling thread when the weights have fewer than `sequential_below` bytes, else
/// on the pool's threads, and with streaming stores from `stream_from` bytes of weights (the result is the same bit for
/// bit either way); the sums written as `S`, f32 or bf16 rounded to nearest even.
fn matmul_on<E: Elem, S: Sum>(
    backend: Backend,
    x: &[E::X],
    (rows, k): (usize, usize),
    w: &[E],
    n: usize,
    out: &mut [S],
    modes: (usize, usize),
) {
    matmul_capped_on(backend, x, (rows, k), w, n, out, modes, None);
}

/// [`matmul_on`], each sum soft-capped (`c · tanh(s / c)`, [`math::softcap`]) with `c = cap` where it is `Some`,
/// before it is written (f32 sums only).
#[allow(clippy::too_many_arguments)]
fn matmul_capped_on<E: Elem, S: Sum>(
    backend: Backend,
    x: &[E::X],
    (rows, k): (usize, usize),
    w: &[E],
    n: usize,
    out: &mut [S],
    (sequential_below, stream_from): (usize, usize),
    cap: Option<f32>,
) {
    assert_eq!(x.len(), rows * k, "smallmm: x's length is not rows × k = {rows} × {k}");
    assert_eq!(w.len(), n * k, "smallmm: w's length is not n × k = {n} × {k}");
    assert_eq!(out.len(), rows * n, "smallmm: out's length is not rows × n = {rows} × {n}");
    let kernel = backend.kernel::<E>();
    let row_bytes = k.max(1) * std::mem::size_of::<E>();
    let stream = n * row_bytes >= stream_from;
    let out = S::out(out, n);
    assert!(cap.is_none() || !out.is_bf16(), "smallmm: soft-capping is for f32 sums");
    let p = Problem { x, rows, k, w, n, out, stream, cap };
    if rows == 0 || n * row_bytes < sequential_below {
        // SAFETY: the lengths are checked, the range is all of `0..n`, and `kernel` checked the CPU.
        unsafe { kernel(&p, 0, n) };
        return;
    }
    // A multiple of 12 weight rows (tiles have 3 or 4), so that only the last block has a partial tile; when streaming,
    // of 48, so that a block's outputs also fill whole cache lines of 16 values (where `n` is a multiple of 16).
    let unit = if stream { 48 } else { 12 };
    let block = (BLOCK_BYTES / row_bytes).next_multiple_of(unit).max(unit);
    let body = |b: usize| {
        // SAFETY: as above; the blocks are disjoint, so each output column is written by one thread.
        unsafe { kernel(&p, b * block, ((b + 1) * block).min(n)) }
    };
    pool::for_each(n.div_ceil(block), &body);
}

#[cfg(test)]
mod tests;
