//! The Rust side of one case (`pgrs bench worker --spec s.json --out r.json`), in its own process so that its peak
//! RSS is its own. Training goes through exactly what `pgrs train` uses: `trainer::strategy::build` (trainable mask,
//! f32 masters, adapters, soft prompt), `trainer::step::forward_backward` (plain or checkpointed) and
//! `trainer::optim::Optimizer` (AdamW); generation through `paligemma::generate` with its KV cache.
use super::spec::{read_json, write_json, Spec, Task, WorkerResult};
use super::{fma_probe, gpu_memory, inputs, profile, read_bound, rss};
use anyhow::{bail, Context, Result};
use paligemma::{Batch, GenerationConfig, LoadOptions, LossReduction};
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Tensor};
use trainer::config::{OptimConfig, OptimizerKind};
use trainer::optim::Optimizer;
use trainer::step::{forward_backward, StepOptions};
use trainer::ExperimentConfig;

pub fn run(spec_path: &Path, out: &Path) -> Result<i32> {
    let rss_start = rss::current();
    let spec: Spec = read_json(spec_path)?;
    tch::set_num_threads(spec.threads as i32);
    tch::set_num_interop_threads(1);
    let device =
        <trainer::device::DeviceSpec as trainer::setting::Setting>::parse_setting(&spec.device)
            .map_err(|e| anyhow::anyhow!("device {e}"))?
            .resolve()?;
    // As `pgrs caption` and `pgrs eval` run, and before libtorch's first allocation, where it reads the huge-page
    // setting.
    let memory = matches!(spec.task, Task::Generate).then(paligemma::allocator::for_captioning);
    // Touch libtorch once so the baseline includes the runtime, as the Python side's includes `import torch`.
    let _ = Tensor::zeros([1], (Kind::Float, device));
    let mut result = WorkerResult {
        side: "rust".into(),
        threads: i64::from(tch::get_num_threads()),
        versions: serde_json::json!({"pgrs": env!("CARGO_PKG_VERSION")}),
        rss_start,
        rss_baseline: rss::current(),
        ..Default::default()
    };
    if let Some(m) = memory {
        result.versions["allocator"] = format!("{:?}", m.allocator).into();
        result.versions["huge_pages"] = format!("{:?}", m.huge_pages).into();
    }
    match spec.task {
        Task::Train => train(&spec, device, &mut result)?,
        Task::Generate => generate(&spec, device, &mut result)?,
    }
    result.peak_rss_total = result.peak_rss_total.max(rss::peak());
    // `generate` may have restarted the peak (after each probe) and kept the peaks before.
    result.peak_rss = result.peak_rss.max(rss::peak());
    write_json(out, &result)?;
    Ok(0)
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// The experiment config that `pgrs train` would read for this case.
fn experiment(spec: &Spec) -> Result<ExperimentConfig> {
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    let mut t = format!("name = \"bench\"\nstrategy = \"{}\"\nseed = 0\n[model]\n", spec.strategy);
    if spec.strategy == "custom" {
        t += "source = \"custom\"\n";
    } else {
        t += &format!("path = {}\n", q(&spec.model_dir));
    }
    t += &format!(
        "dtype = \"{}\"\ndevice = \"{}\"\ngradient_checkpointing = {}\n",
        spec.dtype, spec.device, spec.checkpointing
    );
    if spec.strategy == "custom" {
        let (Some(s), Some(g)) = (&spec.siglip_dir, &spec.gemma_dir) else {
            bail!("strategy custom needs siglip_dir and gemma_dir");
        };
        t += &format!("[model.custom]\nsiglip = {}\ngemma = {}\nprojector = \"mlp\"\n", q(s), q(g));
    }
    t += "[data]\npath = \"unused\"\n[train]\n";
    t += &match spec.strategy.as_str() {
        "lora" | "custom" => {
            format!("[lora]\nr = {}\nalpha = {}\ndropout = 0.0\n", spec.lora_r, spec.lora_alpha)
        }
        "hard_prompt" => "preset = \"attention\"\n".to_string(),
        "soft_prompt" => format!(
            "[soft_prompt]\nlength = {}\nplacement = \"after_image\"\ninit = {{ type = \"zeros\" }}\n",
            spec.soft_len
        ),
        other => {
            bail!("unknown strategy `{other}`: expected lora, hard_prompt, soft_prompt or custom")
        }
    };
    Ok(ExperimentConfig::from_toml(&t, &[])?)
}

fn train(spec: &Spec, device: Device, result: &mut WorkerResult) -> Result<()> {
    let t0 = Instant::now();
    let cfg = experiment(spec)?;
    let work = std::env::temp_dir().join(format!("pgrs-bench-worker-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let built = trainer::strategy::build(&cfg, &[], &work)?;
    let _ = std::fs::remove_dir_all(&work);
    if let Some(init) = &spec.init {
        load_init(&built.adapter_vs, init)?;
    }
    let data: HashMap<String, Tensor> = Tensor::read_safetensors(&spec.inputs)
        .with_context(|| format!("reading {}", spec.inputs.display()))?
        .into_iter()
        .collect();
    let get = |k: &str| {
        data.get(k)
            .map(|t| t.to_device(device))
            .with_context(|| format!("{}: no `{k}` tensor", spec.inputs.display()))
    };
    let batch =
        Batch { ids: get("input_ids")?, segments: get("segments")?, labels: get("labels")? };
    let pixels = get("pixel_values")?;
    let soft = built.soft.as_ref().map(|s| s.vectors.shallow_clone());
    let trainables = &built.trainables;
    result.trainable_params = trainables.iter().map(|(_, t)| t.numel() as i64).sum();
    result.seq_len = Some(batch.ids.size()[1]);
    let ocfg = OptimConfig {
        name: OptimizerKind::Adamw,
        lr: spec.lr,
        weight_decay: 0.0,
        ..Default::default()
    };
    let mut optimizer = Optimizer::new(
        &ocfg,
        trainables.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect(),
    );
    let opts = StepOptions {
        checkpointing: spec.checkpointing,
        vision_trainable: built.vision_trainable,
        reduction: LossReduction::TokenMean,
        loss_scale: 1.0,
        seed: 0,
    };
    if spec.plan {
        let plan = profile::plan_for(&built, &batch, spec);
        result.plan_bytes = Some(plan.total());
        result.plan_table = Some(plan.table());
    }
    result.load_s = t0.elapsed().as_secs_f64();
    result.rss_loaded = rss::current();
    result.peak_rss_total = rss::peak();
    result.peak_reset = rss::reset_peak();
    let sampler = device.is_cuda().then(gpu_memory::Sampler::start);

    let mut blocks: Vec<(String, f64)> = Vec::new();
    for i in 0..spec.warmup + spec.steps {
        sync(device);
        let t = Instant::now();
        let loss = if spec.profile && !spec.checkpointing {
            profile::profiled_step(
                &built.model,
                &batch,
                &pixels,
                soft.as_ref(),
                &opts,
                &mut |name, s| {
                    if i >= spec.warmup {
                        add(&mut blocks, name, s)
                    }
                },
            )?
        } else {
            forward_backward(&built.model, &batch, &pixels, soft.as_ref(), &opts)?.0
        };
        sync(device);
        let before_opt = t.elapsed().as_secs_f64();
        if let Some(max) = spec.max_grad_norm {
            clip(trainables, max);
        }
        optimizer.step(spec.lr);
        optimizer.zero_grad();
        sync(device);
        let dt = t.elapsed().as_secs_f64();
        if spec.profile && !spec.checkpointing && i >= spec.warmup {
            add(&mut blocks, "optimizer", dt - before_opt);
        }
        result.losses.push(loss);
        if i >= spec.warmup {
            result.step_s.push(dt);
        }
    }
    result.peak_device_bytes = sampler.and_then(gpu_memory::Sampler::finish);
    if spec.profile && !spec.checkpointing {
        let n = spec.steps.max(1) as f64;
        result.profile = Some(blocks.into_iter().map(|(k, v)| (k, v / n)).collect());
    }
    Ok(())
}

fn add(blocks: &mut Vec<(String, f64)>, name: &str, s: f64) {
    match blocks.iter_mut().find(|(k, _)| k == name) {
        Some((_, v)) => *v += s,
        None => blocks.push((name.to_string(), s)),
    }
}

/// The machine's read speed (bytes/s, the faster of `read_bound`'s probes) and multiply-add rate, right before a
/// timed call: the moments the calls run are the moments their bound is taken (the shared machine's read speed swings
/// by 2x within minutes, so probes taken between workers measured other moments). The probes run alone, between the
/// calls, and their 512 MB are freed before the call; the pause lets libtorch's OpenMP workers and the probe's threads
/// stop spinning on the cores the call needs.
fn probe_bound(threads: usize) -> Result<(f64, Option<f64>)> {
    let read = read_bound::measure(threads)?.best();
    let fma = fma_probe::measure(threads)?;
    std::thread::sleep(std::time::Duration::from_millis(200));
    Ok((read, fma))
}

/// Copies the shared initial trainables into the adapter store; every adapter variable must be covered.
fn load_init(vs: &tch::nn::VarStore, path: &Path) -> Result<()> {
    let init: HashMap<String, Tensor> = Tensor::read_safetensors(path)
        .with_context(|| format!("reading {}", path.display()))?
        .into_iter()
        .collect();
    let vars = vs.variables();
    for (name, var) in &vars {
        let src = init
            .get(name)
            .with_context(|| format!("{}: no initial value for `{name}`", path.display()))?;
        if src.size() != var.size() {
            bail!(
                "{}: `{name}` has shape {:?}, expected {:?}",
                path.display(),
                src.size(),
                var.size()
            );
        }
        tch::no_grad(|| var.shallow_clone().copy_(src));
    }
    if init.len() != vars.len() {
        bail!("{}: {} tensors for {} adapter variables", path.display(), init.len(), vars.len());
    }
    Ok(())
}

/// Global gradient-norm clipping, as `torch.nn.utils.clip_grad_norm_` (and the trainer) do.
fn clip(trainables: &[(String, Tensor)], max_norm: f64) {
    tch::no_grad(|| {
        let grads: Vec<Tensor> =
            trainables.iter().map(|(_, t)| t.grad()).filter(Tensor::defined).collect();
        if grads.is_empty() {
            return;
        }
        let sq: Vec<Tensor> = grads
            .iter()
            .map(|g| g.to_kind(Kind::Float).pow_tensor_scalar(2).sum(Kind::Float))
            .collect();
        let norm = f64::try_from(Tensor::stack(&sq, 0).sum(Kind::Float).sqrt()).unwrap_or(0.0);
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            for mut g in grads {
                let _ = g.g_mul_scalar_(coef);
            }
        }
    });
}

fn generate(spec: &Spec, device: Device, result: &mut WorkerResult) -> Result<()> {
    let t0 = Instant::now();
    let dtype = weights::DType::parse(&spec.dtype)?;
    let loaded = paligemma::load(&spec.model_dir, LoadOptions { dtype: Some(dtype), device })?;
    let data: HashMap<String, Tensor> = Tensor::read_safetensors(&spec.inputs)
        .with_context(|| format!("reading {}", spec.inputs.display()))?
        .into_iter()
        .collect();
    let get = |k: &str| {
        data.get(k).with_context(|| format!("{}: no `{k}` tensor", spec.inputs.display()))
    };
    let prompts = inputs::prompts_from(get("input_ids")?, get("segments")?)?;
    let pixels = get("pixel_values")?.to_device(device);
    result.load_s = t0.elapsed().as_secs_f64();
    result.rss_loaded = rss::current();
    result.peak_rss_total = rss::peak();
    result.peak_reset = rss::reset_peak();
    let sampler = device.is_cuda().then(gpu_memory::Sampler::start);
    let cfg = GenerationConfig {
        max_new_tokens: spec.max_new_tokens,
        num_beams: spec.num_beams,
        use_cache: true,
        length_penalty: 1.0,
    };
    let first = GenerationConfig { max_new_tokens: 1, ..cfg.clone() };
    // Only where the probes' memory can be taken back out of the peak this worker reports.
    let probe = spec.probe && !device.is_cuda() && result.peak_reset;
    for i in 0..spec.warmup + spec.steps {
        if probe && i >= spec.warmup {
            result.peak_rss = result.peak_rss.max(rss::peak());
            let (read, fma) = probe_bound(spec.threads)?;
            result.read_bps.push(read);
            result.fma_rate.extend(fma);
            rss::reset_peak();
        }
        sync(device);
        let t = Instant::now();
        let ids = paligemma::generate(&loaded.model, &prompts, &pixels, None, &cfg);
        sync(device);
        let t1 = t.elapsed().as_secs_f64();
        let _ = paligemma::generate(&loaded.model, &prompts, &pixels, None, &first);
        sync(device);
        let t2 = t.elapsed().as_secs_f64();
        if result.ids.is_empty() {
            result.ids = ids;
        }
        if i >= spec.warmup {
            result.gen_s.push(t1);
            result.ttft_s.push(t2 - t1);
        }
    }
    result.peak_device_bytes = sampler.and_then(gpu_memory::Sampler::finish);
    if spec.profile {
        // After the timed calls, so the profile's synchronizations never touch the timings above.
        let mut acc: Vec<(String, f64)> = Vec::new();
        for _ in 0..spec.steps.max(1) {
            let (_, blocks) =
                paligemma::generate_profiled(&loaded.model, &prompts, &pixels, None, &cfg);
            for (name, s) in blocks {
                match acc.iter_mut().find(|(n, _)| n == name) {
                    Some((_, t)) => *t += s,
                    None => acc.push((name.to_string(), s)),
                }
            }
        }
        let n = spec.steps.max(1) as f64;
        result.profile = Some(acc.into_iter().map(|(k, v)| (k, v / n)).collect());
    }
    Ok(())
}
