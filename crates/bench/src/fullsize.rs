//! `pgrs bench fullsize`: the real paligemma-3b-pt-224 architecture with random bf16 weights (written once by
//! `scripts/bench/make_model.py`, nothing downloaded): one LoRA step and one attention-only step at batch 2 with
//! gradient checkpointing, and one step of the SigLIP + MLP projector + Gemma-2B composition (LoRA r16 + projector),
//! on CPU. Memory, not time, is the point: each step's measured peak is set next to the memory planner's estimate
//! for that very step (`trainer::memory::plan`, target within 15%), and the reference runs the same LoRA and
//! attention-only steps with transformers + PEFT (checkpointing on) for the memory ratio. Ends with the planner's
//! figures for batch 8 on a 16 GB GPU. `--paligemma2` does the same for paligemma2-3b-pt-224 (Gemma-2 2B decoder:
//! soft-capped attention, whose f32 scores the planner counts), LoRA and attention-only.
use super::cases;
use super::inputs;
use super::runner::Side;
use super::spec::{write_raw, Spec, Task, WorkerResult};
use super::stats::mib;
use super::{machine, report, Common, Session};
use anyhow::Result;
use trainer::memory::{self, PlanInput};
use trainer::ExperimentConfig;

pub const PLAN_TOLERANCE: f64 = 0.15;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// Skip the transformers + PEFT runs (memory ratio) and measure only this project against its planner.
    #[arg(long)]
    pub skip_reference: bool,
    /// Keep the generated weights (5.9 + 5.8 GB) under the work directory for the next run; by default each set is
    /// deleted once its steps are measured, so at most one is on disk at a time.
    #[arg(long)]
    pub keep_weights: bool,
    /// paligemma2-3b-pt-224 instead of paligemma-3b-pt-224 (no composition step).
    #[arg(long)]
    pub paligemma2: bool,
}

/// The released model whose shapes a run uses.
struct Variant {
    /// `make_model.py` kind and the directory it writes under the work directory.
    kind: &'static str,
    dir: &'static str,
    title: &'static str,
    description: &'static str,
    config: paligemma::PaliGemmaConfig,
}

impl Variant {
    fn of(a: &Args) -> Self {
        if a.paligemma2 {
            Self {
                kind: "fullsize2",
                dir: "pg2-3b-224-random",
                title: "PaliGemma2-3B-pt-224",
                description: "Real paligemma2-3b-pt-224 shapes (SigLIP so400m/14 at 224 px, 256 image tokens; \
                    Gemma-2 2B, 26 layers, 8 heads over 4 KV heads of 256, soft-capping 50 / 30, window 4096; \
                    vocabulary 257,216), random bf16 weights written by `scripts/bench/make_model.py` (nothing \
                    downloaded).",
                config: paligemma::PaliGemmaConfig::named("paligemma2-3b-pt-224").expect("a released id"),
            }
        } else {
            Self {
                kind: "fullsize",
                dir: "pt224-random",
                title: "PaliGemma-3B-pt-224",
                description: "Real paligemma-3b-pt-224 shapes (SigLIP so400m/14 at 224 px, 256 image tokens; \
                    Gemma-2B, 18 layers; vocabulary 257,216), random bf16 weights written by \
                    `scripts/bench/make_model.py` (nothing downloaded); the composition uses a standalone so400m \
                    SigLIP and a standalone Gemma-2B (vocabulary 256,000) with a new MLP projector.",
                config: paligemma::PaliGemmaConfig::paligemma_3b_pt_224(),
            }
        }
    }
}

struct Case {
    strategy: &'static str,
    name: &'static str,
    rust: WorkerResult,
    hf: Option<WorkerResult>,
}

pub fn run(a: &Args) -> Result<i32> {
    let c = &a.common;
    let Session { repo, work, python, runner, versions, threads } = c.session()?;
    // One weights set on disk at a time (5.9 GB, then 5.8 GB): the composition's directories are written after the
    // PaliGemma one is gone, unless --keep-weights.
    let variant = Variant::of(a);
    let (pt_dir, siglip_dir, gemma_dir) =
        (work.join(variant.dir), work.join("siglip-so400m-random"), work.join("gemma-2b-random"));
    need_disk(&work, &pt_dir, 6.5)?;
    let pt = cases::ensure_model(&python, &repo, variant.kind, &pt_dir)?;
    let pcfg = paligemma::PaliGemmaConfig::from_file(&pt.join("config.json"))?;
    let inputs_dir = work.join("inputs");
    std::fs::create_dir_all(&inputs_dir)?;
    let batch_file = inputs_dir.join(format!("fullsize-b{}.safetensors", a.batch));
    let seq_len = inputs::write_train(&pt, a.batch, 0, 3000, &batch_file)?;
    let init = inputs_dir.join("fullsize-init-lora.safetensors");
    inputs::write_init(&pcfg, "lora", 8, 0, 11, &init)?;

    let spec = |strategy: &str| Spec {
        task: Task::Train,
        model_dir: pt.clone(),
        inputs: batch_file.clone(),
        init: (strategy == "lora").then(|| init.clone()),
        strategy: strategy.into(),
        dtype: "bf16".into(),
        device: c.device.clone(),
        checkpointing: true,
        threads,
        warmup: 0,
        steps: 1,
        lr: 1e-4,
        lora_r: if strategy == "custom" { 16 } else { 8 },
        lora_alpha: if strategy == "custom" { 32.0 } else { 16.0 },
        max_grad_norm: Some(1.0),
        num_beams: 1,
        max_new_tokens: 0,
        profile: false,
        siglip_dir: (strategy == "custom").then(|| siglip_dir.clone()),
        gemma_dir: (strategy == "custom").then(|| gemma_dir.clone()),
        soft_len: 0,
        plan: true,
        probe: false,
    };
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    let steps = [
        ("lora", "LoRA r8 on Gemma q/k/v/o"),
        ("hard_prompt", "attention only (Gemma q/k/v/o)"),
        ("custom", "SigLIP + MLP projector + Gemma-2B, LoRA r16"),
    ];
    let steps = if a.paligemma2 { &steps[..2] } else { &steps[..] };
    for &(strategy, name) in steps {
        if strategy == "custom" {
            if !a.keep_weights {
                let _ = std::fs::remove_dir_all(&pt);
            }
            need_disk(&work, &gemma_dir, 6.5)?;
            cases::ensure_model(&python, &repo, "siglip", &siglip_dir)?;
            cases::ensure_model(&python, &repo, "gemma2b", &gemma_dir)?;
        }
        eprintln!(
            "fullsize {strategy}: this project ({:.0} s so far)...",
            started.elapsed().as_secs_f64()
        );
        let rust = runner.run(Side::Rust, &spec(strategy), &format!("fullsize-{strategy}"))?;
        eprintln!(
            "  peak {} (planner {}), loss {:.4}, step {:.0} s",
            mib(rust.peak_rss as f64),
            mib(rust.plan_bytes.unwrap_or(0.0)),
            rust.losses.first().copied().unwrap_or(f64::NAN),
            rust.step_s.first().copied().unwrap_or(0.0)
        );
        let hf = if a.skip_reference || strategy == "custom" {
            None
        } else {
            eprintln!("fullsize {strategy}: transformers + PEFT...");
            let r = runner.run(Side::Hf, &spec(strategy), &format!("fullsize-{strategy}"))?;
            eprintln!("  peak {}, loss {:.4}", mib(r.peak_rss as f64), r.losses[0]);
            Some(r)
        };
        out.push(Case { strategy, name, rust, hf });
    }
    if !a.keep_weights {
        for d in [&pt_dir, &siglip_dir, &gemma_dir] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    let cases =
        out.iter().map(|c| serde_json::json!({"case": c.strategy, "rust": c.rust, "hf": c.hf}));
    write_raw(
        &work,
        if a.paligemma2 { "fullsize-paligemma2" } else { "fullsize" },
        cases.collect(),
    )?;
    let section = render(a, &variant, &out, &versions, seq_len, threads)?;
    c.publish(&section)?;
    let within = out.iter().all(|c| plan_error(&c.rust).is_some_and(|e| e.abs() <= PLAN_TOLERANCE));
    Ok(if within { 0 } else { 3 })
}

/// Refuses to start writing `gib` GB of weights into `dir` when the disk would be left with under 3 GB.
fn need_disk(work: &std::path::Path, dir: &std::path::Path, gib: f64) -> Result<()> {
    if dir.join("make_model.py.used").is_file() {
        return Ok(());
    }
    std::fs::create_dir_all(work)?;
    let out = std::process::Command::new("df").args(["-Pk"]).arg(work).output();
    let free_gib = out.ok().and_then(|o| {
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        let kib: f64 = text.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()?;
        Some(kib / (1u64 << 20) as f64)
    });
    if let Some(free) = free_gib {
        if free < gib + 3.0 {
            anyhow::bail!(
                "{} has {free:.1} GB free; the random weights need {gib:.1} GB plus 3 GB of headroom (use --work-dir \
                 on a larger disk)",
                work.display()
            );
        }
    }
    Ok(())
}

/// (measured - planned) / planned, where measured = peak RSS minus the process's RSS before the model existed.
fn plan_error(r: &WorkerResult) -> Option<f64> {
    let plan = r.plan_bytes?;
    let measured = r.peak_rss.saturating_sub(r.rss_baseline) as f64;
    Some((measured - plan) / plan)
}

/// The planner's estimate for a 16 GB GPU at batch 8 (what `pgrs plan` prints), for LoRA and attention-only.
fn plan_batch8(pcfg: &paligemma::PaliGemmaConfig) -> Result<(usize, Vec<(String, f64)>)> {
    let mut rows = Vec::new();
    let text_len = 32;
    let seq_len = pcfg.num_image_tokens() as usize + 5 + text_len + 1;
    for (label, section) in [
        ("LoRA r8 q/k/v/o", "strategy = \"lora\"\n[model]\npath = \"x\"\ndtype = \"bf16\"\ngradient_checkpointing = true\n[data]\npath = \"x\"\n[train]\nbatch_size = 8\n[lora]\n"),
        ("attention only", "strategy = \"hard_prompt\"\n[model]\npath = \"x\"\ndtype = \"bf16\"\ngradient_checkpointing = true\n[data]\npath = \"x\"\n[train]\nbatch_size = 8\npreset = \"attention\"\n"),
    ] {
        let cfg = ExperimentConfig::from_toml(&format!("name = \"plan\"\n{section}"), &[])?;
        let (base_params, base_bytes, trainable, extra, vision_trainable) =
            memory::analytic_sizes(&cfg, pcfg, tch::Kind::BFloat16);
        let plan = memory::plan(&PlanInput {
            config: pcfg,
            act_bytes: 2.0,
            base_params,
            base_bytes,
            trainable_params: trainable,
            extra_params: extra,
            batch: 8,
            seq_len,
            supervised_tokens: 8 * (text_len + 1),
            checkpointing: true,
            vision_trainable,
            optimizer_slots: trainer::session::optimizer_slots(&cfg),
            ranks: 1,
        });
        rows.push((label.to_string(), plan.total()));
    }
    Ok((seq_len, rows))
}

fn render(
    a: &Args,
    variant: &Variant,
    cases: &[Case],
    versions: &serde_json::Value,
    seq_len: i64,
    threads: usize,
) -> Result<String> {
    let c = &a.common;
    let mut s = format!(
        "## fullsize: {} peak memory vs the planner and transformers + PEFT, {} (`cargo xtask bench fullsize{}`)\n\n",
        variant.title,
        report::today(),
        if a.paligemma2 { " --paligemma2" } else { "" }
    );
    s += &format!(
        "{} One training step (forward, backward, clip, AdamW) at batch {}, {seq_len} tokens per sequence, \
         bf16 base with f32 trainables, gradient checkpointing on, {threads} threads, on CPU; each side in its own \
         process. Measured = peak RSS while training minus the process's RSS before the model was built (libtorch / \
         the Python runtime); the planner counts weights, gradients, optimizer state, activations and the loss's \
         logits. Memory only: step times are shown for scale.\n\n{}\n\n",
        variant.description,
        a.batch,
        machine::describe(&c.device, versions)
    );
    let mut rows = Vec::new();
    for k in cases {
        let r = &k.rust;
        let measured = r.peak_rss.saturating_sub(r.rss_baseline) as f64;
        let err = plan_error(r);
        let hf = k.hf.as_ref();
        rows.push(vec![
            k.name.to_string(),
            format!("{:.1} M", r.trainable_params as f64 / 1e6),
            format!(
                "{:.4}{}",
                r.losses.first().copied().unwrap_or(f64::NAN),
                hf.map_or(String::new(), |h| format!(" / {:.4}", h.losses[0]))
            ),
            mib(r.peak_rss as f64),
            mib(measured),
            mib(r.plan_bytes.unwrap_or(0.0)),
            err.map_or("-".into(), |e| {
                format!("{:+.1}%{}", e * 100.0, if e.abs() <= PLAN_TOLERANCE { "" } else { " ✗" })
            }),
            hf.map_or("not run".into(), |h| mib(h.peak_rss as f64)),
            hf.map_or("-".into(), |h| format!("**{:.2}**", r.peak_rss as f64 / h.peak_rss as f64)),
            format!(
                "{:.0} s{}",
                r.step_s.first().copied().unwrap_or(0.0),
                hf.map_or(String::new(), |h| format!(
                    " / {:.0} s",
                    h.step_s.first().copied().unwrap_or(0.0)
                ))
            ),
        ]);
    }
    s += &report::table(
        &[
            "step",
            "trainable",
            "loss ours / ref",
            "peak RSS, ours",
            "ours minus runtime",
            "planner",
            "planner error",
            "peak RSS, transformers + PEFT",
            "memory ratio",
            "step time ours / ref",
        ],
        &[false, true, false, true, true, true, true, true, true, true],
        &rows,
    );
    let (plan_len, plans) = plan_batch8(&variant.config)?;
    s += &format!(
        "\nPlanner target: measured within {:.0}% of the estimate. The reference has no composition step (it would be \
         a hand-written model on the Python side too).\n\nPlanner, batch 8 on a 16 GB GPU ({plan_len}-token sequences, \
         checkpointing on, bf16 base; CUDA context ~0.5 GiB not included): {}.\n",
        PLAN_TOLERANCE * 100.0,
        plans
            .iter()
            .map(|(l, b)| format!(
                "{l} {:.1} GiB ({})",
                b / (1u64 << 30) as f64,
                if b / (1u64 << 30) as f64 + 0.5 <= 16.0 { "fits" } else { "does not fit" }
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(t) = cases.first().and_then(|k| k.rust.plan_table.as_ref()) {
        s += &format!("\nPlanner breakdown of the LoRA step above:\n\n```\n{}```\n", t);
    }
    Ok(s)
}
