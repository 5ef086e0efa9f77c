//! Rotary position embeddings, rotate-half layout over the full head dimension.
//!
//! Tables are built in f32 from integer positions (prompts are >= 258 tokens, and integers above 256 are not exact
//! in bf16) and cast to the activation dtype at the end, as transformers does.
//!
//! A cached decoding step's few positions (f32, CPU, no gradient) are rotated in one pass in Rust, with libtorch's
//! roundings (each product rounded, then the sum), so bit for bit: the libtorch form is five small ops per tensor,
//! about 5 µs each on a decoding step's one libtorch thread (docs/benchmarks.md, issue 14).
use tch::{Device, Kind, Tensor};

#[derive(Debug)]
pub struct Rope {
    /// `[head_dim / 2]`, f32: `1 / theta^(2i / head_dim)`.
    inv_freq: Tensor,
}

impl Rope {
    pub fn new(head_dim: i64, theta: f64, device: Device) -> Self {
        let exponents = Tensor::arange_start_step(0, head_dim, 2, (Kind::Int64, device))
            .to_kind(Kind::Float)
            / head_dim as f64;
        let inv_freq = Tensor::pow_scalar(theta, &exponents).reciprocal();
        Self { inv_freq }
    }

    /// `positions [B, L]` (integers) -> `(cos, sin)`, each `[B, 1, L, head_dim]` in `kind`.
    pub fn tables(&self, positions: &Tensor, kind: Kind) -> (Tensor, Tensor) {
        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1)
            * self.inv_freq.to_device(positions.device());
        let emb = Tensor::cat(&[&freqs, &freqs], -1).unsqueeze(1);
        (emb.cos().to_kind(kind), emb.sin().to_kind(kind))
    }

    /// `x * cos + rotate_half(x) * sin` for `x [B, H, L, head_dim]`.
    pub fn apply(xs: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
        apply_rows(xs, cos, sin).unwrap_or_else(|| apply_libtorch(xs, cos, sin))
    }
}

/// [`Rope::apply`] for every other input, in libtorch ops.
fn apply_libtorch(xs: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    let half = xs.size()[3] / 2;
    let x1 = xs.narrow(3, 0, half);
    let x2 = xs.narrow(3, half, half);
    let rotated = Tensor::cat(&[&x2.neg(), &x1], 3);
    xs * cos + rotated * sin
}

/// The one-pass form of [`Rope::apply`] for at most `smallmm::MAX_ROWS` positions (`B * L`) of contiguous f32 CPU
/// tensors without autograd; `None` otherwise (and when `PGRS_SMALLMM=0` turns the decoding kernels off).
fn apply_rows(xs: &Tensor, cos: &Tensor, sin: &Tensor) -> Option<Tensor> {
    let (b, h, l, hd) = xs.size4().ok()?;
    // A table's rows are the positions (`B * L`) of every head.
    let ok = cos.size() == [b, 1, l, hd]
        && sin.size() == [b, 1, l, hd]
        && hd % 2 == 0
        && smallmm::takes_rows(&[cos, sin, xs], hd);
    if !ok {
        return None;
    }
    let out = Tensor::empty([b, h, l, hd], (Kind::Float, Device::Cpu));
    let (b, h, l, hd) = (b as usize, h as usize, l as usize, hd as usize);
    // SAFETY: the three inputs are contiguous f32 CPU tensors of the sizes checked above (`data_ptr` includes the
    // storage offset), and `out` is a new tensor of `b * h * l * hd` f32 with no other reference.
    unsafe {
        let x = std::slice::from_raw_parts(xs.data_ptr() as *const f32, b * h * l * hd);
        let c = std::slice::from_raw_parts(cos.data_ptr() as *const f32, b * l * hd);
        let s = std::slice::from_raw_parts(sin.data_ptr() as *const f32, b * l * hd);
        let o = std::slice::from_raw_parts_mut(out.data_ptr() as *mut f32, b * h * l * hd);
        for (i, (x, o)) in x.chunks_exact(hd).zip(o.chunks_exact_mut(hd)).enumerate() {
            // Row i is (batch i / (h l), head, position i % l); its table row is (batch, position).
            let t = (i / (h * l) * l + i % l) * hd;
            rotate(x, &c[t..t + hd], &s[t..t + hd], o);
        }
    }
    Some(out)
}

/// One row: `o = x * c + rotate_half(x) * s`, `rotate_half(x) = [-x2, x1]`.
fn rotate(x: &[f32], c: &[f32], s: &[f32], o: &mut [f32]) {
    let half = x.len() / 2;
    let (x1, x2) = x.split_at(half);
    for j in 0..half {
        o[j] = x1[j] * c[j] + (-x2[j]) * s[j];
        o[half + j] = x2[j] * c[half + j] + x1[j] * s[half + j];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_pass_rotation_equals_libtorch_bit_for_bit() {
        tch::manual_seed(5);
        let rope = Rope::new(64, 10_000.0, Device::Cpu);
        for (b, h, l) in [(1, 4, 1), (3, 1, 1), (8, 4, 1), (2, 3, 5), (32, 2, 1)] {
            let pos = Tensor::randint(2000, [b, l], (Kind::Int64, Device::Cpu));
            let (cos, sin) = rope.tables(&pos, Kind::Float);
            let xs = Tensor::randn([b, h, l, 64], (Kind::Float, Device::Cpu));
            let got = apply_rows(&xs, &cos, &sin).expect("handled");
            let want = apply_libtorch(&xs, &cos, &sin);
            assert!(got.equal(&want), "({b}, {h}, {l})");
        }
        // More than 32 positions, and a non-contiguous input, go to libtorch.
        let pos = Tensor::zeros([1, 33], (Kind::Int64, Device::Cpu));
        let (cos, sin) = rope.tables(&pos, Kind::Float);
        assert!(apply_rows(&Tensor::zeros([1, 2, 33, 64], (Kind::Float, Device::Cpu)), &cos, &sin)
            .is_none());
        let (cos, sin) = rope.tables(&pos.narrow(1, 0, 2), Kind::Float);
        let strided = Tensor::zeros([1, 2, 64, 2], (Kind::Float, Device::Cpu)).transpose(2, 3);
        assert!(apply_rows(&strided, &cos, &sin).is_none());
    }
}
