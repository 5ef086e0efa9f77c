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

/// The outputs' bits, computed on the pool's threads however small the weights (`threads`), or on this thread.
fn out_bits<E: Elem>(
    b: Backend,
    x: &[f32],
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

/// Shapes around the lane counts and tile sizes (rows 9-12 and 31: a full group of 8 rows and each size of the group
/// left after it), and one large enough to run on several threads.
const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (1, 7, 9),
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
            for threads in [0, usize::MAX] {
                let want = (run(&f, 0, (threads, usize::MAX)), run(&h, 0, (threads, usize::MAX)));
                for skip in [0, 1, 5] {
                    let what =
                        format!("{b:?} {rows}×{k}×{n}, threads from {threads}, {skip} values in");
                    assert_eq!(run(&f, skip, (threads, 0)), want.0, "f32 {what}");
                    assert_eq!(run(&h, skip, (threads, 0)), want.1, "bf16 {what}");
                }
            }
        }
    }
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
}
