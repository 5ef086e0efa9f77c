//! Vectorisable f32 functions for the decoding step's element-wise passes (Gemma 2's soft-capping, a decoding step's
//! softmax, beam search's log-probabilities), written so that a loop calling them compiles to the widest vectors its
//! function is built for (callers wrap their loops in `#[target_feature]` functions chosen at run time, as this
//! crate's kernels are).
//!
//! `tanh` and `exp` follow Cephes `tanhf` and `expf` (S. L. Moshier, Cephes Mathematical Library,
//! <https://www.netlib.org/cephes/>): an odd polynomial below |x| = 0.625, `1 - 2 / (exp(2|x|) + 1)` above, with
//! Cephes' range reduction and polynomial for exp, written branch-free. Results differ from libtorch's (SLEEF) by a
//! few units in the last place (`tests/libtorch.rs` bounds the soft-capping at 4e-7 relative; the test below bounds
//! exp). Rust never fuses `a * b + c` on its own, so every backend gives the same bits.
//!
//! [`widest_vectors!`](crate::widest_vectors) is the one place that builds such a loop three times (AVX-512F, AVX2 +
//! FMA, plain x86-64) and picks one at run time.

/// Defines `fn name(args) -> ret` (`-> ret` optional) that runs `body` (an `#[inline(always)]` function or method
/// path taking the same arguments) compiled for the vectors of [`Backend::best`](crate::Backend::best), the crate's
/// one rule for what the CPU runs: AVX-512F with VL, else AVX2 + FMA, else the plain target (off x86-64, always).
/// The binary stays plain x86-64 (no `target-cpu=native`): each copy sits in a `#[target_feature]` function that is
/// only called when that rule said the CPU has its instructions, and `body` is inlined into it, so its loops
/// vectorise for them.
/// `unsafe fn` makes an unsafe function of an unsafe `body`.
///
/// ```
/// #[inline(always)]
/// fn double_loop(xs: &mut [f32]) {
///     xs.iter_mut().for_each(|x| *x *= 2.0);
/// }
/// smallmm::widest_vectors!(
///     /// Doubles every value.
///     pub fn double(xs: &mut [f32]) = double_loop
/// );
/// let mut v = [1.0, 2.5];
/// double(&mut v);
/// assert_eq!(v, [2.0, 5.0]);
/// ```
#[macro_export]
macro_rules! widest_vectors {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $body:path) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            $crate::widest_vectors!(@pick $body; $($arg: $ty),*; $(-> $ret)?)
        }
    };
    ($(#[$attr:meta])* $vis:vis unsafe fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $body:path) => {
        $(#[$attr])*
        ///
        /// # Safety
        /// As the function it runs.
        $vis unsafe fn $name($($arg: $ty),*) $(-> $ret)? {
            $crate::widest_vectors!(@pick $body; $($arg: $ty),*; $(-> $ret)?)
        }
    };
    (@pick $body:path; $($arg:ident: $ty:ty),*; $(-> $ret:ty)?) => {{
        #[cfg(target_arch = "x86_64")]
        {
            /// # Safety
            /// The CPU has AVX-512F, AVX-512VL, AVX2 and FMA, and as `body`.
            #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
            #[allow(unused_unsafe)]
            unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                // SAFETY: as this function's.
                unsafe { $body($($arg),*) }
            }
            /// # Safety
            /// The CPU has AVX2 and FMA, and as `body`.
            #[target_feature(enable = "avx2,fma")]
            #[allow(unused_unsafe)]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                // SAFETY: as this function's.
                unsafe { $body($($arg),*) }
            }
            match $crate::Backend::best() {
                // SAFETY: `best` picks AVX-512 only where the CPU has AVX-512F, AVX-512VL, AVX2 and FMA; `body`'s own
                // conditions are the caller's.
                $crate::Backend::Avx512 => return unsafe { avx512($($arg),*) },
                // SAFETY: `best` picks AVX2 only where the CPU has AVX2 and FMA; as above.
                $crate::Backend::Avx2 => return unsafe { avx2($($arg),*) },
                _ => {}
            }
        }
        // SAFETY: `body`'s conditions are the caller's (none when it is safe).
        #[allow(unused_unsafe)]
        let plain = unsafe { $body($($arg),*) };
        plain
    }};
}

/// Gemma 2's soft-capping `c · tanh(x / c)` (transformers 5.23 `modeling_gemma2.py`), by [`tanh`]: within a few
/// units in the last place of libtorch's (SLEEF's `tanhf`); NaN stays NaN, ±inf caps to ±c.
#[inline(always)]
pub fn softcap(x: f32, cap: f32) -> f32 {
    cap * tanh(x / cap)
}

crate::widest_vectors!(
    /// `x ← c · tanh(x / c)` ([`softcap`]) for every value of `xs`, on the widest vectors this CPU has.
    pub fn softcap_in_place(xs: &mut [f32], cap: f32) = softcap_loop
);

/// [`softcap`] over `xs`, 16 values at a time: where all 16 of `x / c` lie below [`TANH_POLY_BELOW`] in magnitude,
/// only [`tanh`]'s polynomial is computed (the same bits: `tanh` selects it there), skipping the exponential and the
/// division that `tanh` otherwise computes for every value, branch-free. Logits mostly sit there (below 18.75 for
/// Gemma 2's `c = 30`; all of them in a random model's): the output head's capping at 8 rows × 257,216 values took
/// 0.57 against 1.78 ms on one thread of a Xeon VM, and as long as before where every block holds a large value
/// (docs/benchmarks.md, issue 14, step 23).
#[inline(always)]
fn softcap_loop(xs: &mut [f32], cap: f32) {
    const W: usize = 16;
    let mut blocks = xs.chunks_exact_mut(W);
    for block in &mut blocks {
        let mut t = [0.0f32; W];
        for (t, &x) in t.iter_mut().zip(block.iter()) {
            *t = x / cap;
        }
        // A NaN compares false, so its block takes the full form (which keeps it).
        if t.iter().fold(true, |all, &t| all & (t.abs() < TANH_POLY_BELOW)) {
            for (x, &t) in block.iter_mut().zip(&t) {
                *x = cap * tanh_poly(t).copysign(t);
            }
        } else {
            for (x, &t) in block.iter_mut().zip(&t) {
                *x = cap * tanh(t);
            }
        }
    }
    for x in blocks.into_remainder() {
        *x = softcap(*x, cap);
    }
}

/// Below this |x|, [`tanh`] is its odd polynomial ([`tanh_poly`]).
const TANH_POLY_BELOW: f32 = 0.625;

/// Cephes `tanhf`'s odd polynomial, its value for |x| < [`TANH_POLY_BELOW`] (up to the sign of zero).
#[inline(always)]
fn tanh_poly(x: f32) -> f32 {
    let z = x * x;
    ((((-5.704_988_7e-3 * z + 2.063_909e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1) * z
        - 3.333_328e-1)
        * z
        * x
        + x
}

/// Cephes `tanhf`, branch-free: both forms are computed and one is selected.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let a = x.abs();
    let small = tanh_poly(x);
    // tanh rounds to 1 from |x| ≈ 9.01 on; clamping 2|x| at 20 keeps exp finite (and ±inf gives ±1).
    let two_a = if a + a < 20.0 { a + a } else { 20.0 };
    let large = (1.0 - 2.0 / (exp(two_a) + 1.0)).copysign(x);
    // `small` is +0 for x = -0; tanh keeps the sign of zero.
    let t = if a < TANH_POLY_BELOW { small.copysign(x) } else { large };
    if x.is_nan() {
        x
    } else {
        t
    }
}

/// Cephes `expf`, branch-free: `y = n ln 2 + r` with `|r| <= ln 2 / 2`, a degree-6 polynomial for `e^r`, and `2^n`
/// built in the exponent bits; 0 below -87.3, where `e^y` leaves the normal range; NaN stays NaN. Callers ask `y <=
/// 20` (`tanh`) or `y <= 0` (softmax); `y` is clamped at 88, so larger values give `e^88`, not infinity.
#[inline(always)]
pub fn exp(y: f32) -> f32 {
    let in_range = y > -87.3;
    // Clamped on both sides (and NaN replaced) so that `n` is a whole number in -126..=127 and converts without
    // Rust's saturating `as`, which LLVM does not vectorise (with it, beam search's sums of exponentials over the
    // vocabulary took 1.6x as long).
    let y_c = if in_range { y.min(88.0) } else { -87.3 };
    let n = (y_c * std::f32::consts::LOG2_E + 0.5).floor();
    let r = y_c - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
        * r
        + 1.666_666_5e-1)
        * r
        + 0.5)
        * (r * r)
        + r
        + 1.0;
    // SAFETY: `n` is finite and within -126..=127 (above).
    let n = unsafe { n.to_int_unchecked::<i32>() };
    let e = p * f32::from_bits(((n + 127) as u32) << 23);
    if in_range {
        e
    } else if y.is_nan() {
        y
    } else {
        0.0
    }
}

/// `xs` folded by `f` in 16 independent lanes (vectorised), whose results are then folded in order.
#[inline(always)]
pub fn lanes(xs: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    const W: usize = 16;
    let chunks = xs.chunks_exact(W);
    let tail = chunks.remainder().iter().fold(init, |a, &x| f(a, x));
    let mut acc = [init; W];
    for c in chunks {
        for i in 0..W {
            acc[i] = f(acc[i], c[i]);
        }
    }
    acc.iter().fold(tail, |a, &x| f(a, x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_f64_over_softmax_inputs() {
        // Softmax asks exp(x - max) for x - max in (-inf, 0]; tanh asks up to 20.
        let mut worst = 0.0f64;
        for i in 0..=2_000_000 {
            let y = -90.0 + i as f32 * 5.5e-5;
            let want = f64::from(y).exp();
            let got = f64::from(exp(y));
            if y <= -87.3 {
                assert_eq!(got, 0.0, "{y}");
                continue;
            }
            let err = (got - want).abs() / want;
            worst = worst.max(err);
            assert!(err < 2.5e-7, "exp({y}) = {got}, f64 says {want} ({err:.2e} relative)");
        }
        assert!(worst > 0.0, "an f32 result always rounds somewhere");
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::INFINITY), exp(88.0), "clamped, finite");
        assert!(exp(88.0).is_finite() && exp(88.0) > 1e38);
    }

    #[test]
    fn softcap_in_place_equals_softcap_value_by_value() {
        // Blocks of 16 all below the polynomial's bound (|x / 30| < 0.625: |x| < 18.75), blocks with one value just
        // past it or far past it, specials, and a tail.
        let cap = 30.0f32;
        let mut xs: Vec<f32> =
            (0..16 * 40 + 7).map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0).collect();
        for (b, v) in [(1, 18.74), (2, -18.76), (3, 18.76), (4, -18.74), (5, 400.0), (7, 1e-30)] {
            xs[b * 16 + 3] = v;
        }
        assert!(xs[16 + 3] / cap < TANH_POLY_BELOW && xs[3 * 16 + 3] / cap > TANH_POLY_BELOW);
        for (i, v) in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 0.0, f32::MAX]
            .into_iter()
            .enumerate()
        {
            xs[(10 + i) * 16 + i] = v;
        }
        xs[16 * 40 + 2] = -20.0;
        let want: Vec<u32> = xs.iter().map(|&x| softcap(x, cap).to_bits()).collect();
        softcap_in_place(&mut xs, cap);
        let got: Vec<u32> = xs.iter().map(|x| x.to_bits()).collect();
        assert_eq!(got, want);
        assert!(
            xs[10 * 16].is_nan() && xs[12 * 16 + 2] == -cap && xs[13 * 16 + 3].is_sign_negative()
        );
    }

    #[test]
    fn lanes_fold_every_value_once() {
        let xs: Vec<f32> = (1..=37).map(|i| i as f32).collect();
        assert_eq!(lanes(&xs, 0.0, |a, b| a + b), 703.0);
        assert_eq!(lanes(&xs, f32::NEG_INFINITY, f32::max), 37.0);
        assert_eq!(lanes(&[], 0.0, |a, b| a + b), 0.0);
    }
}
