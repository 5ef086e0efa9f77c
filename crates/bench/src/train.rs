//! `pgrs bench train`: one optimizer step (forward, backward, clip, AdamW update) of this project against
//! `PaliGemmaForConditionalGeneration` + PEFT, for attention-only hard prompt, LoRA r8 and a 10-vector soft prompt, at
//! batch 1 and 8, f32 and bf16, with and without gradient checkpointing, on the mid-size model of
//! `scripts/bench/make_model.py` (real 257,216-token vocabulary, 256 image tokens): PaliGemma 1 by default, PaliGemma 2
//! (Gemma-2 decoder) with `--model midsize2`.
use super::cases::{self, TrainCase};
use super::inputs;
use super::runner::Side;
use super::spec::{write_raw, Spec, Task, WorkerResult};
use super::stats::{mib, secs_range, Summary};
use super::{machine, report, Common, ModelChoice, Session};
use anyhow::{bail, Result};

/// Time and memory targets on CPU (issue 6): ours at most 0.6 of the reference.
pub const TIME_TARGET: f64 = 0.6;
pub const MEMORY_TARGET: f64 = 0.6;
/// Losses must agree before timings count: f32 on every step (same updates), bf16 on the first step (the reference
/// trains bf16 weights in bf16 where this project keeps f32 masters, so later steps legitimately drift apart).
pub const F32_REL_TOL: f64 = 1e-4;
pub const BF16_REL_TOL: f64 = 2e-3;
const SOFT_LEN: usize = 10;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// `midsize` (mid-size PaliGemma) or `midsize2` (mid-size PaliGemma 2, Gemma-2 decoder), both generated once
    /// under the work directory; or an HF PaliGemma directory.
    #[arg(long, default_value = ModelChoice::DEFAULT, value_parser = ModelChoice::parse)]
    pub model: ModelChoice,
    /// Only these dtypes (f32, bf16).
    #[arg(long, value_delimiter = ',', default_value = "f32,bf16")]
    pub dtypes: Vec<String>,
    /// AdamW learning rate (constant; large enough that the updates show in the following losses).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
}

pub struct Row {
    pub case: TrainCase,
    pub rust: Vec<WorkerResult>,
    pub hf: Vec<WorkerResult>,
    pub max_rel_diff: f64,
    pub agree: bool,
}

impl Row {
    fn times(runs: &[WorkerResult]) -> Option<Summary> {
        Summary::of(&runs.iter().flat_map(|r| r.step_s.iter().copied()).collect::<Vec<_>>())
    }
    fn peak(runs: &[WorkerResult], total: bool) -> f64 {
        let v: Vec<f64> = runs
            .iter()
            .map(|r| if total { r.peak_rss_total as f64 } else { r.peak_memory() })
            .collect();
        Summary::of(&v).map_or(0.0, |s| s.median)
    }
    pub fn time_ratio(&self) -> Option<f64> {
        Some(Self::times(&self.rust)?.median / Self::times(&self.hf)?.median)
    }
    pub fn memory_ratio(&self) -> f64 {
        Self::peak(&self.rust, false) / Self::peak(&self.hf, false)
    }
}

/// Relative difference of two loss sequences over the steps that must agree.
pub fn loss_agreement(dtype: &str, ours: &[f64], theirs: &[f64]) -> (f64, bool) {
    let n = if dtype == "f32" { ours.len().min(theirs.len()) } else { 1 };
    let tol = if dtype == "f32" { F32_REL_TOL } else { BF16_REL_TOL };
    if ours.len() < n || theirs.len() < n || n == 0 {
        return (f64::INFINITY, false);
    }
    let worst = ours[..n]
        .iter()
        .zip(&theirs[..n])
        .map(|(a, b)| (a - b).abs() / b.abs().max(1e-12))
        .fold(0.0f64, f64::max);
    (worst, worst <= tol && ours[..n].iter().all(|x| x.is_finite()))
}

pub fn run(a: &Args) -> Result<i32> {
    let c = &a.common;
    let session = c.session()?;
    let model = session.model(&a.model)?;
    let Session { work, runner, versions, threads, .. } = session;
    let rounds = c.rounds();
    let steps = c.steps.unwrap_or(1);
    let dtypes: Vec<&'static str> = a
        .dtypes
        .iter()
        .map(|d| match d.as_str() {
            "f32" => Ok("f32"),
            "bf16" => Ok("bf16"),
            other => bail!("--dtypes: `{other}` is not f32 or bf16"),
        })
        .collect::<Result<_>>()?;
    let list = c.select(cases::train_cases(c.quick, &dtypes), |k| k.label())?;

    // Shared inputs: one batch per (batch size, soft slots), one init per strategy.
    let inputs_dir = a.model.inputs_dir(&work);
    std::fs::create_dir_all(&inputs_dir)?;
    let pcfg = paligemma::PaliGemmaConfig::from_file(&model.join("config.json"))?;
    let mut seq_lens = std::collections::BTreeMap::new();
    let mut spec_for = |k: &TrainCase| -> Result<Spec> {
        let soft = if k.strategy == "soft_prompt" { SOFT_LEN } else { 0 };
        let batch_file = inputs_dir.join(format!("train-b{}-soft{soft}.safetensors", k.batch));
        let len = inputs::write_train(&model, k.batch, soft, 1000 + k.batch as i64, &batch_file)?;
        seq_lens.insert((k.batch, soft), len);
        let init = inputs_dir.join(format!("init-{}.safetensors", k.strategy));
        inputs::write_init(&pcfg, k.strategy, 8, SOFT_LEN, 7, &init)?;
        Ok(Spec {
            task: Task::Train,
            model_dir: model.clone(),
            inputs: batch_file,
            init: (k.strategy != "hard_prompt").then_some(init),
            strategy: k.strategy.into(),
            dtype: k.dtype.into(),
            device: c.device.clone(),
            checkpointing: k.checkpointing,
            threads,
            warmup: 1,
            steps,
            lr: a.lr,
            lora_r: 8,
            lora_alpha: 16.0,
            max_grad_norm: Some(1.0),
            num_beams: 1,
            max_new_tokens: 0,
            profile: false,
            siglip_dir: None,
            gemma_dir: None,
            soft_len: soft,
            plan: false,
            probe: false,
        })
    };

    eprintln!(
        "bench train: {} cases x {rounds} rounds x (1 warm-up + {steps} timed steps) per side, {threads} threads, {}",
        list.len(),
        c.device
    );
    let started = std::time::Instant::now();
    let mut rows = Vec::new();
    for (n, k) in list.iter().enumerate() {
        let spec = spec_for(k)?;
        let label = k.label();
        let (mut rust, mut hf) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let order =
                if round % 2 == 0 { [Side::Rust, Side::Hf] } else { [Side::Hf, Side::Rust] };
            for side in order {
                let r = runner.run(side, &spec, &format!("train-{label}-r{round}"))?;
                match side {
                    Side::Rust => rust.push(r),
                    Side::Hf => hf.push(r),
                }
            }
        }
        let (max_rel_diff, agree) = loss_agreement(k.dtype, &rust[0].losses, &hf[0].losses);
        let row = Row { case: k.clone(), rust, hf, max_rel_diff, agree };
        eprintln!(
            "[{}/{}] {label}: loss {:.5} vs {:.5} ({}), step {} vs {}, peak {} vs {}  ({:.0} s so far)",
            n + 1,
            list.len(),
            row.rust[0].losses[0],
            row.hf[0].losses[0],
            if agree { "agree" } else { "DISAGREE" },
            Row::times(&row.rust).map_or("-".into(), |s| secs_range(&s)),
            Row::times(&row.hf).map_or("-".into(), |s| secs_range(&s)),
            mib(Row::peak(&row.rust, false)),
            mib(Row::peak(&row.hf, false)),
            started.elapsed().as_secs_f64()
        );
        rows.push(row);
    }

    // Where a target is missed (or when asked), a profile by block of the same case without checkpointing.
    let mut profiles = Vec::new();
    let mut profiled = std::collections::HashSet::new();
    for row in &rows {
        let missed = row.time_ratio().is_some_and(|r| r > TIME_TARGET);
        let key = TrainCase { checkpointing: false, ..row.case.clone() };
        if (missed || c.profile) && profiled.insert(key.label()) {
            let mut spec = spec_for(&key)?;
            spec.profile = true;
            let tag = format!("profile-{}", key.label());
            let rust = runner.run(Side::Rust, &spec, &tag)?;
            let hf = runner.run(Side::Hf, &spec, &tag)?;
            profiles.push((key, rust, hf));
        }
    }

    let cases = rows
        .iter()
        .map(|r| serde_json::json!({"case": r.case.label(), "rust": r.rust, "hf": r.hf}));
    write_raw(&work, &format!("train{}", a.model.file_tag()), cases.collect())?;
    let section = render(a, &rows, &profiles, &versions, &pcfg, &seq_lens, threads, rounds, steps);
    c.publish(&section)?;
    Ok(if rows.iter().all(|r| r.agree) { 0 } else { 2 })
}

#[allow(clippy::too_many_arguments)]
fn render(
    a: &Args,
    rows: &[Row],
    profiles: &[(TrainCase, WorkerResult, WorkerResult)],
    versions: &serde_json::Value,
    pcfg: &paligemma::PaliGemmaConfig,
    seq_lens: &std::collections::BTreeMap<(usize, usize), i64>,
    threads: usize,
    rounds: usize,
    steps: usize,
) -> String {
    let c = &a.common;
    let params: i64 = pcfg.parameter_shapes().iter().map(|(_, s)| s.iter().product::<i64>()).sum();
    let (v, t) = (&pcfg.vision_config, &pcfg.text_config);
    let lens: Vec<String> = seq_lens
        .iter()
        .map(|((b, soft), l)| {
            format!(
                "batch {b}{}: {l}",
                if *soft > 0 { format!(" with {soft} soft slots") } else { String::new() }
            )
        })
        .collect();
    let dtypes = if a.dtypes.join(",") == "f32,bf16" {
        String::new()
    } else {
        format!(" --dtypes {}", a.dtypes.join(","))
    };
    let mut s = format!(
        "## train{}: one optimizer step vs transformers + PEFT, {} (`cargo xtask bench train{}{dtypes}{}`)\n\n",
        cases::title_model(pcfg),
        report::today(),
        a.model.flag(),
        c.flags()
    );
    s += &format!(
        "Model: {}, {:.1} M parameters: SigLIP {}x{} ({} image tokens), {}, \
         vocabulary {} (tied head); seeded random weights from `scripts/bench/make_model.py`, read by both sides. \
         Sequence lengths: {}. One step = forward, backward, global-norm clip 1.0, AdamW (lr {}, no decay), on the same \
         batch and the same initial trainables on both sides. {} round(s) per case, each running both sides in \
         separate processes (alternating which goes first), each process 1 warm-up + {} timed steps; medians \
         (min-max) over all timed steps; {} threads on both sides. Peak memory: on CPU the peak RSS of the process \
         while training (high-water mark reset once the model is loaded; weights included), on CUDA the process's \
         GPU memory sampled from nvidia-smi.\n\n",
        a.model.describe(),
        params as f64 / 1e6,
        v.hidden_size,
        v.num_hidden_layers,
        pcfg.num_image_tokens(),
        cases::text_model(pcfg),
        t.vocab_size,
        lens.join(", "),
        a.lr,
        rounds,
        steps,
        threads
    );
    s += &format!(
        "{}{}\n\n",
        machine::describe(&c.device, versions),
        cases::reference_attention(rows.iter().flat_map(|r| &r.hf))
    );
    let mut table_rows = Vec::new();
    let (mut time_ok, mut mem_ok) = (0, 0);
    for r in rows {
        let tr = r.time_ratio();
        let mr = r.memory_ratio();
        time_ok += usize::from(tr.is_some_and(|x| x <= TIME_TARGET));
        mem_ok += usize::from(mr <= MEMORY_TARGET);
        let mark = |ok: bool| if ok { "" } else { " ✗" };
        table_rows.push(vec![
            r.case.strategy_name().to_string(),
            r.case.batch.to_string(),
            r.case.dtype.to_string(),
            if r.case.checkpointing { "on" } else { "off" }.to_string(),
            format!(
                "{:.4} / {:.4}{}",
                r.rust[0].losses[0],
                r.hf[0].losses[0],
                if r.agree { "" } else { " DISAGREE" }
            ),
            Row::times(&r.rust).map_or("-".into(), |x| secs_range(&x)),
            Row::times(&r.hf).map_or("-".into(), |x| secs_range(&x)),
            tr.map_or("-".into(), |x| format!("**{x:.2}**{}", mark(x <= TIME_TARGET))),
            mib(Row::peak(&r.rust, false)),
            mib(Row::peak(&r.hf, false)),
            format!("**{mr:.2}**{}", mark(mr <= MEMORY_TARGET)),
        ]);
    }
    s += &report::table(
        &[
            "strategy",
            "batch",
            "dtype",
            "ckpt",
            "loss ours / ref",
            "step, ours",
            "step, transformers + PEFT",
            "time ratio",
            "peak memory, ours",
            "peak memory, ref",
            "memory ratio",
        ],
        &[false, true, false, false, false, true, true, true, true, true, true],
        &table_rows,
    );
    let worst_f32 = rows
        .iter()
        .filter(|r| r.case.dtype == "f32")
        .map(|r| r.max_rel_diff)
        .fold(0.0f64, f64::max);
    let worst_bf16 = rows
        .iter()
        .filter(|r| r.case.dtype != "f32")
        .map(|r| r.max_rel_diff)
        .fold(0.0f64, f64::max);
    let has = |f32: bool| rows.iter().any(|r| (r.case.dtype == "f32") == f32);
    let mut agreement = Vec::new();
    if has(true) {
        agreement.push(format!(
            "f32 every step within {F32_REL_TOL:e} relative (largest seen: {})",
            seen(worst_f32)
        ));
    }
    if has(false) {
        agreement.push(format!(
            "bf16 first step within {BF16_REL_TOL:e} (largest seen: {})",
            seen(worst_bf16)
        ));
    }
    s += &format!(
        "\nTargets on CPU (ours / reference): step time at most {TIME_TARGET}: met in {time_ok} of {n} cases; peak \
         memory at most {MEMORY_TARGET}: met in {mem_ok} of {n} (✗ marks a miss). Loss agreement before timing: {}.{}\n",
        agreement.join("; "),
        if rows.iter().all(|r| r.agree) {
            String::new()
        } else {
            " SOME CASES DISAGREE: their timings compare different work.".into()
        },
        n = rows.len()
    );
    let totals: Vec<String> = rows
        .iter()
        .filter(|r| r.case.batch == 8 && !r.case.checkpointing)
        .map(|r| {
            format!(
                "{} {}: {} vs {}",
                r.case.strategy_name(),
                r.case.dtype,
                mib(Row::peak(&r.rust, true)),
                mib(Row::peak(&r.hf, true))
            )
        })
        .collect();
    if !totals.is_empty() {
        s += &format!(
            "\nWhole-process peak RSS (loading included), batch 8 without checkpointing, ours vs reference: {}.\n",
            totals.join("; ")
        );
    }
    for (k, rust, hf) in profiles {
        s += &format!(
            "\nProfile by block, {} (batch {}, {}, no checkpointing; mean of the timed steps of one process per side):\n\n",
            k.strategy_name(),
            k.batch,
            k.dtype
        );
        s += &profile_table(rust, hf);
    }
    s
}

fn seen(x: f64) -> String {
    if x == 0.0 {
        "0, bit-identical".into()
    } else {
        format!("{x:.1e}")
    }
}

fn profile_table(rust: &WorkerResult, hf: &WorkerResult) -> String {
    // Decoder layers are summed into one row each side (per-layer rows are in the raw results).
    let rename = |v: &Option<Vec<(String, f64)>>| -> Vec<(String, f64)> {
        v.iter()
            .flatten()
            .map(|(k, s)| {
                let key = if k.starts_with("decoder layer") { "decoder layers (all)" } else { k };
                (key.to_string(), *s)
            })
            .collect()
    };
    report::profile_table(&rename(&rust.profile), &rename(&hf.profile), "transformers + PEFT")
}
