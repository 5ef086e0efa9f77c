//! The tch adapter: `x Wᵀ` on tensors, or `None` where libtorch should compute it.
use crate::kernel::Elem;
use crate::{
    bf16_dot, chosen, matmul_capped_on, Backend, WeightKind, MAX_ROWS, SEQUENTIAL_BYTES,
    STREAM_BYTES,
};
use tch::{Device, Kind, Tensor};

/// `x Wᵀ` (`x.linear(w, None)`) by this crate's kernel when [`crate::chosen`] says it is faster, else `None`; see
/// [`try_linear`] for what is handled.
pub fn linear(x: &Tensor, w: &Tensor) -> Option<Tensor> {
    // Called by every linear layer of every decoding step: the switch first, before any libtorch call.
    if !crate::enabled() {
        return None;
    }
    let (rows, n, k) = handled(x, w)?;
    let kind = WeightKind::of(x.kind() == Kind::BFloat16, w.kind() == Kind::BFloat16, k);
    chosen(rows, n, k, kind).then(|| compute(x, w, rows, n, k, None))
}

/// [`linear`] soft-capped as Gemma 2 caps its logits, `c · tanh(x Wᵀ / c)` with `c = cap` ([`crate::math::softcap`],
/// within a few units in the last place of libtorch's tanh), each sum capped as the kernel writes it: no second pass
/// over the vocabulary-wide logits. `None` where [`linear`] is, and for bf16 x (whose sums libtorch rounds before
/// capping).
pub fn linear_softcapped(x: &Tensor, w: &Tensor, cap: f32) -> Option<Tensor> {
    if !crate::enabled() || x.kind() != Kind::Float {
        return None;
    }
    let (rows, n, k) = handled(x, w)?;
    let kind = WeightKind::of(false, w.kind() == Kind::BFloat16, k);
    chosen(rows, n, k, kind).then(|| compute(x, w, rows, n, k, Some(cap)))
}

/// `x Wᵀ` by this crate's kernel whenever it can, whatever its size and `PGRS_SMALLMM` (tests, benchmarks):
/// `w [n, k]` contiguous f32 or bf16 on the CPU; `x [..., k]` on the CPU, f32, or bf16 with bf16 weights, at most
/// [`MAX_ROWS`] rows (the product of its leading sizes; 0 is fine), any strides (it is copied if needed, a few
/// rows); no gradient to record (grad mode off, or neither tensor requires one). The result is `[..., n]` of x's
/// dtype: for bf16 x the f32 sums are rounded to bf16 by libtorch. bf16 x with bf16 weights takes AVX-512 BF16's dot
/// products where [`crate::bf16_dot`] says so. `None` otherwise, and on a CPU without AVX2.
pub fn try_linear(x: &Tensor, w: &Tensor) -> Option<Tensor> {
    let (rows, n, k) = handled(x, w)?;
    Some(compute(x, w, rows, n, k, None))
}

/// `(rows, n, k)` when the kernel handles the pair.
fn handled(x: &Tensor, w: &Tensor) -> Option<(usize, usize, usize)> {
    let weights_ok =
        w.dim() == 2 && w.is_contiguous() && matches!(w.kind(), Kind::Float | Kind::BFloat16);
    let x_ok = x.dim() >= 1
        && (x.kind() == Kind::Float || (x.kind() == Kind::BFloat16 && w.kind() == Kind::BFloat16));
    let cpu = x.device() == Device::Cpu && w.device() == Device::Cpu;
    if !(weights_ok && x_ok && cpu && Backend::best().is_simd()) || records_gradient(x, w) {
        return None;
    }
    let (n, k) = (usize::try_from(w.size()[0]).ok()?, usize::try_from(w.size()[1]).ok()?);
    if *x.size().last()? != w.size()[1] {
        return None;
    }
    let rows = x.numel() / k.max(1);
    (rows <= MAX_ROWS && k > 0).then_some((rows, n, k))
}

/// Whether a decoding step's element-wise pass in Rust (`gemma`'s RMSNorm and RoPE rows, `layers`' gated GELU) may
/// take `ts`: [`crate::enabled`], each a contiguous f32 CPU tensor, the first holding 1 to [`MAX_ROWS`] rows of
/// `row_len` values, and autograd recording nothing on them (a result computed outside libtorch has no `grad_fn`).
/// Each caller checks its own shapes besides.
pub fn takes_rows(ts: &[&Tensor], row_len: i64) -> bool {
    let Some(first) = ts.first() else { return false };
    let rows = first.numel() as i64 / row_len.max(1);
    crate::enabled()
        && ts
            .iter()
            .all(|t| t.kind() == Kind::Float && t.device() == Device::Cpu && t.is_contiguous())
        && row_len > 0
        && first.numel() as i64 == rows * row_len
        && (1..=MAX_ROWS as i64).contains(&rows)
        && !ts.iter().any(|t| records_gradient(t, t))
}

/// Whether autograd would record an op on `x` and `w` (grad mode on and either requires a gradient): a result
/// computed outside libtorch would have no `grad_fn`, so the decoding kernels (this crate's and `gemma`'s) decline.
pub fn records_gradient(x: &Tensor, w: &Tensor) -> bool {
    if !(x.requires_grad() || w.requires_grad()) {
        return false;
    }
    // tch has no getter: set the mode and put it back (`at_grad_set_enabled` returns the previous mode).
    // SAFETY: a plain call into libtorch's C API on this thread's grad mode, restored at once.
    unsafe {
        let was = torch_sys::at_grad_set_enabled(0);
        torch_sys::at_grad_set_enabled(was);
        was != 0
    }
}

/// The product of a pair `handled` accepted, as a new tensor of x's dtype (bf16 sums rounded as they are written),
/// soft-capped with `cap` (f32 x only).
fn compute(x: &Tensor, w: &Tensor, rows: usize, n: usize, k: usize, cap: Option<f32>) -> Tensor {
    let dot = x.kind() == Kind::BFloat16 && w.kind() == Kind::BFloat16 && bf16_dot(k);
    let xc = if dot { x.contiguous() } else { x.to_kind(Kind::Float).contiguous() };
    let mut shape = x.size();
    *shape.last_mut().expect("x has a dimension") = n as i64;
    if rows == 0 || n == 0 {
        // Nothing to compute, and an empty tensor's data pointer may be null, which no slice may hold.
        return Tensor::zeros(shape.as_slice(), (x.kind(), Device::Cpu));
    }
    let out = Tensor::empty(shape.as_slice(), (x.kind(), Device::Cpu));
    // SAFETY: the three tensors are contiguous CPU tensors of the element types and sizes `handled` checked (`out`
    // and `xc` are new or contiguous, `w` was checked; `xc` is bf16 when `dot`, else f32), `data_ptr` includes the
    // storage offset, and `out` has no other reference while it is filled.
    unsafe {
        if dot {
            let (xs, ws) = (slice::<u16>(&xc, rows * k), slice::<u16>(w, n * k));
            into(&out, crate::pairs(xs), (rows, k / 2), crate::pairs(ws), n, cap);
        } else if w.kind() == Kind::Float {
            into(&out, slice::<f32>(&xc, rows * k), (rows, k), slice::<f32>(w, n * k), n, cap);
        } else {
            into(&out, slice::<f32>(&xc, rows * k), (rows, k), slice::<u16>(w, n * k), n, cap);
        }
    }
    out
}

/// A contiguous CPU tensor's `len` elements, read as `T`.
///
/// # Safety
/// `t` is contiguous, on the CPU, holds at least `len` elements of `T`'s size, and outlives the borrow.
unsafe fn slice<T>(t: &Tensor, len: usize) -> &[T] {
    std::slice::from_raw_parts(t.data_ptr() as *const T, len)
}

/// `x wᵀ` into `out` (f32, or bf16 rounded as libtorch rounds), on the best backend, soft-capped with `cap` (f32
/// only).
///
/// # Safety
/// `out` is a contiguous CPU tensor of `rows × n` f32 or bf16 that nothing else reads or writes meanwhile.
unsafe fn into<E: Elem>(
    out: &Tensor,
    x: &[E::X],
    (rows, k): (usize, usize),
    w: &[E],
    n: usize,
    cap: Option<f32>,
) {
    let modes = (SEQUENTIAL_BYTES, STREAM_BYTES);
    let len = rows * n;
    if out.kind() == Kind::Float {
        let o = std::slice::from_raw_parts_mut(out.data_ptr() as *mut f32, len);
        matmul_capped_on(Backend::best(), x, (rows, k), w, n, o, modes, cap);
    } else {
        let o = std::slice::from_raw_parts_mut(out.data_ptr() as *mut u16, len);
        matmul_capped_on(Backend::best(), x, (rows, k), w, n, o, modes, cap);
    }
}
