//! Gradient checkpointing over a stack of blocks, by hand: tch has no `torch.utils.checkpoint`
//! (<https://pytorch.org/docs/stable/checkpoint.html>) and no custom autograd functions to build one. The forward
//! runs each block under `no_grad` keeping only block inputs; after the caller's backward reaches the last block's
//! output, the blocks are recomputed one at a time with grad, last first, and fed the upstream gradient with the
//! vector-Jacobian product `d sum(y * g) / dy = g`. Memory: block boundaries plus one block's activations, for one
//! extra forward (Chen et al. 2016, <https://arxiv.org/abs/1604.06174>). Gradients equal the plain ones, as each block
//! is re-seeded identically in both passes (LoRA dropout), and no input needs to require grad (unlike PyTorch's
//! reentrant variant), so a frozen base with adapters inside gets its gradients.
use tch::{Kind, Tensor};

/// Runs `layers` from `x0` (`run` applies one block, seeded `seed(i)`); `head` gets a leaf holding the last output
/// and must run a backward that reaches it; the gradient is then swept back through the blocks and into `x0`'s graph.
pub fn checkpointed<L, R, E>(
    layers: &[L],
    x0: &Tensor,
    run: impl Fn(&L, &Tensor) -> Tensor,
    seed: impl Fn(usize) -> i64,
    head: impl FnOnce(&Tensor) -> Result<R, E>,
) -> Result<R, E> {
    let mut inputs = Vec::with_capacity(layers.len());
    let mut h = x0.detach();
    for (i, layer) in layers.iter().enumerate() {
        inputs.push(h.shallow_clone());
        tch::manual_seed(seed(i));
        h = tch::no_grad(|| run(layer, &h));
    }
    let leaf = h.detach().set_requires_grad(true);
    let out = head(&leaf)?;
    let mut g = leaf.grad();
    if !g.defined() {
        return Ok(out);
    }
    for (i, (layer, x)) in layers.iter().zip(inputs).enumerate().rev() {
        let x = x.detach().set_requires_grad(true);
        tch::manual_seed(seed(i));
        (run(layer, &x) * &g).sum(Kind::Float).backward();
        g = x.grad();
    }
    if x0.requires_grad() {
        (x0 * &g).sum(Kind::Float).backward();
    }
    Ok(out)
}
