//! The kernels and the tch adapter against libtorch's `x Wᵀ` (issue 14, items 2 and 5): odd shapes, rows 0-32, f32 and
//! bf16, layouts, and what the adapter refuses.
#![cfg(feature = "tch")]

use smallmm::{try_linear, Backend, MAX_ROWS};
use tch::{Device, Kind, Tensor};

/// Issue 14's bound, relative to the row's largest |output|: the sums run in another order than MKL's, so single
/// outputs near 0 can differ by more than 1e-5 of themselves while being as exact as libtorch's.
const BOUND: f64 = 1e-5;

/// The largest `|a - b|` of each row over that row's largest `|b|` (rows = all but the last dimension).
fn row_relative_error(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
    let n = *b.size().last().unwrap();
    let scale = b.abs().reshape([-1, n]).amax(1, true).clamp_min(1e-30);
    let err = (a - &b).abs().reshape([-1, n]) / scale;
    if err.numel() == 0 {
        0.0
    } else {
        err.max().double_value(&[])
    }
}

/// Hidden states (unit scale × 3) and weights at an embedding table's scale: logits of a few units, as Gemma's.
fn operands(rows: i64, k: i64, n: i64, seed: i64) -> (Tensor, Tensor) {
    tch::manual_seed(seed);
    let x = Tensor::randn([rows, k], (Kind::Float, Device::Cpu)) * 3.0;
    let w = Tensor::randn([n, k], (Kind::Float, Device::Cpu)) * 0.03;
    (x, w)
}

fn with_backend(b: Backend, x: &Tensor, w: &Tensor) -> Tensor {
    let (rows, k) = (x.size()[0], x.size()[1]);
    let n = w.size()[0];
    let xs = Vec::<f32>::try_from(&x.contiguous().view(-1)).unwrap();
    let mut out = vec![0.0f32; (rows * n) as usize];
    let (rows, k, n) = (rows as usize, k as usize, n as usize);
    if w.kind() == Kind::Float {
        let ws = Vec::<f32>::try_from(&w.contiguous().view(-1)).unwrap();
        smallmm::matmul_rows_f32_on(b, &xs, rows, k, &ws, n, &mut out);
    } else {
        let bits = Vec::<i16>::try_from(&w.contiguous().view(-1).view_dtype(Kind::Int16)).unwrap();
        let ws: Vec<u16> = bits.iter().map(|&v| v as u16).collect();
        smallmm::matmul_rows_bf16_on(b, &xs, rows, k, &ws, n, &mut out);
    }
    Tensor::from_slice(&out).view([rows as i64, n as i64])
}

fn backends() -> Vec<Backend> {
    [Backend::Avx512, Backend::Avx2, Backend::Portable8]
        .into_iter()
        .filter(|b| b.supported())
        .collect()
}

/// Every row count 1-32 on columns that are no multiple of any vector width, on every backend this CPU has, f32 and
/// bf16 weights (libtorch in f32 on the widened weights), within the bound.
#[test]
fn rows_1_to_32_on_odd_shapes_match_libtorch() {
    let (k, n) = (257, 1031);
    let (x, w) = operands(MAX_ROWS as i64, k, n, 1);
    let wb = w.to_kind(Kind::BFloat16);
    let (want, want_b) = (x.matmul(&w.tr()), x.matmul(&wb.to_kind(Kind::Float).tr()));
    for b in backends() {
        for rows in 1..=MAX_ROWS as i64 {
            let xr = x.narrow(0, 0, rows);
            let err = row_relative_error(&with_backend(b, &xr, &w), &want.narrow(0, 0, rows));
            assert!(err < BOUND, "{b:?} f32, {rows} rows: {err:e}");
            let err = row_relative_error(&with_backend(b, &xr, &wb), &want_b.narrow(0, 0, rows));
            assert!(err < BOUND, "{b:?} bf16, {rows} rows: {err:e}");
        }
    }
}

/// bf16 values' bits, as the slice functions take them.
fn bf16_bits(t: &Tensor) -> Vec<u16> {
    let bits = Vec::<i16>::try_from(&t.contiguous().view(-1).view_dtype(Kind::Int16)).unwrap();
    bits.iter().map(|&v| v as u16).collect()
}

/// bf16 rows against bf16 weights in pairs (AVX-512 BF16's `vdpbf16ps` where the CPU has it, and the portable
/// backends, which follow it): every row count 1-32 with 129 pairs (no multiple of any lane count), and the model
/// widths, against libtorch's f32 product of the same values, within the bound.
#[test]
fn bf16_dot_matches_libtorch() {
    let dot = [Backend::Avx512, Backend::Portable16, Backend::Portable8]
        .into_iter()
        .filter(|b| b.runs_bf16_dot())
        .collect::<Vec<_>>();
    let product = |b: Backend, x: &Tensor, w: &Tensor| {
        let ((rows, k), n) = ((x.size()[0] as usize, x.size()[1] as usize), w.size()[0] as usize);
        let mut out = vec![0.0f32; rows * n];
        smallmm::matmul_rows_bf16_dot_on(b, &bf16_bits(x), rows, k, &bf16_bits(w), n, &mut out);
        Tensor::from_slice(&out).view([rows as i64, n as i64])
    };
    let exact =
        |x: &Tensor, w: &Tensor| x.to_kind(Kind::Float).matmul(&w.to_kind(Kind::Float).tr());
    let (x, w) = operands(MAX_ROWS as i64, 258, 1031, 11);
    let (x, w) = (x.to_kind(Kind::BFloat16), w.to_kind(Kind::BFloat16));
    let want = exact(&x, &w);
    for &b in &dot {
        for rows in 1..=MAX_ROWS as i64 {
            let err = row_relative_error(
                &product(b, &x.narrow(0, 0, rows), &w),
                &want.narrow(0, 0, rows),
            );
            assert!(err < BOUND, "{b:?}, {rows} rows: {err:e}");
        }
    }
    for (i, &(rows, k, n)) in
        [(1, 256, 4099), (24, 2048, 300), (8, 2304, 129), (2, 16384, 64)].iter().enumerate()
    {
        let (x, w) = operands(rows, k, n, 20 + i as i64);
        let (x, w) = (x.to_kind(Kind::BFloat16), w.to_kind(Kind::BFloat16));
        let err = row_relative_error(&product(dot[0], &x, &w), &exact(&x, &w));
        assert!(err < BOUND, "{:?} {rows}×{k}×{n}: {err:e}", dot[0]);
    }
}

/// The model's widths (256: the mid-size benchmark model, 2048 / 2304 / 16384: PaliGemma 1 and 2), via the adapter.
#[test]
fn model_widths_match_libtorch() {
    for (i, &(rows, k, n)) in
        [(1, 256, 4099), (24, 256, 777), (3, 2048, 300), (8, 2304, 129), (2, 16384, 64)]
            .iter()
            .enumerate()
    {
        let (x, w) = operands(rows, k, n, 10 + i as i64);
        let err = row_relative_error(&try_linear(&x, &w).unwrap(), &x.linear::<Tensor>(&w, None));
        assert!(err < BOUND, "{rows}×{k}×{n}: {err:e}");
    }
}

/// bf16 activations and weights give bf16, as libtorch does; the f32 sums are rounded once, so the result is within
/// one bf16 rounding (2⁻⁸ relative) of libtorch's, which rounds its own sums.
#[test]
fn bf16_activations_give_bf16() {
    let (x, w) = operands(5, 300, 257, 4);
    let (x, w) = (x.to_kind(Kind::BFloat16), w.to_kind(Kind::BFloat16));
    let ours = try_linear(&x, &w).unwrap();
    assert_eq!(ours.kind(), Kind::BFloat16);
    let exact = x.to_kind(Kind::Float).matmul(&w.to_kind(Kind::Float).tr());
    assert!(row_relative_error(&ours, &exact) < 2f64.powi(-8));
    assert!(row_relative_error(&ours, &x.linear::<Tensor>(&w, None)) < 2f64.powi(-7));
}

/// The adapter's bf16 results are its f32 sums rounded by libtorch's own conversion, bit for bit: the kernel rounds
/// as it writes, as `to_kind` does (bf16 weights in pairs where the CPU has AVX-512 BF16, else widened; f32 weights
/// are refused with bf16 rows).
#[test]
fn bf16_results_are_rounded_as_libtorch_rounds() {
    for (rows, k, n) in [(3, 256, 1031), (24, 64, 4099)] {
        let (x, w) = operands(rows, k, n, 12);
        let (x, w) = (x.to_kind(Kind::BFloat16), w.to_kind(Kind::BFloat16));
        let ours = try_linear(&x, &w).unwrap();
        let (xs, ws) = (bf16_bits(&x), bf16_bits(&w));
        let (rows, k, n) = (rows as usize, k as usize, n as usize);
        let mut sums = vec![0.0f32; rows * n];
        if smallmm::bf16_dot(k) {
            smallmm::matmul_rows_bf16_dot(&xs, rows, k, &ws, n, &mut sums);
        } else {
            let xf = Vec::<f32>::try_from(&x.to_kind(Kind::Float).view(-1)).unwrap();
            smallmm::matmul_rows_bf16(&xf, rows, k, &ws, n, &mut sums);
        }
        let rounded = Tensor::from_slice(&sums).to_kind(Kind::BFloat16);
        assert_eq!(bf16_bits(&ours), bf16_bits(&rounded), "{rows}×{k}×{n}");
    }
}

/// Leading dimensions are rows; non-contiguous x is copied; 0 rows give an empty result of the right shape.
#[test]
fn shapes_and_layouts_of_x() {
    let (x, w) = operands(6, 40, 33, 5);
    let want = x.matmul(&w.tr());
    let x3 = x.view([2, 3, 40]);
    assert_eq!(try_linear(&x3, &w).unwrap().size(), [2, 3, 33]);
    assert!(row_relative_error(&try_linear(&x3, &w).unwrap().view([6, 33]), &want) < BOUND);
    let x1 = x.get(2);
    assert!(row_relative_error(&try_linear(&x1, &w).unwrap(), &want.get(2)) < BOUND);
    // A column-major copy of x, and every other row of a taller x: both strided views.
    let xt = x.tr().contiguous().tr();
    assert!(!xt.is_contiguous());
    assert!(row_relative_error(&try_linear(&xt, &w).unwrap(), &want) < BOUND);
    let tall = Tensor::stack(&[&x, &x], 1).view([12, 40]);
    let every_other = tall.slice(0, 0, 12, 2);
    assert!(!every_other.is_contiguous());
    assert!(row_relative_error(&try_linear(&every_other, &w).unwrap(), &want) < BOUND);
    let empty = try_linear(&x.narrow(0, 0, 0), &w).unwrap();
    assert_eq!(empty.size(), [0, 33]);
}

/// What the adapter leaves to libtorch: strided weights, more than 32 rows, other dtypes, a mismatched width, and a
/// product autograd must record.
#[test]
fn refused_cases_fall_back() {
    let (x, w) = operands(4, 64, 48, 6);
    let w_view = Tensor::cat(&[&w, &w], 1).narrow(1, 0, 64);
    assert!(!w_view.is_contiguous());
    assert!(try_linear(&x, &w_view).is_none(), "strided weights");
    assert!(try_linear(&x, &w.tr().contiguous().tr()).is_none(), "transposed weights");
    let (tall, _) = operands(MAX_ROWS as i64 + 1, 64, 1, 7);
    assert!(try_linear(&tall, &w).is_none(), "33 rows");
    assert!(try_linear(&x.to_kind(Kind::Double), &w.to_kind(Kind::Double)).is_none(), "f64");
    assert!(try_linear(&x.to_kind(Kind::BFloat16), &w).is_none(), "bf16 x with f32 w");
    assert!(try_linear(&x.narrow(1, 0, 63), &w).is_none(), "k mismatch");
    let wg = w.set_requires_grad(true);
    assert!(try_linear(&x, &wg).is_none(), "autograd on");
    tch::no_grad(|| assert!(try_linear(&x, &wg).is_some(), "no_grad"));
}

/// f32 activations with bf16 weights (the output head of a bf16 model, kept in f32): f32 logits.
#[test]
fn f32_activations_with_bf16_weights() {
    let (x, w) = operands(3, 256, 500, 8);
    let wb = w.to_kind(Kind::BFloat16);
    let ours = try_linear(&x, &wb).unwrap();
    assert_eq!(ours.kind(), Kind::Float);
    assert!(row_relative_error(&ours, &x.matmul(&wb.to_kind(Kind::Float).tr())) < BOUND);
}

/// `linear` applies `smallmm::chosen`: an f32 layer at 32 rows (`MAX_ROWS`) goes to the kernel, at 33 to libtorch.
#[test]
fn linear_follows_the_rule() {
    let (x, w) = operands(33, 256, 256, 9);
    if !Backend::best().is_simd() || !smallmm::enabled() {
        assert!(smallmm::linear(&x, &w).is_none());
        return;
    }
    let most = x.narrow(0, 0, 32);
    let ours = smallmm::linear(&most, &w).expect("32 rows of f32 are the kernel's");
    assert!(row_relative_error(&ours, &most.matmul(&w.tr())) < BOUND);
    assert!(smallmm::linear(&x, &w).is_none(), "33 rows are libtorch's");
}

/// `linear_softcapped` is libtorch's `tanh(x Wᵀ / c) · c` (Gemma 2's final logits, as `gemma::Gemma::logits` caps them)
/// within the bound, f32 and bf16 weights (where `chosen` takes them), on one thread and two (a vocabulary of 64K rows
/// is streamed); bf16 x and 33 rows are declined.
#[test]
fn soft_capped_products_match_libtorch() {
    if !Backend::best().is_simd() || !smallmm::enabled() {
        return;
    }
    let cap = 30.0;
    for (rows, n) in [(1, 300), (8, 65_536), (24, 1000)] {
        let (x, w) = operands(rows, 256, n, 10);
        // Logits of a few times the cap, so that the cap matters.
        let x = x * 100.0;
        for w in [w.shallow_clone(), w.to_kind(Kind::BFloat16)] {
            let kind = smallmm::WeightKind::of(false, w.kind() == Kind::BFloat16, 256);
            let Some(ours) = smallmm::linear_softcapped(&x, &w, cap as f32) else {
                assert!(!smallmm::chosen(rows as usize, n as usize, 256, kind), "{rows} × {n}");
                continue;
            };
            let want = (x.matmul(&w.to_kind(Kind::Float).tr()) / cap).tanh() * cap;
            let err = row_relative_error(&ours, &want);
            assert!(err < BOUND, "{rows} rows of {n}, {:?}: {err:.2e}", w.kind());
            assert!(f64::try_from(want.abs().max()).unwrap() > 0.99 * cap);
        }
    }
    let (x, w) = operands(4, 64, 48, 11);
    let wb = w.to_kind(Kind::BFloat16);
    assert!(smallmm::linear_softcapped(&x.to_kind(Kind::BFloat16), &wb, 30.0).is_none());
    let (tall, _) = operands(MAX_ROWS as i64 + 1, 64, 1, 12);
    assert!(smallmm::linear_softcapped(&tall, &w, 30.0).is_none());
}

/// `math::softcap` (Cephes' tanh) against libtorch's `tanh(x / c) · c` (SLEEF's 1-ulp tanh) value by value: logit-like
/// values, the switch between tanh's two forms (|x / c| = 0.625), saturation and tiny values within 4e-7 relative;
/// -0 keeps its sign, NaN stays NaN, ±inf caps to ±c.
#[test]
fn softcap_matches_libtorch_within_a_few_ulp() {
    tch::manual_seed(0);
    let cap = 30.0;
    let mut xs: Vec<f32> =
        Vec::try_from(Tensor::randn([1 << 20], (Kind::Float, Device::Cpu)) * 60.0).unwrap();
    let edges =
        [0.0f32, -0.0, 1e-30, -1e-20, 1e-6, 18.75, -18.75, 18.7501, 270.3, 271.0, 1e4, -3e38];
    xs.extend(edges);
    xs.extend((0..20_000).map(|i| (i as f32 - 10_000.0) * 0.0311));
    let want = Vec::<f32>::try_from((Tensor::from_slice(&xs) / cap).tanh() * cap).unwrap();
    let mut worst = 0.0f64;
    for (&x, &w) in xs.iter().zip(&want) {
        let g = smallmm::math::softcap(x, cap as f32);
        let err = (f64::from(g) - f64::from(w)).abs() / f64::from(w.abs()).max(1e-30);
        assert!(err <= 4e-7 || g == w, "x = {x}: {g} against libtorch's {w} (relative {err:.2e})");
        worst = worst.max(if g == w { 0.0 } else { err });
    }
    assert!(smallmm::math::softcap(-0.0, 30.0).is_sign_negative(), "-0 keeps its sign");
    assert!(smallmm::math::softcap(f32::NAN, 30.0).is_nan());
    assert_eq!(smallmm::math::softcap(f32::INFINITY, 30.0), 30.0);
    assert_eq!(smallmm::math::softcap(f32::NEG_INFINITY, 30.0), -30.0);
    eprintln!("largest relative difference from libtorch: {worst:.2e}");
}
