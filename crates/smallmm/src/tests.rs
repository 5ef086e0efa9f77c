//! The kernel's own properties, without libtorch (tests/libtorch.rs compares with libtorch).
use super::*;

/// splitmix64: reproducible data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-scale, scale).
    fn f32s(&mut self, len: usize, scale: f32) -> Vec<f32> {
        (0..len)
            .map(|_| ((self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale)
            .collect()
    }
    /// bf16 bits of values uniform in [-scale, scale) (truncated f32s).
    fn bf16s(&mut self, len: usize, scale: f32) -> Vec<u16> {
        self.f32s(len, scale).iter().map(|v| (v.to_bits() >> 16) as u16).collect()
    }
    /// bf16 bits of random sign and of a magnitude from 2^`lo` to 2^`hi` (products of two reach the denormals that
    /// `vdpbf16ps` flushes).
    fn bf16s_wide(&mut self, len: usize, (lo, hi): (i32, i32)) -> Vec<u16> {
        (0..len)
            .map(|_| {
                let e = lo + self.below((hi - lo + 1) as usize) as i32;
                let v = 2f32.powi(e) * (1.0 + (self.next() >> 41) as f32 / (1u64 << 23) as f32);
                let v = if self.next().is_multiple_of(2) { v } else { -v };
                (v.to_bits() >> 16) as u16
            })
            .collect()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn simd_backends() -> Vec<(Backend, Backend)> {
    [(Backend::Avx512, Backend::Portable16), (Backend::Avx2, Backend::Portable8)]
        .into_iter()
        .filter(|(b, _)| b.supported())
        .collect()
}

fn all_backends() -> Vec<Backend> {
    [Backend::Avx512, Backend::Avx2, Backend::Portable16, Backend::Portable8]
        .into_iter()
        .filter(|b| b.supported())
        .collect()
}

/// The backends that run bf16 × bf16 in pairs on this CPU.
fn dot_backends() -> Vec<Backend> {
    all_backends().into_iter().filter(|b| b.runs_bf16_dot()).collect()
}

/// `(simd, portable)` for bf16 × bf16 in pairs, where this CPU has AVX-512 BF16.
fn dot_simd_backends() -> Vec<(Backend, Backend)> {
    simd_backends().into_iter().filter(|(b, _)| b.runs_bf16_dot()).collect()
}

/// bf16 rows against bf16 weights (k even), in pairs: the outputs' bits, on the pool's threads or on this thread.
fn dot_out(
    b: Backend,
    x: &[u16],
    rows: usize,
    k: usize,
    w: &[u16],
    n: usize,
    threads: bool,
) -> Vec<u32> {
    out_bits(b, pairs(x), rows, k / 2, pairs(w), n, threads)
}

/// The outputs' bits, computed on the pool's threads however small the weights (`threads`), or on this thread.
fn out_bits<E: Elem>(
    b: Backend,
    x: &[E::X],
    rows: usize,
    k: usize,
    w: &[E],
    n: usize,
    threads: bool,
) -> Vec<u32> {
    let mut out = vec![f32::NAN; rows * n];
    matmul_on(b, x, (rows, k), w, n, &mut out, (if threads { 0 } else { usize::MAX }, usize::MAX));
    out.iter().map(|v| v.to_bits()).collect()
}

fn f32_out(b: Backend, x: &[f32], rows: usize, k: usize, w: &[f32], n: usize) -> Vec<u32> {
    out_bits(b, x, rows, k, w, n, true)
}

fn bf16_out(b: Backend, x: &[f32], rows: usize, k: usize, w: &[u16], n: usize) -> Vec<u32> {
    out_bits(b, x, rows, k, w, n, true)
}

/// Shapes around the lane counts and tile sizes (one row, a tile of its own: full vectors and a remainder; rows 9-12
/// and 31: a full group of 8 rows and each size of the group left after it), and one large enough to run on several
/// threads.
const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (1, 7, 9),
    (1, 100, 45),
    (2, 15, 3),
    (3, 16, 8),
    (4, 17, 13),
    (5, 31, 17),
    (7, 33, 4),
    (8, 257, 1031),
    (3, 700, 37),
    (6, 1029, 7),
    (9, 20, 5),
    (10, 48, 11),
    (11, 16, 6),
    (12, 35, 9),
    (31, 64, 21),
    (32, 40, 12),
];

/// The SIMD kernels run the documented order: bit-identical to plain Rust with the same lane count.
#[test]
fn simd_equals_portable_bit_for_bit() {
    let mut rng = Rng(1);
    for (simd, portable) in simd_backends() {
        for &(rows, k, n) in SHAPES {
            let x = rng.f32s(rows * k, 3.0);
            let w = rng.f32s(n * k, 0.05);
            assert_eq!(
                f32_out(simd, &x, rows, k, &w, n),
                f32_out(portable, &x, rows, k, &w, n),
                "{simd:?} f32 {rows}×{k}×{n}"
            );
            let wb = rng.bf16s(n * k, 0.05);
            let (a, b) =
                (bf16_out(simd, &x, rows, k, &wb, n), bf16_out(portable, &x, rows, k, &wb, n));
            assert_eq!(a, b, "{simd:?} bf16 {rows}×{k}×{n}");
        }
    }
}

/// The public distance ahead reads the x86 strategies as the kernel names them: farther for L2 only.
#[cfg(target_arch = "x86_64")]
#[test]
fn prefetch_distance_follows_the_x86_hint() {
    use std::arch::x86_64::{_MM_HINT_NTA, _MM_HINT_T0, _MM_HINT_T1};
    assert_eq!(crate::prefetch_bytes(_MM_HINT_T1), 16384);
    assert_eq!(crate::prefetch_bytes(_MM_HINT_T0), 4096);
    assert_eq!(crate::prefetch_bytes(_MM_HINT_NTA), 4096);
}

/// Every prefetch hint (T1, which Intel gets, NTA, which AMD gets, and T0) gives the portable kernel's bits,
/// whichever this CPU would pick.
#[cfg(target_arch = "x86_64")]
#[test]
fn every_prefetch_hint_equals_portable_bit_for_bit() {
    use std::arch::x86_64::{_MM_HINT_NTA, _MM_HINT_T0, _MM_HINT_T1};
    use std::sync::atomic::Ordering::SeqCst;
    let mut rng = Rng(5);
    for hint in [_MM_HINT_T1, _MM_HINT_NTA, _MM_HINT_T0] {
        x86::HINT_FOR_TESTS.store(hint + 1, SeqCst);
        assert_eq!(x86::prefetch_hint(), hint);
        for (simd, portable) in simd_backends() {
            for &(rows, k, n) in SHAPES {
                let x = rng.f32s(rows * k, 3.0);
                let (w, wb) = (rng.f32s(n * k, 0.05), rng.bf16s(n * k, 0.05));
                let what = format!("{simd:?}, hint {hint}, {rows}×{k}×{n}");
                assert_eq!(
                    f32_out(simd, &x, rows, k, &w, n),
                    f32_out(portable, &x, rows, k, &w, n),
                    "{what}"
                );
                assert_eq!(
                    bf16_out(simd, &x, rows, k, &wb, n),
                    bf16_out(portable, &x, rows, k, &wb, n),
                    "{what}"
                );
                if simd.runs_bf16_dot() {
                    // k doubled: pairs of bf16 (x's too), k / 2 of them.
                    let (xd, wd) = (rng.bf16s(rows * 2 * k, 3.0), rng.bf16s(n * 2 * k, 0.05));
                    let dot = |b| dot_out(b, &xd, rows, 2 * k, &wd, n, true);
                    assert_eq!(dot(simd), dot(portable), "{what}: bf16 dot");
                }
            }
        }
    }
    x86::HINT_FOR_TESTS.store(0, SeqCst);
}

/// `vdpbf16ps` runs `dot_pair`'s order and rounding: the AVX-512 BF16 kernel gives the portable one's bits, on the
/// shapes above with k doubled (k / 2 pairs: tails of every length), and on magnitudes whose products cancel or are
/// denormal (flushed to 0).
#[test]
fn bf16_dot_equals_portable_bit_for_bit() {
    let mut rng = Rng(6);
    for (simd, portable) in dot_simd_backends() {
        for (i, &(rows, k, n)) in SHAPES.iter().enumerate() {
            let k = 2 * k;
            // Plain values; magnitudes 2^-70..2^10 (cancelling, some denormal products); 2^-75..2^-55 (products and
            // sums around the denormals, where flushing decides the result).
            let (x, w) = match i % 3 {
                0 => (rng.bf16s(rows * k, 3.0), rng.bf16s(n * k, 0.05)),
                1 => (rng.bf16s_wide(rows * k, (-70, 10)), rng.bf16s_wide(n * k, (-70, 10))),
                _ => (rng.bf16s_wide(rows * k, (-75, -55)), rng.bf16s_wide(n * k, (-75, -55))),
            };
            for threads in [false, true] {
                assert_eq!(
                    dot_out(simd, &x, rows, k, &w, n, threads),
                    dot_out(portable, &x, rows, k, &w, n, threads),
                    "{simd:?} bf16 dot {rows}×{k}×{n}"
                );
            }
        }
    }
}

/// One lane of `vdpbf16ps` as specified: the odd element of a pair is added first (1 - 1 + 2^-24 = 2^-24, where the
/// other order loses the 2^-24), and a denormal product is flushed (2^-70 · 2^-70 = 0).
#[test]
fn dot_pair_follows_the_specification() {
    let bits = |v: f32| (v.to_bits() >> 16) as u16;
    let x = Bf16Pair([bits(2f32.powi(-12)), bits(-1.0)]);
    let w = Bf16Pair([bits(2f32.powi(-12)), bits(1.0)]);
    assert_eq!(kernel::dot_pair(1.0, x, w), 2f32.powi(-24));
    let tiny = Bf16Pair([bits(2f32.powi(-70)), 0]);
    assert_eq!(kernel::dot_pair(0.0, tiny, tiny), 0.0);
    assert_eq!(2f32.powi(-70).mul_add(2f32.powi(-70), 0.0), 2f32.powi(-140), "f32 keeps it");
}

/// Issue 14's "batched = one by one": a row's outputs do not depend on the other rows of the call (random shapes,
/// rows 1-40, every backend, f32 and bf16, including shapes split over threads or into several passes over `k`).
#[test]
fn batched_rows_equal_rows_one_by_one() {
    let mut rng = Rng(2);
    for case in 0..24 {
        let rows = 1 + rng.below(MAX_ROWS + 8);
        let k = 1 + rng.below(if case % 3 == 0 { 800 } else { 300 });
        let n = 1 + if case % 4 == 0 { 600 + rng.below(600) } else { rng.below(70) };
        let x = rng.f32s(rows * k, 2.0);
        let w = rng.f32s(n * k, 0.1);
        let wb = rng.bf16s(n * k, 0.1);
        for b in all_backends() {
            let (all, all_b) = (f32_out(b, &x, rows, k, &w, n), bf16_out(b, &x, rows, k, &wb, n));
            for r in 0..rows {
                let xr = &x[r * k..(r + 1) * k];
                let what = format!("{b:?} row {r} of {rows}×{k}×{n}");
                assert_eq!(f32_out(b, xr, 1, k, &w, n), all[r * n..(r + 1) * n], "f32 {what}");
                assert_eq!(bf16_out(b, xr, 1, k, &wb, n), all_b[r * n..(r + 1) * n], "bf16 {what}");
            }
        }
        let k = 2 * k;
        let (xd, wd) = (rng.bf16s(rows * k, 2.0), rng.bf16s(n * k, 0.1));
        for b in dot_backends() {
            let all = dot_out(b, &xd, rows, k, &wd, n, true);
            for r in 0..rows {
                let one = dot_out(b, &xd[r * k..(r + 1) * k], 1, k, &wd, n, true);
                assert_eq!(
                    one,
                    all[r * n..(r + 1) * n],
                    "{b:?} bf16 dot row {r} of {rows}×{k}×{n}"
                );
            }
        }
    }
}

/// One thread or several: the same bits (the public functions pick by size; the other tests force threads).
#[test]
fn threads_do_not_change_the_result() {
    let mut rng = Rng(4);
    let (rows, k, n) = (7, 300, 2000);
    let x = rng.f32s(rows * k, 2.0);
    let (w, wb) = (rng.f32s(n * k, 0.1), rng.bf16s(n * k, 0.1));
    for b in all_backends() {
        assert_eq!(
            out_bits(b, &x, rows, k, &w, n, true),
            out_bits(b, &x, rows, k, &w, n, false),
            "{b:?} f32"
        );
        assert_eq!(
            out_bits(b, &x, rows, k, &wb, n, true),
            out_bits(b, &x, rows, k, &wb, n, false),
            "{b:?} bf16"
        );
    }
    let (xd, wd) = (rng.bf16s(rows * 2 * k, 2.0), rng.bf16s(n * 2 * k, 0.1));
    for b in dot_backends() {
        let (on, off) = (
            dot_out(b, &xd, rows, 2 * k, &wd, n, true),
            dot_out(b, &xd, rows, 2 * k, &wd, n, false),
        );
        assert_eq!(on, off, "{b:?} bf16 dot");
    }
}

/// Outputs written through the staging buffer with streaming stores (as for weights larger than the caches) equal
/// those stored one by one, bit for bit: on one thread and several, with `n` a multiple of a cache line's 16 values
/// and not, with blocks of several staging widths, and into an output that does not start on a cache line.
#[test]
fn streamed_outputs_equal_stored_ones() {
    let mut rng = Rng(5);
    for (rows, k, n) in
        [(1, 256, 1024), (3, 40, 1000), (8, 17, 4099), (24, 64, 2000), (33, 8, 300), (5, 3, 7)]
    {
        let x = rng.f32s(rows * k, 2.0);
        let (w, wb) = (rng.f32s(n * k, 0.1), rng.bf16s(n * k, 0.1));
        // bf16 × bf16 in pairs: k pairs.
        let (xd, wd) = (rng.bf16s(rows * 2 * k, 2.0), rng.bf16s(n * 2 * k, 0.1));
        for b in all_backends() {
            // (on the calling thread below this many weight bytes, streaming from this many)
            type Modes = (usize, usize);
            let run = |product: &dyn Fn(&mut [f32], Modes), skip: usize, modes: Modes| {
                let mut buf = vec![f32::NAN; rows * n + skip];
                product(&mut buf[skip..], modes);
                buf[skip..].iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
            };
            let f = |out: &mut [f32], m| matmul_on(b, &x, (rows, k), &w, n, out, m);
            let h = |out: &mut [f32], m| matmul_on(b, &x, (rows, k), &wb, n, out, m);
            let d = |out: &mut [f32], m| matmul_on(b, pairs(&xd), (rows, k), pairs(&wd), n, out, m);
            for threads in [0, usize::MAX] {
                let want = (run(&f, 0, (threads, usize::MAX)), run(&h, 0, (threads, usize::MAX)));
                let want_d = b.runs_bf16_dot().then(|| run(&d, 0, (threads, usize::MAX)));
                for skip in [0, 1, 5] {
                    let what =
                        format!("{b:?} {rows}×{k}×{n}, threads from {threads}, {skip} values in");
                    assert_eq!(run(&f, skip, (threads, 0)), want.0, "f32 {what}");
                    assert_eq!(run(&h, skip, (threads, 0)), want.1, "bf16 {what}");
                    if let Some(want_d) = &want_d {
                        assert_eq!(&run(&d, skip, (threads, 0)), want_d, "bf16 dot {what}");
                    }
                }
            }
        }
    }
}

/// Soft-capped sums (Gemma 2's final logits, written capped by the kernel) are the plain sums capped afterwards by
/// `math::softcap`, bit for bit, on every backend and weight type, stored or staged and streamed, on one thread and
/// several; values far past the cap go to ±cap.
#[test]
fn soft_capped_sums_are_the_sums_capped() {
    let mut rng = Rng(9);
    for (rows, k, n) in [(1, 256, 1024), (8, 40, 1000), (24, 64, 2000), (3, 17, 7), (33, 8, 300)] {
        // Sums of a few times the cap, so that both of tanh's forms and its saturation are reached.
        let x = rng.f32s(rows * k, 30.0);
        let (w, wb) = (rng.f32s(n * k, 1.0), rng.bf16s(n * k, 1.0));
        let cap = 30.0;
        for b in all_backends() {
            for modes in [(usize::MAX, usize::MAX), (0, usize::MAX), (0, 0), (usize::MAX, 0)] {
                let check = |product: &dyn Fn(&mut [f32], Option<f32>), what: &str| {
                    let (mut plain, mut capped) = (vec![f32::NAN; rows * n], vec![0.0; rows * n]);
                    product(&mut plain, None);
                    product(&mut capped, Some(cap));
                    let want: Vec<u32> =
                        plain.iter().map(|&v| math::softcap(v, cap).to_bits()).collect();
                    let got: Vec<u32> = capped.iter().map(|v| v.to_bits()).collect();
                    assert_eq!(got, want, "{what} {b:?} {rows}×{k}×{n} {modes:?}");
                    assert!(
                        plain.iter().any(|v| v.abs() > 3.0 * cap),
                        "{what}: no sum past the cap"
                    );
                    assert!(capped.iter().all(|v| v.abs() <= cap), "{what}");
                };
                check(&|o, c| matmul_capped_on(b, &x, (rows, k), &w, n, o, modes, c), "f32");
                check(&|o, c| matmul_capped_on(b, &x, (rows, k), &wb, n, o, modes, c), "bf16");
            }
        }
    }
}

/// Capping is asked only with f32 sums: bf16 ones would be capped after libtorch rounds them, not before.
#[test]
#[should_panic(expected = "soft-capping is for f32 sums")]
fn soft_capping_refuses_bf16_sums() {
    let mut out = vec![0u16; 4];
    matmul_capped_on(
        Backend::best(),
        &[1.0f32; 8],
        (2, 4),
        &[1.0f32; 8],
        2,
        &mut out,
        (0, 0),
        Some(30.0),
    );
}

/// Sums written as bf16 are the f32 sums rounded, bit for bit, on every backend and element type, stored one by one
/// or staged and streamed, on one thread and several.
#[test]
fn bf16_outputs_are_the_f32_sums_rounded() {
    let mut rng = Rng(7);
    for (rows, k, n) in [(1, 256, 1024), (5, 40, 333), (24, 64, 2000), (3, 17, 7)] {
        let x = rng.f32s(rows * k, 2.0);
        let (w, wb) = (rng.f32s(n * k, 0.1), rng.bf16s(n * k, 0.1));
        let (xd, wd) = (rng.bf16s(rows * 2 * k, 2.0), rng.bf16s(n * 2 * k, 0.1));
        for b in all_backends() {
            for modes in [(0, usize::MAX), (0, 0), (usize::MAX, 0)] {
                let both = |product: &dyn Fn(&mut [f32], &mut [u16])| {
                    let (mut f, mut h) = (vec![f32::NAN; rows * n], vec![0u16; rows * n]);
                    product(&mut f, &mut h);
                    let rounded: Vec<u16> = f.iter().map(|&v| kernel::f32_to_bf16(v)).collect();
                    assert_eq!(h, rounded, "{b:?} {rows}×{k}×{n} {modes:?}");
                };
                both(&|f, h| {
                    matmul_on(b, &x, (rows, k), &w, n, f, modes);
                    matmul_on(b, &x, (rows, k), &w, n, h, modes);
                });
                both(&|f, h| {
                    matmul_on(b, &x, (rows, k), &wb, n, f, modes);
                    matmul_on(b, &x, (rows, k), &wb, n, h, modes);
                });
                if b.runs_bf16_dot() {
                    both(&|f, h| {
                        matmul_on(b, pairs(&xd), (rows, k), pairs(&wd), n, f, modes);
                        matmul_on(b, pairs(&xd), (rows, k), pairs(&wd), n, h, modes);
                    });
                }
            }
        }
    }
}

/// Rounding to bf16 as libtorch's `c10::detail::round_to_nearest_even`: ties to even, overflow to infinity, one NaN.
#[test]
fn rounding_to_bf16() {
    let r = |bits: u32| kernel::f32_to_bf16(f32::from_bits(bits));
    assert_eq!(r(0x3F80_8000), 0x3F80, "1 + 2^-8: a tie, to even");
    assert_eq!(r(0x3F81_8000), 0x3F82, "1 + 3·2^-8: a tie, to even");
    assert_eq!(r(0x3F80_8001), 0x3F81, "above the tie");
    assert_eq!(r(0x3F80_7FFF), 0x3F80, "below the tie");
    assert_eq!(r(0x8000_0000), 0x8000, "-0");
    assert_eq!(r(f32::MAX.to_bits()), 0x7F80, "overflow");
    assert_eq!(r(f32::NEG_INFINITY.to_bits()), 0xFF80);
    assert_eq!(r(0xFFC0_1234), 0x7FC0, "NaN");
}

/// Close to the exact sums: within 1e-6 of the row's largest |output| (f64 reference), including the scalar tail
/// of a `k` that is no multiple of the lanes.
#[test]
fn close_to_f64_sums() {
    let mut rng = Rng(3);
    let (rows, k, n) = (5, 2051, 300);
    let x = rng.f32s(rows * k, 3.0);
    let w = rng.f32s(n * k, 0.05);
    for b in all_backends() {
        let got = f32_out(b, &x, rows, k, &w, n);
        for r in 0..rows {
            let exact: Vec<f64> = (0..n)
                .map(|j| (0..k).map(|c| f64::from(x[r * k + c]) * f64::from(w[j * k + c])).sum())
                .collect();
            let scale = exact.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for (j, e) in exact.iter().enumerate() {
                let err = (f64::from(f32::from_bits(got[r * n + j])) - e).abs() / scale;
                assert!(err < 1e-6, "{b:?} [{r}, {j}]: relative error {err:e}");
            }
        }
    }
}

/// Empty products: no rows, no weight rows, and k = 0 (sums of nothing are 0).
#[test]
fn empty_shapes() {
    for b in all_backends() {
        assert!(f32_out(b, &[], 0, 5, &[0.0; 15], 3).is_empty());
        assert!(f32_out(b, &[0.0; 10], 2, 5, &[], 0).is_empty());
        assert_eq!(f32_out(b, &[], 2, 0, &[], 3), vec![0; 6]);
    }
}

#[test]
#[should_panic(expected = "bf16 dot products need an even k, not 5")]
fn bf16_dot_needs_an_even_k() {
    let mut out = [0.0; 6];
    matmul_rows_bf16_dot_on(Backend::Portable16, &[0; 10], 2, 5, &[0; 15], 3, &mut out);
}

/// A backend without bf16 dot products refuses them (AVX2 here; on a CPU without AVX2 the test has nothing to ask).
#[test]
fn a_backend_without_bf16_dot_products_refuses_them() {
    assert!(Backend::Portable8.runs_bf16_dot());
    if !Backend::Avx2.supported() {
        return;
    }
    assert!(!Backend::Avx2.runs_bf16_dot());
    let refused = std::panic::catch_unwind(|| {
        let mut out = [0.0; 6];
        matmul_rows_bf16_dot_on(Backend::Avx2, &[0; 8], 2, 4, &[0; 12], 3, &mut out);
    });
    let message = refused.expect_err("AVX2 ran bf16 dot products");
    let text = message.downcast_ref::<String>().map(String::as_str).unwrap_or_default();
    assert!(text.contains("cannot run Avx2 here"), "{text}");
}

#[test]
#[should_panic(expected = "w's length is not n × k = 3 × 5")]
fn lengths_are_checked() {
    let mut out = [0.0; 6];
    matmul_rows_f32(&[0.0; 10], 2, 5, &[0.0; 14], 3, &mut out);
}

#[test]
fn the_best_backend_is_supported() {
    assert!(Backend::best().supported());
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        assert!(Backend::best().is_simd());
    }
}

#[test]
fn the_switch_reads_common_spellings() {
    assert!(switch_on(None));
    assert!(switch_on(Some("1")));
    assert!(switch_on(Some("")));
    for off in ["0", "false", "OFF", " no "] {
        assert!(!switch_on(Some(off)), "{off}");
    }
}

/// The rule's cases (this runs with `PGRS_SMALLMM` unset; on a CPU without AVX2 the rule is always off).
#[test]
fn the_rule() {
    if !Backend::best().is_simd() {
        assert!(!chosen(1, 257_216, 256, WeightKind::F32));
        return;
    }
    let head = (257_216, 256);
    assert!(chosen(1, head.0, head.1, WeightKind::F32));
    assert!(chosen(32, head.0, head.1, WeightKind::F32));
    assert!(!chosen(33, head.0, head.1, WeightKind::F32));
    assert!(!chosen(0, head.0, head.1, WeightKind::F32));
    assert!(chosen(8, 256, 256, WeightKind::F32));
    assert!(chosen(24, 256, 2048, WeightKind::F32));
    assert!(chosen(32, 2048, 16_384, WeightKind::F32));
    assert!(!chosen(33, 256, 256, WeightKind::F32));
    assert!(chosen(8, head.0, head.1, WeightKind::Bf16));
    assert!(!chosen(24, head.0, head.1, WeightKind::Bf16));
    assert!(chosen(1, 16_384, 2048, WeightKind::Bf16));
    assert!(!chosen(1, 2048, 2048, WeightKind::Bf16));
    assert!(!chosen(8, 16_384, 2048, WeightKind::Bf16));
    assert!(chosen(8, 16_384, 2048, WeightKind::Bf16Dot));
    assert!(chosen(1, head.0, head.1, WeightKind::Bf16Dot));
    assert!(!chosen(9, 256, 256, WeightKind::Bf16Dot));
    assert_eq!(chosen(24, head.0, head.1, WeightKind::Bf16Dot), !amx_bf16());
    assert_eq!(chosen(32, head.0, head.1, WeightKind::Bf16Dot), !amx_bf16());
    assert!(!chosen(24, 2048, 256, WeightKind::Bf16Dot));
    assert!(!chosen(24, 257_216, 2048, WeightKind::Bf16Dot));
}

/// With AMX-BF16, libtorch's tiles take the bf16 × bf16 head past 8 rows; the rest of the rule does not change.
#[test]
fn the_rule_with_amx() {
    let head = (257_216, 256);
    for amx in [false, true] {
        assert!(rule(8, head.0, head.1, WeightKind::Bf16Dot, amx));
        assert_eq!(rule(9, head.0, head.1, WeightKind::Bf16Dot, amx), !amx);
        assert_eq!(rule(32, head.0, head.1, WeightKind::Bf16Dot, amx), !amx);
        assert!(!rule(24, 2048, 256, WeightKind::Bf16Dot, amx));
        assert!(rule(32, head.0, head.1, WeightKind::F32, amx));
        assert!(rule(2, head.0, head.1, WeightKind::Bf16, amx));
        assert!(!rule(33, head.0, head.1, WeightKind::F32, amx));
    }
}

/// Which kind a product is: bf16 × bf16 takes the dot products only where the CPU has them and `k` is even.
#[test]
fn the_kind_of_a_product() {
    assert_eq!(WeightKind::of(false, false, 256), WeightKind::F32);
    assert_eq!(WeightKind::of(false, true, 256), WeightKind::Bf16);
    assert_eq!(WeightKind::of(true, true, 257), WeightKind::Bf16);
    let dot = if bf16_dot(256) { WeightKind::Bf16Dot } else { WeightKind::Bf16 };
    assert_eq!(WeightKind::of(true, true, 256), dot);
    assert!(!bf16_dot(257));
}
