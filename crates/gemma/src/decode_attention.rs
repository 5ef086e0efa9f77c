//! Attention for the few query rows of a cached decoding step (f32, CPU, no autograd) in Rust: scores against the
//! cached keys (`smallmm`'s tiled kernel), Gemma 2's soft-capping when the config has it, the mask, softmax and the
//! weighted sum of the values, reading each cached key and value once.
//!
//! The same math as `Attention::fused` (SDPA) and [`crate::capped_attention`]: `softmax(s + mask) v` with
//! `s = scale q·k`, or `s = cap tanh(q·k scale / cap)` (transformers 5.23 `eager_attention_forward`). In libtorch a
//! step ran SDPA on the one libtorch thread of a decoding step (0.66 ms of a PaliGemma 1 batch-8 step over 4 layers
//! for 4.6 MB of cache) or the capped form's dozen small ops per layer (docs/benchmarks.md, issue 14). Sums run in
//! another order and tanh / exp are Cephes' (`smallmm::math`), so outputs differ from libtorch's by rounding (unit
//! tests: within 2e-6 of the largest output); each query row is computed alone, so a row in a batch equals it alone.
use smallmm::math::{exp, lanes, tanh};
use tch::{Device, Kind, Tensor};

/// Most query positions per row handled (a cached decoding step has 1).
const MAX_QUERY_LEN: i64 = 4;

/// Work (query rows × keys × head size) from which the batch rows are spread over the threads of `smallmm::pool`.
const PARALLEL_FROM: i64 = 1 << 18;

/// `softmax(s + mask) v` for `q [B, H, L, hd]`, `k`/`v` `[B, KV, T, hd]` (each KV head serving `H / KV` query heads,
/// each head's `T` rows contiguous, as in views of the KV cache's buffers) and `mask [B, 1, L, T]` (bool, true =
/// attend), or `None` where libtorch should compute it: another dtype or device, a gradient to record, more than `MAX_QUERY_LEN`
/// positions or `smallmm::MAX_ROWS` query rows, a query row that attends nothing, or `PGRS_SMALLMM=0`. Returns
/// `[B, H, L, hd]` as a view of a `[B, L, H, hd]` tensor, the layout `o_proj` reads.
pub fn decode_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    scale: f64,
    softcap: Option<f64>,
) -> Option<Tensor> {
    let shapes = Shapes::of(q, k, v, mask)?;
    let all_f32 = [q, k, v].iter().all(|t| t.kind() == Kind::Float && t.device() == Device::Cpu);
    if !(smallmm::enabled() && all_f32 && mask.kind() == Kind::Bool && mask.device() == Device::Cpu)
        || smallmm::records_gradient(q, k)
        || smallmm::records_gradient(v, v)
    {
        return None;
    }
    let mask = mask.expand([shapes.b, 1, shapes.l, shapes.t], false).contiguous();
    let q = q.contiguous();
    let Shapes { b, h, l, hd, .. } = shapes;
    let out = Tensor::empty([b, l, h, hd], (Kind::Float, Device::Cpu));
    // SAFETY: every tensor is a CPU tensor of the dtype and shape `Shapes::of` and the checks above established;
    // `q`, `mask` and `out` are contiguous, `k` and `v` are read through their strides (last one 1) within their
    // sizes; `out` is new and each batch row of it is written by one task only.
    let done = unsafe {
        let view = Views {
            q: q.data_ptr() as *const f32,
            k: (k.data_ptr() as *const f32, k.stride()),
            v: (v.data_ptr() as *const f32, v.stride()),
            mask: mask.data_ptr() as *const bool,
            out: Out(out.data_ptr() as *mut f32),
            shapes,
            scale: scale as f32,
            softcap: softcap.map(|c| ((scale / c) as f32, c as f32)),
        };
        view.run()
    };
    done.then(|| out.transpose(1, 2))
}

/// The sizes of one call, checked against each other.
#[derive(Clone, Copy)]
struct Shapes {
    b: i64,
    h: i64,
    kv: i64,
    l: i64,
    t: i64,
    hd: i64,
}

impl Shapes {
    fn of(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor) -> Option<Shapes> {
        let (b, h, l, hd) = q.size4().ok()?;
        let (_, kv, t, _) = k.size4().ok()?;
        let fits = k.size() == [b, kv, t, hd]
            && v.size() == k.size()
            && mask.dim() == 4
            && [1, b].contains(&mask.size()[0])
            && mask.size()[1..] == [1, l, t]
            && kv > 0
            && h % kv == 0
            && (1..=MAX_QUERY_LEN).contains(&l)
            && b * l <= smallmm::MAX_ROWS as i64
            && t > 0
            && hd > 0
            && [k, v].iter().all(|t| t.stride()[2..] == [hd, 1]);
        fits.then_some(Shapes { b, h, kv, l, t, hd })
    }
}

/// The output pointer, shared by the tasks of one call (each writes its own batch rows).
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: tasks write disjoint batch rows of `out` and read nothing from it.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

/// Raw views of one call's tensors (see `decode_attention`'s SAFETY note).
struct Views {
    q: *const f32,
    k: (*const f32, Vec<i64>),
    v: (*const f32, Vec<i64>),
    mask: *const bool,
    out: Out,
    shapes: Shapes,
    scale: f32,
    /// `(scale / cap, cap)` for Gemma 2's soft-capped scores.
    softcap: Option<(f32, f32)>,
}
// SAFETY: the pointers are only read (and `out` written per batch row) while `decode_attention` holds the tensors.
unsafe impl Send for Views {}
unsafe impl Sync for Views {}

impl Views {
    /// All batch rows; false (nothing to trust in `out`) if a query row attends nothing.
    unsafe fn run(&self) -> bool {
        let s = self.shapes;
        if (0..s.b * s.l).any(|row| (0..s.t).all(|t| !*self.mask.add((row * s.t + t) as usize))) {
            return false;
        }
        if s.b > 1 && s.b * s.h * s.l * s.t * s.hd >= PARALLEL_FROM {
            smallmm::pool::for_each(s.b as usize, &|b| batch_row(self, b as i64));
        } else {
            (0..s.b).for_each(|b| batch_row(self, b));
        }
        true
    }

    /// Every head and query position of batch row `b` (the body `batch_row` compiles for each vector width).
    #[inline(always)]
    unsafe fn batch_row_plain(&self, b: i64) {
        let s = self.shapes;
        let (g, hd, t) = (s.h / s.kv, s.hd as usize, s.t as usize);
        let rows = (g * s.l) as usize;
        let mut scores = vec![0.0f32; rows * t];
        for kvh in 0..s.kv {
            // The query rows of this KV head's group (heads kvh·g.., every position) are contiguous in q.
            let q = std::slice::from_raw_parts(
                self.q.add(((b * s.h + kvh * g) * s.l * s.hd) as usize),
                rows * hd,
            );
            let keys = self.rows_of(&self.k, b, kvh);
            smallmm::matmul_rows_f32(q, rows, hd, keys, t, &mut scores);
            let values = self.rows_of(&self.v, b, kvh);
            for (r, scores) in scores.chunks_exact_mut(t).enumerate() {
                let (h, l) = (kvh * g + r as i64 / s.l, r as i64 % s.l);
                let mask =
                    std::slice::from_raw_parts(self.mask.add(((b * s.l + l) * s.t) as usize), t);
                let out = std::slice::from_raw_parts_mut(
                    self.out.0.add((((b * s.l + l) * s.h + h) * s.hd) as usize),
                    hd,
                );
                self.softmax_times_values(scores, mask, values, out);
            }
        }
    }

    /// The `T` rows of `hd` values of KV head `kvh` of batch row `b` (`Shapes::of` checked they are contiguous).
    unsafe fn rows_of(&self, (p, stride): &(*const f32, Vec<i64>), b: i64, kvh: i64) -> &[f32] {
        let s = self.shapes;
        std::slice::from_raw_parts(
            p.offset((b * stride[0] + kvh * stride[1]) as isize),
            (s.t * s.hd) as usize,
        )
    }

    /// One query row: its dot products with the keys (`scores`) scaled or soft-capped, masked, softmaxed, and the
    /// values summed with those weights into `out`.
    #[inline(always)]
    fn softmax_times_values(
        &self,
        scores: &mut [f32],
        mask: &[bool],
        values: &[f32],
        out: &mut [f32],
    ) {
        // Element-wise loops without a running reduction, so that each one vectorises.
        match self.softcap {
            None => scores.iter_mut().for_each(|s| *s *= self.scale),
            Some((scale_over_cap, cap)) => {
                scores.iter_mut().for_each(|s| *s = tanh(*s * scale_over_cap) * cap)
            }
        }
        for (s, &m) in scores.iter_mut().zip(mask) {
            *s = if m { *s } else { f32::NEG_INFINITY };
        }
        let max = lanes(scores, f32::NEG_INFINITY, f32::max);
        scores.iter_mut().for_each(|s| *s = exp(*s - max));
        let sum = lanes(scores, 0.0, |a, b| a + b);
        out.fill(0.0);
        for (&p, v) in scores.iter().zip(values.chunks_exact(out.len())) {
            if p != 0.0 {
                for (o, &x) in out.iter_mut().zip(v) {
                    *o += p * x;
                }
            }
        }
        for o in out.iter_mut() {
            *o /= sum;
        }
    }
}

smallmm::widest_vectors!(
    /// Every head and query position of batch row `b`, on the widest vectors the CPU has.
    unsafe fn batch_row(views: &Views, b: i64) = Views::batch_row_plain
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capped_attention;

    /// Random q / k / v with `t` cached positions (k and v views of larger buffers, as the KV cache hands them out),
    /// and a mask that hides the first `pad[b]` positions of batch row `b` (left padding).
    fn inputs(b: i64, h: i64, kv: i64, l: i64, t: i64, hd: i64, pad: &[i64]) -> [Tensor; 4] {
        let opts = (Kind::Float, Device::Cpu);
        let q = Tensor::randn([b, l, h, hd], opts).transpose(1, 2);
        let k = Tensor::randn([b, kv, t + 5, hd], opts).narrow(2, 0, t);
        let v = Tensor::randn([b, kv, t + 5, hd], opts).narrow(2, 0, t);
        let pos = Tensor::arange(t, (Kind::Int64, Device::Cpu)).view([1, 1, 1, t]);
        let pad = Tensor::from_slice(pad).view([b, 1, 1, 1]);
        let causal = Tensor::arange_start(t - l, t, (Kind::Int64, Device::Cpu)).view([1, 1, l, 1]);
        let mask = pos.ge_tensor(&pad).logical_and(&pos.le_tensor(&causal));
        [q, k, v, mask]
    }

    fn close(got: &Tensor, want: &Tensor) -> f64 {
        let scale = f64::try_from(want.abs().max()).unwrap();
        f64::try_from((got - want).abs().max()).unwrap() / scale
    }

    #[test]
    fn equals_sdpa_and_the_capped_form_within_rounding() {
        let _guard = tch::no_grad_guard();
        tch::manual_seed(0);
        // MQA, GQA, MHA; one and two query positions; odd cache lengths; head sizes with and without a tail of 16.
        for (b, h, kv, l, t, hd) in
            [(3, 4, 1, 1, 37, 64), (2, 4, 2, 2, 130, 20), (8, 2, 2, 1, 9, 256)]
        {
            let pad: Vec<i64> = (0..b).map(|i| i % 3).collect();
            let [q, k, v, mask] = inputs(b, h, kv, l, t, hd, &pad);
            let scale = (hd as f64).powf(-0.5);
            let want = Tensor::scaled_dot_product_attention(
                &q,
                &k,
                &v,
                Some(&mask),
                0.0,
                false,
                scale,
                kv != h,
            );
            let got = decode_attention(&q, &k, &v, &mask, scale, None).unwrap();
            assert_eq!(got.size(), want.size());
            let err = close(&got, &want);
            assert!(err < 2e-6, "SDPA {b}x{h}/{kv}x{l}x{t}x{hd}: {err:.2e}");
            let want = capped_attention(&q, &k, &v, &mask, scale, 0.5);
            let err = close(&decode_attention(&q, &k, &v, &mask, scale, Some(0.5)).unwrap(), &want);
            assert!(err < 2e-6, "capped {b}x{h}/{kv}x{l}x{t}x{hd}: {err:.2e}");
        }
    }

    #[test]
    fn a_batch_row_equals_it_alone_and_unhandled_inputs_are_declined() {
        let _guard = tch::no_grad_guard();
        tch::manual_seed(1);
        let [q, k, v, mask] = inputs(8, 4, 1, 1, 300, 64, &[0, 1, 2, 3, 0, 1, 2, 3]);
        let all = decode_attention(&q, &k, &v, &mask, 0.125, Some(50.0)).unwrap();
        for i in 0..8 {
            let one = |t: &Tensor| t.narrow(0, i, 1);
            let alone =
                decode_attention(&one(&q), &one(&k), &one(&v), &one(&mask), 0.125, Some(50.0))
                    .unwrap();
            assert!(alone.equal(&one(&all)), "batch row {i}");
        }
        // A row that attends nothing, bf16, a prefill's many positions: libtorch's.
        assert!(decode_attention(&q, &k, &v, &mask.zeros_like(), 0.125, None).is_none());
        let bf = |t: &Tensor| t.to_kind(Kind::BFloat16);
        assert!(decode_attention(&bf(&q), &bf(&k), &bf(&v), &mask, 0.125, None).is_none());
        // A query that records a gradient (training): libtorch's, which builds the graph.
        let trained = q.detach().set_requires_grad(true);
        tch::with_grad(
            || assert!(decode_attention(&trained, &k, &v, &mask, 0.125, None).is_none()),
        );
        let [q, k, v, mask] = inputs(1, 4, 1, 20, 40, 64, &[0]);
        assert!(decode_attention(&q, &k, &v, &mask, 0.125, None).is_none());
    }
}
