//! `pgrs bench generate`: greedy and beam-3 captioning (32 new tokens, batch 1 and 8) against transformers'
//! `generate` on the same weights and prompts; the generated ids must be identical before speeds are compared.
//! Tokens per second = generated tokens (over all rows) / time of the whole `generate` call (vision tower, prefill and
//! decoding); time to first token = a `generate` call with one new token.
use super::cases::{self, GenerateCase};
use super::inputs;
use super::read_bound;
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
    let cpu = !c.device.starts_with("cuda");
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
            probe: cpu,
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
    }
    // Where the speed target is missed (or when asked), where the time goes: one more process per side, timed
    // calls first, then profiled ones (`paligemma::generate_profiled` / forward hooks on the same blocks).
    let mut profiles = Vec::new();
    for (row, spec) in rows.iter().zip(&specs) {
        let missed = row_speed(row).is_none_or(|x| x < SPEED_TARGET);
        if missed || c.profile {
            let spec = Spec { profile: true, warmup: 1, steps: 1, probe: false, ..spec.clone() };
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
    if cpu {
        section += &decode_table(&pcfg, &a.dtype, &rows, threads);
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

/// The machine's read speed (bytes/s) and multiply-add rate a case is held to: the medians of the probes our workers
/// took right before their timed calls (`Spec::probe`), as the step times are medians of those calls; `None` where
/// no worker probed.
fn probed(workers: &[WorkerResult]) -> (Option<f64>, Option<f64>) {
    let median = |f: fn(&WorkerResult) -> &Vec<f64>| {
        Summary::of(&workers.iter().flat_map(|w| f(w).iter().copied()).collect::<Vec<_>>())
            .map(|s| s.median)
    };
    (median(|w| &w.read_bps), median(|w| &w.fma_rate))
}

/// The smallest and largest value, `None` for none.
fn span(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| Some(acc.map_or((v, v), |(a, b): (f64, f64)| (a.min(v), b.max(v)))))
}

/// Each side's cached decoding step against the read bound: `(call - first-token call) / (new tokens - 1)`, the
/// same derivation on both sides, next to what one step has to read (`read_bound::decode_step_bytes`) and the
/// machine's speeds probed between our timed calls ([`probed`]).
fn decode_table(
    pcfg: &paligemma::PaliGemmaConfig,
    dtype: &str,
    rows: &[Row],
    threads: usize,
) -> String {
    let elem = if dtype == "f32" { 4.0 } else { 2.0 };
    let ms = |x: f64| format!("{:.2} ms", x * 1e3);
    let gbs = |x: f64| format!("{:.1}", x / 1e9);
    let mut met = 0;
    let mut out = Vec::new();
    for r in rows {
        let (speed, fma_rate) = probed(&r.rust);
        let n = r.rust.first().map_or(0, |w| w.ids.iter().map(Vec::len).max().unwrap_or(0));
        let lanes = r.case.batch * r.case.beams;
        let bytes = read_bound::decode_step_bytes(pcfg, elem, lanes, r.prefix, n);
        let read = speed.map(|v| bytes.total() / v);
        let compute = fma_rate.map_or(0.0, |f| bytes.fmas / f);
        let bound = read.map(|read| read.max(compute));
        let step = |v: &[WorkerResult]| {
            let (call, first) = (summary(v, |x| &x.gen_s)?, summary(v, |x| &x.ttft_s)?);
            (n > 1).then(|| (call.median - first.median) / (n - 1) as f64)
        };
        let share = |t: Option<f64>| Some(bound? / t?);
        let cell = |t: Option<f64>| match (t, share(t)) {
            (Some(t), Some(x)) => {
                let mark = if x >= BOUND_TARGET { "" } else { " ✗" };
                format!("{} (**{:.0}%**{mark})", ms(t), 100.0 * x)
            }
            (Some(t), None) => ms(t),
            _ => "-".into(),
        };
        let (ours, theirs) = (step(&r.rust), step(&r.hf));
        met += usize::from(share(ours).is_some_and(|x| x >= BOUND_TARGET));
        let reads = span(r.rust.iter().flat_map(|w| w.read_bps.iter().copied()));
        out.push(vec![
            if r.case.beams == 1 { "greedy".into() } else { format!("beam {}", r.case.beams) },
            r.case.batch.to_string(),
            lanes.to_string(),
            format!("{:.1} MB + {:.1} MB", bytes.weights / 1e6, bytes.kv / 1e6),
            format!("{:.2} G", bytes.fmas / 1e9),
            match (speed, reads) {
                (Some(v), Some((a, b))) => format!("{} GB/s ({}-{})", gbs(v), gbs(a), gbs(b)),
                _ => "-".into(),
            },
            match (bound, read) {
                (Some(b), Some(read)) => {
                    format!("{} ({})", ms(b), if compute > read { "multiply-adds" } else { "read" })
                }
                _ => "-".into(),
            },
            cell(ours),
            cell(theirs),
        ]);
    }
    let all = |f: fn(&WorkerResult) -> &Vec<f64>| {
        span(rows.iter().flat_map(|r| &r.rust).flat_map(|w| f(w).iter().copied()))
    };
    let range = |span: Option<(f64, f64)>, unit: &str| {
        span.map_or("-".into(), |(a, b)| format!("{}-{} {unit}", gbs(a), gbs(b)))
    };
    let reads = range(all(|w| &w.read_bps), "GB/s");
    let fmas = range(all(|w| &w.fma_rate), "G/s");
    let probes = rows.iter().flat_map(|r| &r.rust).map(|w| w.read_bps.len()).sum::<usize>();
    let mut s = format!(
        "\nThe physical bound of a cached decoding step, measured on this machine in this run with {threads} threads, \
         {probes} times: in our worker processes, right before each timed call, alone (each probe the median of 15 \
         calls; the machine's read speed swings by up to 2x within minutes, so the bound is taken at the moments the \
         steps run). Read speed: the faster of a sum over a 256 MB f32 tensor through libtorch and a Rust loop over \
         256 MB in huge pages on the widest vectors, prefetching ahead as the kernel does ({reads} over the run); \
         multiply-add rate: 12 independent f32 fused multiply-adds per thread on the widest vectors ({fmas}). Each \
         case is held to the medians of its probes, as its step times are medians of the calls they preceded. A step \
         reads every weight of the language model once (the tied embedding once, as the output head) and the KV \
         cache it attends over (a sliding-window layer only its window), and does one multiply-add per weight and \
         row (plus attention's): it takes at least the longer of bytes / read speed and multiply-adds / multiply-add \
         rate. A side's step time is (call - first-token call) / (new tokens - 1); in brackets the share of the bound \
         it reaches.\n\n",
    );
    s += &report::table(
        &[
            "decoding",
            "batch",
            "rows",
            "read per step (weights + KV)",
            "multiply-adds per step",
            "read speed before the calls, median (min-max)",
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
    fn each_case_is_held_to_the_medians_of_its_probes() {
        let worker = |reads: &[f64], fmas: &[f64]| WorkerResult {
            read_bps: reads.to_vec(),
            fma_rate: fmas.to_vec(),
            ..Default::default()
        };
        // Two processes of a case: the medians run over all their probes.
        let case = [worker(&[10e9, 40e9], &[100.0]), worker(&[30e9, 20e9, 50e9], &[300.0, 200.0])];
        assert_eq!(probed(&case), (Some(30e9), Some(200.0)));
        // A worker that could not probe (CUDA, or no peak reset) leaves the bound unknown.
        assert_eq!(probed(&[worker(&[], &[])]), (None, None));
        assert_eq!(probed(&[worker(&[25e9], &[])]), (Some(25e9), None));
        assert_eq!(span([10.0, 30.0, 20.0].into_iter()), Some((10.0, 30.0)));
        assert_eq!(span(std::iter::empty()), None);
    }
}
