//! Activation functions by their HF `config.json` names.
//!
//! A cached decoding step's gated product `act(gate) · up` (GeGLU, f32, CPU, no gradient, a few rows) runs in one
//! vectorised Rust pass for the tanh GELU: on a decoding step's one libtorch thread, libtorch's `gelu` and `mul` took
//! 25 µs per layer at 8 rows and 72 µs at 24 (the mid-size model's 2,048-wide MLP), the pass 12.5 and 35 µs
//! (docs/benchmarks.md, issue 14). The pass follows libtorch's formula and order
//! (`aten/src/ATen/native/cpu/Activation.cpp`, `GeluKernelImpl`: `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))`); only
//! tanh is another's (Cephes', `smallmm::math`), a few units in the last place apart.
use serde::Deserialize;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum Activation {
    /// tanh approximation of GELU. HF's `gelu_pytorch_tanh` and Flax's default `nn.gelu`; `gelu_new` and
    /// `gelu_fast` are the same function written differently.
    #[serde(rename = "gelu_pytorch_tanh", alias = "gelu_new", alias = "gelu_fast")]
    GeluTanh,
    /// Exact (erf) GELU.
    #[serde(rename = "gelu")]
    Gelu,
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    #[serde(rename = "silu", alias = "swish")]
    Silu,
    #[serde(rename = "relu")]
    Relu,
}

impl Activation {
    pub fn forward(self, xs: &Tensor) -> Tensor {
        match self {
            Self::GeluTanh => xs.gelu("tanh"),
            Self::Gelu => xs.gelu("none"),
            Self::QuickGelu => xs * (xs * 1.702).sigmoid(),
            Self::Silu => xs.silu(),
            Self::Relu => xs.relu(),
        }
    }

    /// `act(gate) · up` (a gated MLP's product), in one Rust pass where [`gated_rows`] takes it.
    pub fn forward_gated(self, gate: &Tensor, up: &Tensor) -> Tensor {
        gated_rows(self, gate, up).unwrap_or_else(|| self.forward(gate) * up)
    }
}

/// The one-pass form of `act(gate) · up` for the tanh GELU on at most `smallmm::MAX_ROWS` rows of contiguous f32 CPU
/// tensors of one shape without autograd; `None` otherwise (and when `PGRS_SMALLMM=0` turns the decoding kernels off).
fn gated_rows(act: Activation, gate: &Tensor, up: &Tensor) -> Option<Tensor> {
    let d = *gate.size().last()?;
    let ok = act == Activation::GeluTanh
        && gate.size() == up.size()
        && smallmm::takes_rows(&[gate, up], d);
    if !ok {
        return None;
    }
    let out = Tensor::empty(gate.size().as_slice(), (Kind::Float, Device::Cpu));
    let n = gate.numel();
    // SAFETY: `gate` and `up` are contiguous f32 CPU tensors of `n` elements (checked above; `data_ptr` includes the
    // storage offset), and `out` is a new tensor of `n` f32 with no other reference.
    unsafe {
        let g = std::slice::from_raw_parts(gate.data_ptr() as *const f32, n);
        let u = std::slice::from_raw_parts(up.data_ptr() as *const f32, n);
        let o = std::slice::from_raw_parts_mut(out.data_ptr() as *mut f32, n);
        gelu_tanh_gated(g, u, o);
    }
    Some(out)
}

smallmm::widest_vectors!(
    /// `out = gelu_tanh(gate) · up`, value by value, on the widest vectors this CPU has.
    fn gelu_tanh_gated(gate: &[f32], up: &[f32], out: &mut [f32]) = gelu_tanh_gated_loop
);

/// libtorch's constants and order: `inner = β (x + κ x³)` with `x³ = (x x) x`, then `(0.5 x)(1 + tanh(inner))`, each
/// product rounded on its own (Rust never fuses them), times `up` last as libtorch's separate `mul` does.
#[inline(always)]
fn gelu_tanh_gated_loop(gate: &[f32], up: &[f32], out: &mut [f32]) {
    const BETA: f32 = (std::f64::consts::SQRT_2 * std::f64::consts::FRAC_2_SQRT_PI * 0.5) as f32;
    const KAPPA: f32 = 0.044715;
    for ((o, &x), &u) in out.iter_mut().zip(gate).zip(up) {
        let inner = BETA * (x + KAPPA * (x * x * x));
        *o = 0.5 * x * (1.0 + smallmm::math::tanh(inner)) * u;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gated_pass_matches_libtorch_and_declines_what_it_does_not_handle() {
        tch::manual_seed(5);
        let f32s =
            |shape: &[i64], scale: f64| Tensor::randn(shape, (Kind::Float, Device::Cpu)) * scale;
        for (rows, d) in [(1i64, 2048i64), (3, 17), (8, 2048), (24, 2048), (32, 1)] {
            // Values from deep in the negative tail (GELU ≈ 0) to large positive ones (GELU ≈ x).
            let (gate, up) = (f32s(&[rows, 1, d], 4.0), f32s(&[rows, 1, d], 1.0));
            let got = gated_rows(Activation::GeluTanh, &gate, &up).expect("handled");
            let want = gate.gelu("tanh") * &up;
            let err = f64::try_from((&got - &want).abs().max()).unwrap();
            let scale = f64::try_from(want.abs().max()).unwrap();
            // Measured 1-2e-8 of the largest value (tanh's last bits); κ off by 1e-4 of itself gives 3-6e-7.
            assert!(err <= 1e-7 * scale, "{rows} × {d}: {err:.2e} of {scale:.2e}");
            // Value by value, the same function: one row alone gives the same bits.
            let one = gated_rows(Activation::GeluTanh, &gate.get(0), &up.get(0)).unwrap();
            assert!(one.equal(&got.get(0)), "{rows} × {d}");
        }
        let (g, u) = (f32s(&[2, 64], 1.0), f32s(&[2, 64], 1.0));
        assert!(gated_rows(Activation::Gelu, &g, &u).is_none(), "erf GELU");
        assert!(gated_rows(Activation::GeluTanh, &f32s(&[33, 64], 1.0), &f32s(&[33, 64], 1.0))
            .is_none());
        assert!(gated_rows(Activation::GeluTanh, &g, &f32s(&[2, 32], 1.0)).is_none(), "shapes");
        let strided = f32s(&[64, 2], 1.0).tr();
        assert!(gated_rows(Activation::GeluTanh, &strided, &u).is_none(), "strided");
        let bf = g.to_kind(Kind::BFloat16);
        assert!(gated_rows(Activation::GeluTanh, &bf, &u.to_kind(Kind::BFloat16)).is_none());
        let trained = g.set_requires_grad(true);
        assert!(gated_rows(Activation::GeluTanh, &trained, &u).is_none(), "autograd");
        // Through `forward_gated` either way, the same function.
        let all = Activation::GeluTanh.forward_gated(&trained, &u);
        assert!(all.requires_grad());
        let err = f64::try_from((all - g.gelu("tanh") * &u).abs().max()).unwrap();
        assert!(err < 1e-6);
    }
}
