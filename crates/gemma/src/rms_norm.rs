//! Gemma RMSNorm: `x * rsqrt(mean(x^2) + eps) * (1 + w)`, all in f32, cast back to the activation dtype after the
//! multiply (transformers' order; candle casts before it, which differs in bf16).
//!
//! A cached decoding step's few rows (f32, CPU, no gradient) are normalised in one pass in Rust: the libtorch form
//! is eight small ops, about 5 µs each on the one libtorch thread of a decoding step (docs/benchmarks.md, issue 14),
//! for a few thousand numbers. The pass squares, sums, divides and multiplies in the same order with the same
//! roundings; only the sum of squares is added up in another order, a relative difference of about 1e-7.
use tch::{nn, Device, Kind, Tensor};
use weights::ParamInit;

#[derive(Debug)]
pub struct RmsNorm {
    pub weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(path: nn::Path, dim: i64, eps: f64, init: ParamInit) -> Self {
        Self { weight: path.var("weight", &[dim], init.zeros()), eps }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        self.forward_rows(xs).unwrap_or_else(|| self.forward_libtorch(xs))
    }

    /// The form every other input takes, in libtorch ops.
    fn forward_libtorch(&self, xs: &Tensor) -> Tensor {
        let x = xs.to_kind(Kind::Float);
        let normed = &x * (x.square().mean_dim(-1, true, Kind::Float) + self.eps).rsqrt();
        (normed * (self.weight.to_kind(Kind::Float) + 1.0)).to_kind(xs.kind())
    }

    /// The one-pass form for at most `smallmm::MAX_ROWS` contiguous f32 rows on the CPU without autograd, `None`
    /// otherwise (and when `PGRS_SMALLMM=0` turns the decoding kernels off).
    fn forward_rows(&self, xs: &Tensor) -> Option<Tensor> {
        let w = &self.weight;
        let d = *xs.size().last()?;
        let ok = w.size() == [d] && smallmm::takes_rows(&[xs, w], d);
        if !ok {
            return None;
        }
        let out = Tensor::empty(xs.size().as_slice(), (Kind::Float, Device::Cpu));
        let (n, d) = (xs.numel(), d as usize);
        // SAFETY: `xs` and `w` are contiguous f32 CPU tensors of `n` and `d` elements (checked above, `data_ptr`
        // includes the storage offset), and `out` is a new tensor of `n` f32 with no other reference.
        unsafe {
            let x = std::slice::from_raw_parts(xs.data_ptr() as *const f32, n);
            let w = std::slice::from_raw_parts(w.data_ptr() as *const f32, d);
            let o = std::slice::from_raw_parts_mut(out.data_ptr() as *mut f32, n);
            norm_rows(x, w, self.eps as f32, o);
        }
        Some(out)
    }
}

/// `out = x * (1 / sqrt(sum(x * x) / d + eps)) * (1 + w)` per row of `d = w.len()`; each product rounded on its own
/// as libtorch's separate ops round them (Rust never contracts them into fused multiply-adds).
fn norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    const LANES: usize = 16;
    let d = w.len();
    for (row, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let mut acc = [0f32; LANES];
        let chunks = row.chunks_exact(LANES);
        let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
        for c in chunks {
            for (a, v) in acc.iter_mut().zip(c) {
                *a += v * v;
            }
        }
        let sum = acc.iter().sum::<f32>() + tail;
        let scale = 1.0 / (sum / d as f32 + eps).sqrt();
        for ((o, v), w) in o.iter_mut().zip(row).zip(w) {
            *o = (v * scale) * (1.0 + w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_pass_rows_match_libtorch_and_decline_what_they_do_not_handle() {
        let vs = nn::VarStore::new(Device::Cpu);
        tch::manual_seed(3);
        for d in [7i64, 16, 256, 2304] {
            let norm = RmsNorm::new(vs.root().sub(d), d, 1e-6, ParamInit::Normal { std: 0.3 });
            for rows in [1i64, 3, 8, 32] {
                let xs = Tensor::randn([rows, 1, d], (Kind::Float, Device::Cpu)) * 3.0;
                let got = tch::no_grad(|| norm.forward_rows(&xs)).expect("handled");
                let want = norm.forward_libtorch(&xs);
                let err = f64::try_from((&got - &want).abs().max()).unwrap();
                let scale = f64::try_from(want.abs().max()).unwrap();
                assert!(err <= 1e-6 * scale, "d {d} rows {rows}: {err} vs {scale}");
            }
            let x = Tensor::randn([2, d], (Kind::Float, Device::Cpu));
            // Autograd on (the weight requires a gradient), too many rows, a non-contiguous input, another dtype.
            assert!(norm.forward_rows(&x).is_none());
            tch::no_grad(|| {
                let many = Tensor::randn([33, d], (Kind::Float, Device::Cpu));
                assert!(norm.forward_rows(&many).is_none());
                let strided = Tensor::randn([d, 2], (Kind::Float, Device::Cpu)).tr();
                assert!(norm.forward_rows(&strided).is_none());
                assert!(norm.forward_rows(&x.to_kind(Kind::Double)).is_none());
                assert!(norm
                    .forward_rows(&Tensor::zeros([0, d], (Kind::Float, Device::Cpu)))
                    .is_none());
            });
        }
    }
}
