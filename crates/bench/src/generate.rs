//! `pgrs bench generate`: greedy and beam-3 captioning (32 new tokens, batch 1 and 8) against transformers'
//! `generate` on the same weights and prompts; the generated ids must be identical before speeds are compared.
//! Tokens per second = generated tokens (over all rows) / time of the whole `generate` call (vision tower, prefill and
//! decoding); time to first token = a `generate` call with one new token.
use super::cases::{self, GenerateCase};
use super::inputs;
use super::runner::Side;
use super::spec::{write_raw, Spec, Task, WorkerResult};
use super::stats::{mib, secs_range, Summary};
use super::{machine, report, Common, ModelChoice, Session};
use anyhow::Result;

/// Generation target on CPU: at least 1.5 times the reference's tokens per second.
pub const SPEED_TARGET: f64 = 1.5;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// `midsize` (mid-size PaliGemma) or `midsize2` (mid-size PaliGemma 2), the models of `bench train`; or an HF
    /// PaliGemma directory.
    #[arg(long, default_value = ModelChoice::DEFAULT, value_parser = ModelChoice::parse)]
    pub model: ModelChoice,
    /// f32 (ids must match exactly) or bf16 (ids are compared and reported; rounding may split near-ties).
    #[arg(long, default_value = "f32", value_parser = dtype_word)]
    pub dtype: String,
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: usize,
}

struct Row {
    case: GenerateCase,
    rust: Vec<WorkerResult>,
    hf: Vec<WorkerResult>,
    same_ids: bool,
    tokens: usize,
}

fn summary(runs: &[WorkerResult], f: fn(&WorkerResult) -> &Vec<f64>) -> Option<Summary> {
    Summary::of(&runs.iter().flat_map(|r| f(r).iter().copied()).collect::<Vec<_>>())
}

/// `--dtype`, parsed as experiment files parse it and written as the workers expect it (`f32`, `bf16`, `f16`).
fn dtype_word(s: &str) -> Result<String, String> {
    <weights::DType as trainer::setting::Setting>::parse_setting(s)
        .map(|d| trainer::setting::Setting::word(&d))
}

pub fn run(a: &Args) -> Result<i32> {
    let c = &a.common;
    let session = c.session()?;
    let model = session.model(&a.model)?;
    let pcfg = paligemma::PaliGemmaConfig::from_file(&model.join("config.json"))?;
    let Session { work, runner, versions, threads, .. } = session;
    let rounds = c.rounds();
    let steps = c.steps.unwrap_or(2);
    let list = c.select(cases::generate_cases(c.quick), |k| k.label())?;
    let inputs_dir = a.model.inputs_dir(&work);
    std::fs::create_dir_all(&inputs_dir)?;
    eprintln!(
        "bench generate: {} cases x {rounds} rounds x (1 warm-up + {steps} timed calls) per side, {threads} threads",
        list.len()
    );
    let mut rows = Vec::new();
    let mut specs = Vec::new();
    for (n, k) in list.iter().enumerate() {
        let file = inputs_dir.join(format!("generate-b{}.safetensors", k.batch));
        inputs::write_generate(&model, k.batch, 2000 + k.batch as i64, &file)?;
        let spec = Spec {
            task: Task::Generate,
            model_dir: model.clone(),
            inputs: file,
            init: None,
            strategy: "none".into(),
            dtype: a.dtype.clone(),
            device: c.device.clone(),
            checkpointing: false,
            threads,
            warmup: 1,
            steps,
            lr: 0.0,
            lora_r: 0,
            lora_alpha: 0.0,
            max_grad_norm: None,
            num_beams: k.beams,
            max_new_tokens: a.max_new_tokens,
            profile: false,
            siglip_dir: None,
            gemma_dir: None,
            soft_len: 0,
            plan: false,
        };
        let (mut rust, mut hf) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let order =
                if round % 2 == 0 { [Side::Rust, Side::Hf] } else { [Side::Hf, Side::Rust] };
            for side in order {
                let r = runner.run(side, &spec, &format!("generate-{}-r{round}", k.label()))?;
                match side {
                    Side::Rust => rust.push(r),
                    Side::Hf => hf.push(r),
                }
            }
        }
        let same_ids = rust[0].ids == hf[0].ids;
        let tokens = rust[0].ids.iter().map(Vec::len).sum();
        let row = Row { case: k.clone(), rust, hf, same_ids, tokens };
        eprintln!(
            "[{}/{}] {}: ids {}, {} tokens, {} vs {}",
            n + 1,
            list.len(),
            k.label(),
            if same_ids { "identical" } else { "DIFFER" },
            tokens,
            summary(&row.rust, |r| &r.gen_s).map_or("-".into(), |s| secs_range(&s)),
            summary(&row.hf, |r| &r.gen_s).map_or("-".into(), |s| secs_range(&s)),
        );
        rows.push(row);
        specs.push(spec);
    }
    // Where the speed target is missed (or when asked), where the time goes: one more process per side, timed
    // calls first, then profiled ones (`paligemma::generate_profiled` / forward hooks on the same blocks).
    let mut profiles = Vec::new();
    for (row, spec) in rows.iter().zip(&specs) {
        let missed = row_speed(row).is_none_or(|x| x < SPEED_TARGET);
        if missed || c.profile {
            let spec = Spec { profile: true, warmup: 1, steps: 1, ..spec.clone() };
            let tag = format!("profile-generate-{}", row.case.label());
            let rust = runner.run(Side::Rust, &spec, &tag)?;
            let hf = runner.run(Side::Hf, &spec, &tag)?;
            profiles.push((row.case.clone(), rust, hf));
        }
    }
    // After every worker has run, so the probe never competes with them.
    let head_rows: Vec<i64> = list.iter().map(|k| (k.batch * k.beams) as i64).collect();
    let probe = (!profiles.is_empty() && !c.device.starts_with("cuda"))
        .then(|| head_probe(&pcfg, &a.dtype, threads, &head_rows));
    let bandwidth = probe.as_ref().map(|p| p.bandwidth);
    let cases = rows
        .iter()
        .map(|r| serde_json::json!({"case": r.case.label(), "rust": r.rust, "hf": r.hf}));
    write_raw(&work, &format!("generate{}", a.model.file_tag()), cases.collect())?;
    let mut section =
        render(a, &pcfg, &rows, &profiles, bandwidth, &versions, threads, rounds, steps);
    if let Some(p) = &probe {
        section += &p.render(&pcfg, &a.dtype);
    }
    c.publish(&section)?;
    let strict = a.dtype == "f32";
    Ok(if !strict || rows.iter().all(|r| r.same_ids) { 0 } else { 2 })
}

/// Bytes of the output head's table (the tied embedding, `[vocab, hidden]`) in the run's dtype.
fn head_bytes(pcfg: &paligemma::PaliGemmaConfig, dtype: &str) -> f64 {
    let t = &pcfg.text_config;
    (t.vocab_size * t.hidden_size) as f64 * if dtype == "f32" { 4.0 } else { 2.0 }
}

/// What the output head's product costs on this machine, measured in the orchestrator after every worker has run:
/// the best read of the table, and one decoding step's product for each row count of the run, as
/// `gemma::Gemma::logits_decode` computes it and with the layout that MKL streams fastest.
struct HeadProbe {
    /// Bytes per second: the fastest of a few `E h` products and plain sums over a table of the head's shape and
    /// dtype. Reading the table once per decoding step is the least any head can do, so `table bytes / this`
    /// bounds the head's time per step from below.
    bandwidth: f64,
    /// `(rows, seconds of h E^T as transformers' lm_head computes it, seconds as logits_decode does it)`, f32 only.
    products: Vec<(i64, f64, f64)>,
}

fn best_of(n: usize, mut f: impl FnMut() -> tch::Tensor) -> f64 {
    (0..n)
        .map(|_| {
            let started = std::time::Instant::now();
            let _ = f();
            started.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn head_probe(
    pcfg: &paligemma::PaliGemmaConfig,
    dtype: &str,
    threads: usize,
    rows: &[i64],
) -> HeadProbe {
    use tch::{Device, Kind, Tensor};
    tch::set_num_threads(threads as i32);
    let kind = if dtype == "f32" { Kind::Float } else { Kind::BFloat16 };
    let t = &pcfg.text_config;
    let table =
        Tensor::randn([t.vocab_size, t.hidden_size], (Kind::Float, Device::Cpu)).to_kind(kind);
    let h = Tensor::randn([t.hidden_size, 1], (Kind::Float, Device::Cpu)).to_kind(kind);
    let read = best_of(6, || table.matmul(&h)).min(best_of(6, || table.sum(Kind::Float)));
    let mut products = Vec::new();
    if kind == Kind::Float {
        let mut seen = rows.to_vec();
        seen.sort_unstable();
        seen.dedup();
        for &r in &seen {
            let hs = Tensor::randn([r, t.hidden_size], (Kind::Float, Device::Cpu));
            // `h E^T` through `linear`, as transformers' `lm_head` (and `Gemma::logits`) computes it.
            let linear = best_of(8, || hs.linear::<Tensor>(&table, None));
            // `Gemma::logits_decode` (crates/gemma/src/model.rs), without the soft-capping: `(E h^T)^T` with h^T
            // left as a (column-major) view, one row padded to two.
            let view = best_of(8, || {
                if r == 1 {
                    table
                        .matmul(&Tensor::cat(&[&hs, &hs], 0).tr())
                        .narrow(1, 0, 1)
                        .tr()
                        .contiguous()
                } else {
                    table.matmul(&hs.tr()).tr().contiguous()
                }
            });
            products.push((r, linear, view));
        }
    }
    HeadProbe { bandwidth: head_bytes(pcfg, dtype) / read, products }
}

impl HeadProbe {
    fn render(&self, pcfg: &paligemma::PaliGemmaConfig, dtype: &str) -> String {
        if self.products.is_empty() {
            return String::new();
        }
        let bytes = head_bytes(pcfg, dtype);
        let bound = bytes / self.bandwidth;
        let ms = |x: f64| format!("{:.1} ms", x * 1e3);
        let rows: Vec<Vec<String>> = self
            .products
            .iter()
            .map(|&(r, linear, view)| {
                vec![
                    r.to_string(),
                    format!("{} ({:.0}%)", ms(linear), 100.0 * bound / linear),
                    format!("{} ({:.0}%)", ms(view), 100.0 * bound / view),
                    ms(bound),
                ]
            })
            .collect();
        let mut s = format!(
            "\nThe output head's product for one decoding step, measured in the orchestrator after the workers (best \
             of 8; rows = batch x beams; in brackets the share of the read bound's speed): `h E^T` through `linear`, \
             as transformers' `lm_head` computes it, and `(E h^T)^T` with h^T left a column-major view (one row padded \
             to two), as `gemma::Gemma::logits_decode` computes it, which MKL's sgemm streams; the bound is one read \
             of the {} x {} {dtype} table ({:.0} MB) at {:.1} GB/s. Soft-capping (Gemma 2) comes on top of each.\n\n",
            pcfg.text_config.vocab_size,
            pcfg.text_config.hidden_size,
            bytes / 1e6,
            self.bandwidth / 1e9
        );
        s += &report::table(
            &[
                "rows",
                "`h E^T` (transformers' `lm_head`)",
                "`logits_decode`",
                "one read of the table",
            ],
            &[true, true, true, true],
            &rows,
        );
        s
    }
}

fn row_speed(r: &Row) -> Option<f64> {
    let (ours, theirs) = (summary(&r.rust, |x| &x.gen_s)?, summary(&r.hf, |x| &x.gen_s)?);
    Some(theirs.median / ours.median)
}

#[allow(clippy::too_many_arguments)]
fn render(
    a: &Args,
    pcfg: &paligemma::PaliGemmaConfig,
    rows: &[Row],
    profiles: &[(GenerateCase, WorkerResult, WorkerResult)],
    bandwidth: Option<f64>,
    versions: &serde_json::Value,
    threads: usize,
    rounds: usize,
    steps: usize,
) -> String {
    let c = &a.common;
    let dtype = if a.dtype == "f32" { String::new() } else { format!(" --dtype {}", a.dtype) };
    let mut s = format!(
        "## generate{}: captioning vs transformers `generate`, {} (`cargo xtask bench generate{}{dtype}{}`)\n\n",
        cases::title_model(pcfg),
        report::today(),
        a.model.flag(),
        c.flags()
    );
    let model = match &a.model {
        ModelChoice::Generated(_) => {
            let mut m = format!(
                "the {} of `bench train{}` (random weights)",
                a.model.describe(),
                a.model.flag()
            );
            if !cases::title_model(pcfg).is_empty() {
                m += &format!(", {}", cases::text_model(pcfg));
            }
            m
        }
        ModelChoice::Dir(p) => p.display().to_string(),
    };
    s += &format!(
        "Model: {}, {}; prompts \"caption en\" / \"describe the image\" / \
         \"caption es\" (left-padded in a batch) with random images; {} new tokens, KV cache on both sides \
         (transformers' default `DynamicCache`). {rounds} round(s) per case alternating sides, 1 warm-up + {steps} \
         timed calls per process, medians (min-max); {threads} threads on both sides. Tokens/s counts generated \
         tokens over all rows for the whole call (vision tower, prefill, decoding); time to first token is a call \
         with one new token.\n\n{}{}\n\n",
        model,
        a.dtype,
        a.max_new_tokens,
        machine::describe(&c.device, versions),
        cases::reference_attention(rows.iter().flat_map(|r| &r.hf))
    );
    let mut met = 0;
    let mut out = Vec::new();
    for r in rows {
        let (rg, hg) = (summary(&r.rust, |x| &x.gen_s), summary(&r.hf, |x| &x.gen_s));
        let (rt, ht) = (summary(&r.rust, |x| &x.ttft_s), summary(&r.hf, |x| &x.ttft_s));
        let tok = r.tokens as f64;
        let speed = match (rg, hg) {
            (Some(a), Some(b)) => Some(b.median / a.median),
            _ => None,
        };
        met += usize::from(speed.is_some_and(|x| x >= SPEED_TARGET) && r.same_ids);
        let peak = |v: &[WorkerResult]| {
            Summary::of(&v.iter().map(WorkerResult::peak_memory).collect::<Vec<_>>())
                .map_or(0.0, |s| s.median)
        };
        out.push(vec![
            if r.case.beams == 1 { "greedy".into() } else { format!("beam {}", r.case.beams) },
            r.case.batch.to_string(),
            if r.same_ids { format!("yes ({} tokens)", r.tokens) } else { "NO".into() },
            rg.map_or("-".into(), |x| format!("{:.1}", tok / x.median)),
            hg.map_or("-".into(), |x| format!("{:.1}", tok / x.median)),
            speed.map_or("-".into(), |x| {
                format!("**{x:.2}x**{}", if x >= SPEED_TARGET { "" } else { " ✗" })
            }),
            rg.map_or("-".into(), |x| secs_range(&x)),
            hg.map_or("-".into(), |x| secs_range(&x)),
            rt.map_or("-".into(), |x| secs_range(&x)),
            ht.map_or("-".into(), |x| secs_range(&x)),
            format!("{} / {}", mib(peak(&r.rust)), mib(peak(&r.hf))),
        ]);
    }
    s += &report::table(
        &[
            "decoding",
            "batch",
            "identical ids",
            "tokens/s, ours",
            "tokens/s, transformers",
            "speed ratio",
            "call, ours",
            "call, ref",
            "first token, ours",
            "first token, ref",
            "peak memory ours / ref",
        ],
        &[false, true, false, true, true, true, true, true, true, true, true],
        &out,
    );
    s += &format!(
        "\nTarget on CPU: at least {SPEED_TARGET}x the reference's tokens per second, with identical ids: met in {met} \
         of {} cases.\n",
        rows.len()
    );
    for (k, rust, hf) in profiles {
        s += &format!(
            "\nWhere the time of one call goes, {} at batch {} (mean of the profiled calls of one process per side; \
             blocks end with the same hooks on both sides):\n\n",
            if k.beams == 1 { "greedy".to_string() } else { format!("beam {}", k.beams) },
            k.batch
        );
        s += &report::profile_table(
            rust.profile.as_deref().unwrap_or_default(),
            hf.profile.as_deref().unwrap_or_default(),
            "transformers",
        );
        if let Some(bw) = bandwidth {
            s += &bandwidth_note(pcfg, &a.dtype, bw, rows.iter().find(|r| r.case == *k), rust, hf);
        }
    }
    s
}

/// The memory-bandwidth bound of one profiled case: one read of the head's table per decoding step at the measured
/// bandwidth, against each side's output-head block, and what the call would take with our head at the bound.
fn bandwidth_note(
    pcfg: &paligemma::PaliGemmaConfig,
    dtype: &str,
    bw: f64,
    row: Option<&Row>,
    rust: &WorkerResult,
    hf: &WorkerResult,
) -> String {
    let block = |r: &WorkerResult, name: &str| {
        r.profile.iter().flatten().filter(|(k, _)| k == name).map(|(_, s)| *s).sum::<f64>()
    };
    let total = |r: &WorkerResult| r.profile.iter().flatten().map(|(_, s)| *s).sum::<f64>();
    // Decoding steps of the call: one head evaluation per generated position (the longest row; every row and beam
    // shares one product with the table per step).
    let reads = rust.ids.iter().map(Vec::len).max().unwrap_or(0) as f64;
    let bytes = head_bytes(pcfg, dtype);
    let bound = reads * bytes / bw;
    let (ours, theirs) = (block(rust, "output head"), block(hf, "output head"));
    if reads == 0.0 || ours <= 0.0 || theirs <= 0.0 {
        return String::new();
    }
    let mut s = format!(
        "\nMemory-bandwidth bound of the output head: {reads:.0} reads of the {} x {} {dtype} table ({:.0} MB) at \
         {:.1} GB/s (the best read of a table of that shape measured on this machine in this run, {} threads) = \
         {:.0} ms per call. Output head: ours {:.0} ms ({:.0}% of the bound's speed), transformers {:.0} ms ({:.0}%).",
        pcfg.text_config.vocab_size,
        pcfg.text_config.hidden_size,
        bytes / 1e6,
        bw / 1e9,
        tch::get_num_threads(),
        bound * 1e3,
        ours * 1e3,
        100.0 * bound / ours,
        theirs * 1e3,
        100.0 * bound / theirs,
    );
    if let Some(r) = row {
        if let (Some(a), Some(b)) = (summary(&r.rust, |x| &x.gen_s), summary(&r.hf, |x| &x.gen_s)) {
            // Our timed call with its head time (profile share) replaced by the bound: the most this dtype allows.
            let head_share = ours / total(rust).max(f64::MIN_POSITIVE);
            let best_call = a.median * (1.0 - head_share) + bound;
            s += &format!(
                " With our head at the bound and the rest unchanged, the call would take {:.0} ms: at most {:.2}x the \
                 reference's speed at this dtype.",
                best_call * 1e3,
                b.median / best_call
            );
        }
    }
    s.push('\n');
    s
}
