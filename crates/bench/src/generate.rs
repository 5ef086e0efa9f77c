//! `pgrs bench generate`: greedy and beam-3 captioning (32 new tokens, batch 1 and 8) against transformers'
//! `generate` on the same weights and prompts; the generated ids must be identical before speeds are compared.
//! Tokens per second = generated tokens (over all rows) / time of the whole `generate` call (vision tower, prefill and
//! decoding); time to first token = a `generate` call with one new token.
use super::cases::{self, GenerateCase};
use super::fma_probe;
use super::inputs;
use super::read_bound::{self, ReadSpeed};
use super::runner::Side;
use super::spec::{write_raw, Spec, Task, WorkerResult};
use super::stats::{mib, secs_range, Summary};
use super::{machine, report, Common, ModelChoice, Session};
use anyhow::Result;

/// Generation target on CPU: at least 1.5 times the reference's tokens per second.
pub const SPEED_TARGET: f64 = 1.5;

/// Decoding target on CPU: a cached decoding step at 70% or more of the machine's read bound.
pub const BOUND_TARGET: f64 = 0.7;

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
    /// Positions before the first new token (image tokens, prompt, left padding): the cache decoding starts from.
    prefix: usize,
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
    // On CPU only: a GPU's bound is its own memory's, which these probes do not read.
    let mut probed = (!c.device.starts_with("cuda")).then(Probed::default);
    if let Some(p) = &mut probed {
        p.probe(threads)?;
    }
    for (n, k) in list.iter().enumerate() {
        let file = inputs_dir.join(format!("generate-b{}.safetensors", k.batch));
        inputs::write_generate(&model, k.batch, 2000 + k.batch as i64, &file)?;
        let prefix = prefix_len(&file)?;
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
        let row = Row { case: k.clone(), rust, hf, same_ids, tokens, prefix };
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
        if let Some(p) = &mut probed {
            p.probe(threads)?;
        }
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
    let cases = rows
        .iter()
        .map(|r| serde_json::json!({"case": r.case.label(), "rust": r.rust, "hf": r.hf}));
    write_raw(&work, &format!("generate{}", a.model.file_tag()), cases.collect())?;
    let mut section = render(a, &pcfg, &rows, &profiles, &versions, threads, rounds, steps);
    if let Some(p) = &probed {
        section += &decode_table(&pcfg, &a.dtype, &rows, p, threads);
    }
    c.publish(&section)?;
    let strict = a.dtype == "f32";
    Ok(if !strict || rows.iter().all(|r| r.same_ids) { 0 } else { 2 })
}

fn row_speed(r: &Row) -> Option<f64> {
    let (ours, theirs) = (summary(&r.rust, |x| &x.gen_s)?, summary(&r.hf, |x| &x.gen_s)?);
    Some(theirs.median / ours.median)
}

/// What our workers' memory settings were (` Ours …`), as `paligemma::allocator` reported them.
fn allocator_note<'a>(results: impl IntoIterator<Item = &'a WorkerResult>) -> String {
    let results: Vec<&WorkerResult> = results.into_iter().collect();
    let any = |key: &str, value: &str| {
        results.iter().any(|r| r.versions.get(key).and_then(|v| v.as_str()) == Some(value))
    };
    let mut settings = vec![];
    if any("allocator", "Applied") {
        settings.push(format!(
            "glibc's allocator keeping blocks up to {} MiB in the heap and up to {} MiB of free heap",
            paligemma::allocator::MMAP_THRESHOLD >> 20,
            paligemma::allocator::TRIM_THRESHOLD >> 20
        ));
    }
    if any("huge_pages", "Enabled") {
        settings.push(format!(
            "libtorch's blocks of 2 MiB and more in transparent huge pages (`{}=1`)",
            paligemma::allocator::THP_ENV
        ));
    }
    if settings.is_empty() {
        return String::new();
    }
    format!(
        " Ours ran with the memory settings of `pgrs caption` (`paligemma::allocator`): {}; the reference with \
         glibc's and libtorch's defaults.",
        settings.join(", and ")
    )
}

#[allow(clippy::too_many_arguments)]
fn render(
    a: &Args,
    pcfg: &paligemma::PaliGemmaConfig,
    rows: &[Row],
    profiles: &[(GenerateCase, WorkerResult, WorkerResult)],
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
         with one new token.\n\n{}{}{}\n\n",
        model,
        a.dtype,
        a.max_new_tokens,
        machine::describe(&c.device, versions),
        cases::reference_attention(rows.iter().flat_map(|r| &r.hf)),
        allocator_note(rows.iter().flat_map(|r| &r.rust))
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
    }
    s
}

/// The input ids' width in a generate inputs file: every row is left-padded to it.
fn prefix_len(file: &std::path::Path) -> Result<usize> {
    let tensors = tch::Tensor::read_safetensors(file)?;
    let ids = tensors
        .iter()
        .find(|(k, _)| k == "input_ids")
        .ok_or_else(|| anyhow::anyhow!("{}: no `input_ids`", file.display()))?;
    Ok(*ids.1.size().last().unwrap_or(&0) as usize)
}

/// The machine's read speed and multiply-add rate, probed before the first case and after each: between the workers,
/// never beside one. Each case is held to the faster of the probes just before and just after its workers: the shared
/// machine's read speed swings (34 to 52 GB/s between runs an hour apart, 35 to 44 GB/s within one run), and a probe
/// from another moment of the run would measure those swings, not the case.
#[derive(Default)]
struct Probed {
    reads: Vec<ReadSpeed>,
    fmas: Vec<Option<f64>>,
}

impl Probed {
    fn probe(&mut self, threads: usize) -> Result<()> {
        self.reads.push(read_bound::measure(threads)?);
        self.fmas.push(fma_probe::measure(threads)?);
        Ok(())
    }

    /// The read speed (bytes/s, the faster probe) and multiply-add rate the `case`-th case is held to: the faster of
    /// the probes before and after it.
    fn around(&self, case: usize) -> (f64, Option<f64>) {
        let near = case.min(self.reads.len().saturating_sub(1))..(case + 2).min(self.reads.len());
        let read = self.reads[near.clone()].iter().map(ReadSpeed::best).fold(0.0, f64::max);
        (read, self.fmas[near].iter().flatten().copied().reduce(f64::max))
    }
}

/// The smallest and largest value, `None` for none.
fn span(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| Some(acc.map_or((v, v), |(a, b): (f64, f64)| (a.min(v), b.max(v)))))
}

/// Each side's cached decoding step against the read bound: `(call - first-token call) / (new tokens - 1)`, the
/// same derivation on both sides, next to what one step has to read (`read_bound::decode_step_bytes`).
fn decode_table(
    pcfg: &paligemma::PaliGemmaConfig,
    dtype: &str,
    rows: &[Row],
    probed: &Probed,
    threads: usize,
) -> String {
    let elem = if dtype == "f32" { 4.0 } else { 2.0 };
    let ms = |x: f64| format!("{:.2} ms", x * 1e3);
    let mut met = 0;
    let mut out = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let (speed, fma_rate) = probed.around(i);
        let n = r.rust.first().map_or(0, |w| w.ids.iter().map(Vec::len).max().unwrap_or(0));
        let lanes = r.case.batch * r.case.beams;
        let bytes = read_bound::decode_step_bytes(pcfg, elem, lanes, r.prefix, n);
        let read = bytes.total() / speed;
        let compute = fma_rate.map_or(0.0, |f| bytes.fmas / f);
        let bound = read.max(compute);
        let step = |v: &[WorkerResult]| {
            let (call, first) = (summary(v, |x| &x.gen_s)?, summary(v, |x| &x.ttft_s)?);
            (n > 1).then(|| (call.median - first.median) / (n - 1) as f64)
        };
        let cell = |t: Option<f64>| {
            t.map_or("-".into(), |t| {
                let share = bound / t;
                let mark = if share >= BOUND_TARGET { "" } else { " ✗" };
                format!("{} (**{:.0}%**{mark})", ms(t), 100.0 * share)
            })
        };
        let (ours, theirs) = (step(&r.rust), step(&r.hf));
        met += usize::from(ours.is_some_and(|t| bound / t >= BOUND_TARGET));
        out.push(vec![
            if r.case.beams == 1 { "greedy".into() } else { format!("beam {}", r.case.beams) },
            r.case.batch.to_string(),
            lanes.to_string(),
            format!("{:.1} MB + {:.1} MB", bytes.weights / 1e6, bytes.kv / 1e6),
            format!("{:.2} G", bytes.fmas / 1e9),
            format!("{:.1} GB/s", speed / 1e9),
            format!("{} ({})", ms(bound), if compute > read { "multiply-adds" } else { "read" }),
            cell(ours),
            cell(theirs),
        ]);
    }
    let range = |span: Option<(f64, f64)>, unit: &str| {
        span.map_or("-".into(), |(a, b)| format!("{:.1}-{:.1} {unit}", a / 1e9, b / 1e9))
    };
    let reads = range(span(probed.reads.iter().map(ReadSpeed::best)), "GB/s");
    let fmas = range(span(probed.fmas.iter().flatten().copied()), "G/s");
    let mut s = format!(
        "\nThe physical bound of a cached decoding step, measured on this machine in this run with {threads} threads, \
         {} times: before the first case and after each, between the workers (each probe the median of 15 calls). \
         Read speed: the faster of a sum over a 256 MB f32 tensor through libtorch and a Rust loop over 256 MB \
         in huge pages on the widest vectors, prefetching ahead as the kernel does ({reads} over the run); \
         multiply-add rate: 12 independent f32 fused multiply-adds per thread on the widest vectors ({fmas}). \
         Each case is held to the faster probes of those just before and just after its workers. A step reads every \
         weight of the language model once (the tied embedding once, as the output head) and the KV cache it attends over (a sliding-window \
         layer only its window), and does one multiply-add per weight and row (plus attention's): it takes at least \
         the longer of bytes / read speed and multiply-adds / multiply-add rate. A side's step time is (call - \
         first-token call) / (new tokens - 1); in brackets the share of the bound it reaches.\n\n",
        probed.reads.len(),
    );
    s += &report::table(
        &[
            "decoding",
            "batch",
            "rows",
            "read per step (weights + KV)",
            "multiply-adds per step",
            "read speed around the case",
            "bound per step",
            "step, ours",
            "step, transformers",
        ],
        &[false, true, true, true, true, true, true, true, true],
        &out,
    );
    s += &format!(
        "\nTarget on CPU: a decoding step at {:.0}% or more of the bound (issue 14 names the read bound; where the \
         multiply-adds take longer, that is the bound): met in {met} of {} cases.\n",
        100.0 * BOUND_TARGET,
        rows.len()
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_case_is_held_to_the_faster_probe_beside_it() {
        let speed = |gb: f64| ReadSpeed { torch: gb * 1e9, rust: (gb - 1.0) * 1e9 };
        let probed = Probed {
            reads: vec![speed(10.0), speed(30.0), speed(20.0), speed(25.0)],
            fmas: vec![Some(100.0), None, Some(300.0), Some(200.0)],
        };
        assert_eq!(probed.around(0), (30e9, Some(100.0)));
        assert_eq!(probed.around(1), (30e9, Some(300.0)));
        assert_eq!(probed.around(2), (25e9, Some(300.0)));
        // Past the last probe (never the case: one probe follows each case), the last one.
        assert_eq!(probed.around(7), (25e9, Some(200.0)));
        assert_eq!(span(probed.reads.iter().map(ReadSpeed::best)), Some((10e9, 30e9)));
        assert_eq!(span(probed.fmas.iter().flatten().copied()), Some((100.0, 300.0)));
        assert_eq!(span(std::iter::empty()), None);
    }
}
