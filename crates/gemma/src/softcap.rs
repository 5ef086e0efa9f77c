//! Gemma 2's final-logit soft-capping `c · tanh(x / c)` for a decoding step's logits (f32, CPU), in one vectorised
//! pass in Rust.
//!
//! libtorch's `tanh_` (SLEEF's 1-ulp `tanhf`) takes about 2.3 ms per million values on one thread of the development
//! machine, so capping the vocabulary-wide logits of 8 rows cost PaliGemma 2 about 4 ms of a 15 ms decoding step
//! (docs/benchmarks.md, issue 14). Here tanh follows Cephes `tanhf` and `expf` (S. L. Moshier, Cephes Mathematical
//! Library, <https://www.netlib.org/cephes/>): an odd polynomial below |x| = 0.625, `1 - 2 / (exp(2|x|) + 1)` above,
//! with Cephes' range reduction and polynomial for exp, written branch-free so the compiler vectorises it (AVX-512 or
//! AVX2 chosen at run time, the binary stays plain x86-64). Results differ from libtorch's by a few units in the last
//! place (the unit test bounds it at 4e-7 relative), far inside issue 14's 1e-5 on logits; NaN stays NaN and ±inf
//! caps to ±c as in libtorch. Every value is computed alone, so a row's result does not depend on the others or on
//! the split over threads. `tanh` and `exp` live in `smallmm::math`, shared with the decoding step's attention
//! (`decode_attention.rs`) and beam search's log-probabilities (`paligemma::select`).

use smallmm::math::tanh;

smallmm::widest_vectors!(
    /// `x ← c · tanh(x / c)` for every value of `xs`, on this thread.
    pub fn softcap_in_place(xs: &mut [f32], cap: f32) = softcap_loop
);

/// The loop every backend compiles (Rust never fuses `a * b + c` on its own, so all backends give the same bits).
#[inline(always)]
fn softcap_loop(xs: &mut [f32], cap: f32) {
    for x in xs {
        *x = cap * tanh(*x / cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    /// libtorch's soft-capping, as `Gemma::softcap` and transformers compute it.
    fn libtorch(xs: &[f32], cap: f64) -> Vec<f32> {
        let t = Tensor::from_slice(xs);
        Vec::try_from((t / cap).tanh() * cap).unwrap()
    }

    #[test]
    fn matches_libtorch_within_a_few_ulp() {
        tch::manual_seed(0);
        let cap = 30.0;
        // Logit-like values, the switch between the two forms, saturation, and tiny values.
        let mut xs: Vec<f32> =
            Vec::try_from(Tensor::randn([1 << 20], (Kind::Float, Device::Cpu)) * 60.0).unwrap();
        let edges =
            [0.0f32, -0.0, 1e-30, -1e-20, 1e-6, 18.75, -18.75, 18.7501, 270.3, 271.0, 1e4, -3e38];
        xs.extend(edges);
        xs.extend((0..20_000).map(|i| (i as f32 - 10_000.0) * 0.0311));
        let want = libtorch(&xs, cap);
        let mut got = xs.clone();
        softcap_in_place(&mut got, cap as f32);
        let mut worst = 0.0f64;
        for ((&x, &g), &w) in xs.iter().zip(&got).zip(&want) {
            let err = (f64::from(g) - f64::from(w)).abs() / f64::from(w.abs()).max(1e-30);
            assert!(
                err <= 4e-7 || g == w,
                "x = {x}: {g} against libtorch's {w} (relative {err:.2e})"
            );
            worst = worst.max(if g == w { 0.0 } else { err });
        }
        assert!(got[xs.len() - 20_000 - edges.len() + 1].is_sign_negative(), "-0 keeps its sign");
        eprintln!("largest relative difference from libtorch: {worst:.2e}");
    }

    #[test]
    fn nan_stays_nan_and_infinities_cap() {
        let mut xs = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
        softcap_in_place(&mut xs, 30.0);
        assert!(xs[0].is_nan());
        assert_eq!(&xs[1..], &[30.0, -30.0]);
    }

    #[test]
    fn every_backend_gives_the_same_bits() {
        let xs: Vec<f32> = (0..4099).map(|i| (i as f32 - 2049.0) * 0.137).collect();
        let mut plain = xs.clone();
        softcap_loop(&mut plain, 30.0);
        let mut best = xs.clone();
        softcap_in_place(&mut best, 30.0);
        assert_eq!(
            plain.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            best.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}
