//! `pgrs bench attention`: the attention of Gemma 2's soft-capped layers, forward + backward, path against path.
//!
//! Soft-capping (`cap * tanh(s / cap)`, between `q k^T` and the softmax) has no hook in fused SDPA, so a capped layer
//! must materialise its scores. This times, on the mid-size PaliGemma 2 shapes of `make_model.py midsize2` (4 query
//! heads over 2 KV heads of 64, scale `64^-0.5`, cap 50) and on one larger sequence (1024 image tokens):
//! - fused SDPA without capping: not exact for Gemma 2 (a different function), the speed the capping costs;
//! - the path `gemma::Attention` runs for capped layers (`capped`: query groups stacked on the rows so each group
//!   multiplies its own K/V once; scale and cap on the f32 scores in place, cap + mask in one `addcmul`, query rows
//!   in blocks of at most 16 MiB of scores): `gemma::capped_attention` itself, and each run checks that the crate's
//!   layer gives bit-identically what its projections, RoPE and that function give;
//! - A, the first implementation (scale, cap, mask, softmax as separate operations, one block), and B, the
//!   straightforward alternative: K/V repeated to every query head, then A's explicit operations;
//! - two exact rearrangements of the explicit path with fewer passes over the scores: the scale and `1 / cap` folded
//!   into one multiply (on q, or on the f32 scores), and the mask added in the same pass that multiplies by the cap
//!   (`addcmul` with an additive 0 / -inf mask) instead of a separate `masked_fill`;
//!
//! and, for scale, the whole `gemma::Attention` layer (projections, RoPE, attention) with and without capping.
//! Each path's output and `dL/dq` are compared with the capped computation in f64. Python is not involved.
use super::stats::{secs_range, Summary};
use super::{machine, report, Common};
use anyhow::{bail, Result};
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

/// The mid-size PaliGemma 2 attention (`scripts/bench/make_model.py`, `MIDSIZE2_TEXT`).
const HIDDEN: i64 = 256;
const HEADS: i64 = 4;
const KV_HEADS: i64 = 2;
const HEAD_DIM: i64 = 64;
const QUERY_PRE_ATTN_SCALAR: f64 = 64.0;
const CAP: f64 = 50.0;
/// Prompt tokens in the bidirectional block after the image ("caption en" with `<bos>` and the separator).
const PREFIX: i64 = 4;
/// Errors (against f64) below this count as exact in f32: rounding, not a different function.
const EXACT_F32: f64 = 1e-4;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// f32 (the CPU figures) or bf16.
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16"])]
    pub dtype: String,
}

#[derive(Debug, Clone, Copy)]
struct Shape {
    batch: i64,
    image_tokens: i64,
    len: i64,
}

impl Shape {
    fn label(&self) -> String {
        format!("b{}-img{}-l{}", self.batch, self.image_tokens, self.len)
    }
    fn describe(&self) -> String {
        format!("{} image tokens, batch {}, {} tokens", self.image_tokens, self.batch, self.len)
    }
}

/// The train benchmark's sequence lengths at 224 px (256 image tokens: batch 1 275, batch 8 289) and the same
/// prompts and captions behind 1024 image tokens (448 px) at batch 4.
const SHAPES: [Shape; 3] = [
    Shape { batch: 1, image_tokens: 256, len: 275 },
    Shape { batch: 8, image_tokens: 256, len: 289 },
    Shape { batch: 4, image_tokens: 1024, len: 1057 },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Sdpa,
    Grouped,
    Separate,
    Repeated,
    FoldedScores,
    FoldedQ,
    FoldedQBlocks,
}

impl Path {
    const ALL: [Path; 7] = [
        Path::Sdpa,
        Path::Grouped,
        Path::Separate,
        Path::Repeated,
        Path::FoldedScores,
        Path::FoldedQ,
        Path::FoldedQBlocks,
    ];

    fn name(self) -> &'static str {
        match self {
            Path::Sdpa => "fused SDPA, no soft-capping (not Gemma 2: speed reference)",
            Path::Grouped => {
                "`gemma::Attention` today: query groups stacked, scale/cap and tanh in place on the f32 scores, \
                 cap + mask in one `addcmul`, blocks of at most 16 MiB of scores"
            }
            Path::Separate => {
                "A. the first path: query groups stacked; scale, cap, mask, softmax as separate operations"
            }
            Path::Repeated => "B. A with K/V repeated to every head",
            Path::FoldedScores => {
                "C. A with scale/cap in one multiply of the f32 scores, cap + mask in one `addcmul`"
            }
            Path::FoldedQ => {
                "D. A with scale/cap folded into q, `tanh_` in place, cap + mask in one `addcmul`"
            }
            Path::FoldedQBlocks => "E. D in blocks of query rows, at most 16 MiB of scores each",
        }
    }
}

/// Scores per block of path E: below glibc's largest mmap threshold (32 MiB), so a freed block is reused from the
/// heap instead of being mapped (and page-faulted) afresh.
const BLOCK_BYTES: i64 = 16 << 20;

/// q `[B, H, L, hd]`, k/v `[B, KV, T, hd]`, `mask [B, 1, L, T]` (true = attend).
struct Inputs<'a> {
    q: &'a Tensor,
    k: &'a Tensor,
    v: &'a Tensor,
    mask: &'a Tensor,
}

fn scale() -> f64 {
    QUERY_PRE_ATTN_SCALAR.powf(-0.5)
}

/// The crate's capped path itself (`gemma::capped_attention`, which `gemma::Attention` calls for capped layers).
fn grouped(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor) -> Tensor {
    gemma::capped_attention(q, k, v, mask, scale(), CAP)
}

/// The first capped path (until 2026-12-02): scale, cap, mask and softmax as separate operations, one block.
fn separate(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor) -> Tensor {
    let (b, h, l, hd) = q.size4().expect("[B, H, L, hd]");
    let (kv, t) = (k.size()[1], k.size()[2]);
    let g = h / kv;
    let q = q.reshape([b, kv, g * l, hd]);
    let scores = q.matmul(&k.transpose(2, 3)).to_kind(Kind::Float) * scale();
    let scores = ((scores / CAP).tanh() * CAP).view([b, kv, g, l, t]);
    let scores = scores.masked_fill(&mask.unsqueeze(1).logical_not(), f64::NEG_INFINITY);
    let probs = scores.softmax(-1, Kind::Float).to_kind(v.kind()).view([b, kv, g * l, t]);
    probs.matmul(v).view([b, h, l, hd])
}

fn run_path(p: Path, x: &Inputs) -> Tensor {
    let (q, k, v, mask) = (x.q, x.k, x.v, x.mask);
    let (b, h, l, hd) = q.size4().expect("[B, H, L, hd]");
    let (kv, t) = (k.size()[1], k.size()[2]);
    let g = h / kv;
    // 0 where attended, -inf elsewhere, broadcast over the KV heads and the heads of a group. Built inside the timed
    // region (a layer could share it across layers, as it shares the boolean mask).
    let additive = || {
        Tensor::zeros(mask.size(), (Kind::Float, mask.device()))
            .masked_fill(&mask.logical_not(), f64::NEG_INFINITY)
            .unsqueeze(1)
    };
    let cap = Tensor::scalar_tensor(CAP, (Kind::Float, q.device()));
    match p {
        Path::Sdpa => {
            Tensor::scaled_dot_product_attention(q, k, v, Some(mask), 0.0, false, scale(), true)
        }
        Path::Grouped => grouped(q, k, v, mask),
        Path::Separate => separate(q, k, v, mask),
        Path::Repeated => {
            let k = k.repeat_interleave_self_int(g, 1, None);
            let v = v.repeat_interleave_self_int(g, 1, None);
            let scores = q.matmul(&k.transpose(2, 3)).to_kind(Kind::Float) * scale();
            let scores = (scores / CAP).tanh() * CAP;
            let scores = scores.masked_fill(&mask.logical_not(), f64::NEG_INFINITY);
            scores.softmax(-1, Kind::Float).to_kind(v.kind()).matmul(&v)
        }
        Path::FoldedScores => {
            let q = q.reshape([b, kv, g * l, hd]);
            let scores = q.matmul(&k.transpose(2, 3)).to_kind(Kind::Float);
            let capped = (scores * (scale() / CAP)).tanh().view([b, kv, g, l, t]);
            let logits = additive().addcmul(&capped, &cap);
            let probs = logits.softmax(-1, Kind::Float).to_kind(v.kind()).view([b, kv, g * l, t]);
            probs.matmul(v).view([b, h, l, hd])
        }
        Path::FoldedQ | Path::FoldedQBlocks => {
            // q's rows as [B, KV, G, L, hd]: a block takes rows [s0, s0 + n) of every head of every group.
            let q = (q * (scale() / CAP)).reshape([b, kv, g, l, hd]);
            let additive = additive();
            let kt = k.transpose(2, 3);
            let rows = match p {
                Path::FoldedQBlocks => (BLOCK_BYTES / (b * h * t * 4)).clamp(1, l),
                _ => l,
            };
            let blocks: Vec<Tensor> = (0..l)
                .step_by(rows as usize)
                .map(|s0| {
                    let n = rows.min(l - s0);
                    let qb = q.narrow(3, s0, n).reshape([b, kv, g * n, hd]);
                    // matmul's backward needs q and k, not its output, so tanh may overwrite that (in f32
                    // `to_kind` hands back the same tensor).
                    let mut s = qb.matmul(&kt).to_kind(Kind::Float);
                    let _ = s.tanh_();
                    let logits = additive.narrow(3, s0, n).addcmul(&s.view([b, kv, g, n, t]), &cap);
                    let probs =
                        logits.softmax(-1, Kind::Float).to_kind(v.kind()).view([b, kv, g * n, t]);
                    probs.matmul(v).view([b, kv, g, n, hd])
                })
                .collect();
            let o =
                if blocks.len() == 1 { blocks[0].shallow_clone() } else { Tensor::cat(&blocks, 3) };
            o.view([b, h, l, hd])
        }
    }
}

/// The capped attention in f64 (K/V repeated, every operation in f64): what every exact path is compared with.
fn reference_f64(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor) -> Tensor {
    let g = q.size()[1] / k.size()[1];
    let k = k.repeat_interleave_self_int(g, 1, None);
    let v = v.repeat_interleave_self_int(g, 1, None);
    let scores = q.matmul(&k.transpose(2, 3)) * scale();
    let scores = (scores / CAP).tanh() * CAP;
    let scores = scores.masked_fill(&mask.logical_not(), f64::NEG_INFINITY);
    scores.softmax(-1, Kind::Double).matmul(&v)
}

/// The PaliGemma mask of one shape: image + prompt bidirectional, the caption causal, no padding.
fn prefix_mask(s: &Shape, device: Device) -> Tensor {
    let block = s.image_tokens + PREFIX;
    let ar = Tensor::cat(
        &[
            Tensor::zeros([s.batch, block], (Kind::Int64, device)),
            Tensor::ones([s.batch, s.len - block], (Kind::Int64, device)),
        ],
        1,
    );
    let valid = Tensor::ones([s.batch, s.len], (Kind::Bool, device));
    gemma::attention_mask(&ar, &valid, s.len)
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// A leaf `[B, L, heads, hd]` seen as `[B, heads, L, hd]`, as the layer's projections hand q, k, v over.
fn leaf(b: i64, l: i64, heads: i64, kind: Kind, device: Device) -> Tensor {
    Tensor::randn([b, l, heads, HEAD_DIM], (Kind::Float, device))
        .to_kind(kind)
        .set_requires_grad(true)
}

fn heads_first(x: &Tensor) -> Tensor {
    x.transpose(1, 2)
}

struct Timed {
    forward: Vec<f64>,
    total: Vec<f64>,
}

/// The Gemma 2 config of the mid-size PaliGemma 2's language model, with or without attention soft-capping.
fn layer_config(capped: bool) -> gemma::GemmaConfig {
    gemma::GemmaConfig {
        vocab_size: 257216,
        hidden_size: HIDDEN,
        intermediate_size: 2048,
        num_hidden_layers: 4,
        num_attention_heads: HEADS,
        num_key_value_heads: KV_HEADS,
        head_dim: HEAD_DIM,
        model_type: Some("gemma2".into()),
        query_pre_attn_scalar: Some(QUERY_PRE_ATTN_SCALAR),
        attn_logit_softcapping: capped.then_some(CAP),
        final_logit_softcapping: Some(30.0),
        sliding_window: Some(128),
        ..gemma::GemmaConfig::paligemma_2b()
    }
}

struct Layer {
    vs: nn::VarStore,
    attn: gemma::Attention,
}

/// Layer 1 of the mid-size PaliGemma 2 (global attention), weights at the unit fan-in scale of `make_model.py`.
fn layer(capped: bool, kind: Kind, device: Device, seed: i64) -> Layer {
    tch::manual_seed(seed);
    let mut vs = nn::VarStore::new(device);
    let cfg = layer_config(capped);
    let init = weights::ParamInit::Normal { std: (HIDDEN as f64).powf(-0.5) };
    let attn = gemma::Attention::new(vs.root(), &cfg, 1, init);
    vs.set_kind(kind);
    Layer { vs, attn }
}

fn pass(s: &Shape, mask: &Tensor, kind: Kind, device: Device) -> gemma::Pass {
    let valid = Tensor::ones([s.batch, s.len], (Kind::Bool, device));
    let positions = gemma::positions(&valid, s.len);
    let rope = gemma::Rope::new(HEAD_DIM, 10000.0, device).tables(&positions, kind);
    gemma::Pass { rope, mask: mask.shallow_clone(), sliding_mask: None }
}

/// The crate's capped layer against its own projections + RoPE + [`grouped`] + output projection: the largest
/// absolute difference (0 when the layer runs `gemma::capped_attention` and nothing else in between).
fn check_replica(s: &Shape, kind: Kind, device: Device) -> f64 {
    let Layer { attn, .. } = layer(true, kind, device, 11);
    let mask = prefix_mask(s, device);
    let p = pass(s, &mask, kind, device);
    tch::no_grad(|| {
        let xs = Tensor::randn([s.batch, s.len, HIDDEN], (Kind::Float, device)).to_kind(kind);
        let ours = attn.forward_t(&xs, &p, None, true);
        let split = |t: Tensor, h: i64| t.view([s.batch, s.len, h, HEAD_DIM]).transpose(1, 2);
        let q = split(attn.q_proj.forward_t(&xs, true), HEADS);
        let k = split(attn.k_proj.forward_t(&xs, true), KV_HEADS);
        let v = split(attn.v_proj.forward_t(&xs, true), KV_HEADS);
        let (cos, sin) = &p.rope;
        let (q, k) = (gemma::Rope::apply(&q, cos, sin), gemma::Rope::apply(&k, cos, sin));
        let o = grouped(&q, &k, &v, &mask);
        let o = o.transpose(1, 2).reshape([s.batch, s.len, HEADS * HEAD_DIM]);
        let replica = attn.o_proj.forward_t(&o, true);
        f64::try_from((ours.to_kind(Kind::Double) - replica.to_kind(Kind::Double)).abs().max())
            .unwrap_or(f64::INFINITY)
    })
}

struct ShapeResult {
    shape: Shape,
    paths: Vec<(Path, Timed, f64, f64)>,
    layers: Vec<(bool, Timed)>,
    replica_diff: f64,
}

fn measure(s: &Shape, reps: usize, kind: Kind, device: Device) -> Result<ShapeResult> {
    tch::manual_seed(1);
    let mask = prefix_mask(s, device);
    let mut xq = leaf(s.batch, s.len, HEADS, kind, device);
    let mut xk = leaf(s.batch, s.len, KV_HEADS, kind, device);
    let mut xv = leaf(s.batch, s.len, KV_HEADS, kind, device);
    let grad_out =
        Tensor::randn([s.batch, HEADS, s.len, HEAD_DIM], (Kind::Float, device)).to_kind(kind);

    // f64 reference: output and dL/dq for L = sum(out * grad_out).
    let (ref_out, ref_dq) = {
        let d = |x: &Tensor| x.detach().to_kind(Kind::Double).set_requires_grad(true);
        let (q, k, v) = (d(&xq), d(&xk), d(&xv));
        let out = reference_f64(&heads_first(&q), &heads_first(&k), &heads_first(&v), &mask);
        (&out * grad_out.to_kind(Kind::Double)).sum(Kind::Double).backward();
        (out.detach(), q.grad())
    };

    let mut layers: Vec<(bool, Layer)> =
        [true, false].into_iter().map(|c| (c, layer(c, kind, device, 11))).collect();
    let layer_pass = pass(s, &mask, kind, device);
    let mut xs = Tensor::randn([s.batch, s.len, HIDDEN], (Kind::Float, device))
        .to_kind(kind)
        .set_requires_grad(true);
    let layer_grad = Tensor::randn([s.batch, s.len, HIDDEN], (Kind::Float, device)).to_kind(kind);

    let new_timed = || Timed { forward: Vec::new(), total: Vec::new() };
    let mut paths: Vec<(Path, Timed, f64, f64)> =
        Path::ALL.iter().map(|&p| (p, new_timed(), f64::NAN, f64::NAN)).collect();
    let mut layer_times: Vec<Timed> = layers.iter().map(|_| new_timed()).collect();
    // Paths take turns within each repetition, so a change of machine load touches them alike.
    for rep in 0..=reps {
        for (p, timed, err_out, err_dq) in paths.iter_mut() {
            for x in [&mut xq, &mut xk, &mut xv] {
                x.zero_grad();
            }
            let inputs = Inputs {
                q: &heads_first(&xq),
                k: &heads_first(&xk),
                v: &heads_first(&xv),
                mask: &mask,
            };
            sync(device);
            let t0 = Instant::now();
            let out = run_path(*p, &inputs);
            sync(device);
            let t1 = t0.elapsed().as_secs_f64();
            (&out * &grad_out).sum(Kind::Float).backward();
            sync(device);
            let t2 = t0.elapsed().as_secs_f64();
            if rep == 0 {
                let diff = |a: &Tensor, b: &Tensor| {
                    f64::try_from((a.to_kind(Kind::Double) - b).abs().max())
                        .unwrap_or(f64::INFINITY)
                };
                *err_out = diff(&out.detach(), &ref_out);
                *err_dq = diff(&xq.grad(), &ref_dq);
            } else {
                timed.forward.push(t1);
                timed.total.push(t2);
            }
        }
        for ((_, l), timed) in layers.iter_mut().zip(layer_times.iter_mut()) {
            xs.zero_grad();
            for mut t in l.vs.trainable_variables() {
                t.zero_grad();
            }
            sync(device);
            let t0 = Instant::now();
            let out = l.attn.forward_t(&xs, &layer_pass, None, true);
            sync(device);
            let t1 = t0.elapsed().as_secs_f64();
            (&out * &layer_grad).sum(Kind::Float).backward();
            sync(device);
            let t2 = t0.elapsed().as_secs_f64();
            if rep > 0 {
                timed.forward.push(t1);
                timed.total.push(t2);
            }
        }
    }
    let layers = layers.iter().map(|(c, _)| *c).zip(layer_times).collect();
    Ok(ShapeResult { shape: *s, paths, layers, replica_diff: check_replica(s, kind, device) })
}

pub fn run(a: &Args) -> Result<i32> {
    let c = &a.common;
    let device =
        <trainer::device::DeviceSpec as trainer::setting::Setting>::parse_setting(&c.device)
            .map_err(|e| anyhow::anyhow!("--device {e}"))?
            .resolve()?;
    let kind = if a.dtype == "bf16" { Kind::BFloat16 } else { Kind::Float };
    let threads =
        c.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    tch::set_num_threads(threads as i32);
    let reps = c.steps.unwrap_or(if c.quick { 3 } else { 10 });
    let shapes = c.select(SHAPES.to_vec(), Shape::label)?;
    eprintln!(
        "bench attention: {} shapes x {} paths + 2 layers, 1 warm-up + {reps} repetitions, {threads} threads, {} {}",
        shapes.len(),
        Path::ALL.len(),
        c.device,
        a.dtype
    );
    let started = Instant::now();
    let mut results = Vec::new();
    for s in &shapes {
        let r = measure(s, reps, kind, device)?;
        eprintln!("{}: done ({:.0} s so far)", s.describe(), started.elapsed().as_secs_f64());
        results.push(r);
    }
    let section = render(a, &results, threads, reps);
    c.publish(&section)?;
    if let Some(r) = results.iter().find(|r| r.replica_diff != 0.0) {
        bail!(
            "gemma::Attention differs from its projections + gemma::capped_attention by {:.1e} on {}: the layer \
             no longer runs the timed path; update crates/bench/src/attention.rs (`grouped`)",
            r.replica_diff,
            r.shape.describe()
        );
    }
    Ok(0)
}

fn render(a: &Args, results: &[ShapeResult], threads: usize, reps: usize) -> String {
    let c = &a.common;
    let mut s = format!(
        "## attention: Gemma 2 soft-capped attention paths, {} (`cargo xtask bench attention{}{}`)\n\n",
        report::today(),
        if a.dtype == "f32" { String::new() } else { format!(" --dtype {}", a.dtype) },
        c.flags()
    );
    s += &format!(
        "One attention layer's core with the mid-size PaliGemma 2's shapes ({HEADS} query heads over {KV_HEADS} KV \
         heads of {HEAD_DIM}, scale {QUERY_PRE_ATTN_SCALAR}^-0.5, attention-logit cap {CAP}): q, k, v as the layer \
         hands them over (transposed views of `[B, L, heads, {HEAD_DIM}]`), PaliGemma's mask (image + prompt \
         bidirectional, caption causal); forward, then backward of a fixed random output gradient into q, k and v. \
         {}, {threads} threads; medians (min-max) of {reps} repetitions after one warm-up, the paths taking turns. \
         Errors: largest absolute difference from the capped attention computed in f64 (output / dL/dq). \"Layer\" \
         rows: the whole `gemma::Attention` (q/k/v/o projections, RoPE, attention; backward into the input and the \
         four weights), as configured with and without soft-capping.\n\n{}. `pgrs` {} build at {}. Load average at \
         the end: {}.\n\n",
        a.dtype,
        if c.device.starts_with("cuda") {
            format!("GPU: {}", machine::gpu().unwrap_or_else(|| "unknown".into()))
        } else {
            format!("CPU only: {}", machine::cpu())
        },
        machine::profile(),
        machine::commit(),
        machine::load_average()
    );
    let mut rows = Vec::new();
    for r in results {
        let base = r
            .paths
            .iter()
            .find(|(p, ..)| *p == Path::Grouped)
            .and_then(|(_, t, ..)| Summary::of(&t.total))
            .map(|x| x.median);
        for (p, t, e_out, e_dq) in &r.paths {
            let (fw, tot) = (Summary::of(&t.forward), Summary::of(&t.total));
            let exact = match *p {
                Path::Sdpa => "no",
                _ if a.dtype == "f32" && e_out.max(*e_dq) > EXACT_F32 => {
                    "yes, but ERROR ABOVE 1e-4"
                }
                _ => "yes",
            };
            rows.push(vec![
                r.shape.describe(),
                p.name().to_string(),
                exact.into(),
                fw.map_or("-".into(), |x| secs_range(&x)),
                tot.map_or("-".into(), |x| secs_range(&x)),
                match (tot, base) {
                    (Some(x), Some(b)) => format!("**{:.2}**", x.median / b),
                    _ => "-".into(),
                },
                format!("{e_out:.1e} / {e_dq:.1e}"),
            ]);
        }
        for (capped, t) in &r.layers {
            let (fw, tot) = (Summary::of(&t.forward), Summary::of(&t.total));
            rows.push(vec![
                r.shape.describe(),
                if *capped {
                    format!("layer: `gemma::Attention`, cap {CAP} (explicit path)")
                } else {
                    "layer: `gemma::Attention`, no capping (fused SDPA)".into()
                },
                if *capped { "yes".into() } else { "no".into() },
                fw.map_or("-".into(), |x| secs_range(&x)),
                tot.map_or("-".into(), |x| secs_range(&x)),
                "-".into(),
                "-".into(),
            ]);
        }
    }
    s += &report::table(
        &[
            "shape",
            "path",
            "exact",
            "forward",
            "forward + backward",
            "vs today's path",
            "error vs f64",
        ],
        &[false, false, false, true, true, true, true],
        &rows,
    );
    let replica: Vec<String> = results
        .iter()
        .map(|r| {
            if r.replica_diff == 0.0 {
                format!("{}: bit-identical", r.shape.describe())
            } else {
                format!("{}: DIFFERS by {:.1e}", r.shape.describe(), r.replica_diff)
            }
        })
        .collect();
    s += &format!(
        "\nThe \"`gemma::Attention` today\" row is `gemma::capped_attention`, the function the crate's capped layer \
         runs (the layer against its projections + that function, on this run: {}). \"vs today's path\" divides \
         forward + backward times.\n",
        replica.join("; ")
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exact_path_agrees_and_the_layer_runs_the_timed_path() {
        let s = Shape { batch: 2, image_tokens: 8, len: 17 };
        let mask = prefix_mask(&s, Device::Cpu);
        let q = Tensor::randn([2, HEADS, 17, HEAD_DIM], (Kind::Double, Device::Cpu)) * 4.0;
        let k = Tensor::randn([2, KV_HEADS, 17, HEAD_DIM], (Kind::Double, Device::Cpu)) * 4.0;
        let v = Tensor::randn([2, KV_HEADS, 17, HEAD_DIM], (Kind::Double, Device::Cpu));
        let reference = reference_f64(&q, &k, &v, &mask);
        let f = |t: &Tensor| t.to_kind(Kind::Float);
        let x = Inputs { q: &f(&q), k: &f(&k), v: &f(&v), mask: &mask };
        for p in Path::ALL {
            let d = f64::try_from((run_path(p, &x).to_kind(Kind::Double) - &reference).abs().max())
                .unwrap();
            // scores of std ~16 around a cap of 50: the capping bites, so SDPA without it is far off
            assert_eq!(d <= EXACT_F32, p != Path::Sdpa, "{p:?}: {d:e}");
        }
        assert_eq!(check_replica(&s, Kind::Float, Device::Cpu), 0.0);
    }
}
