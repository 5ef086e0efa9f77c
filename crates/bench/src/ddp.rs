//! `pgrs bench ddp`: data-parallel training on CPU (Gloo over loopback), against one process on the same cores.
//!
//! - Step time: the same experiment trained for `--steps` steps as one `pgrs train` process with all `--threads`
//!   threads and global batch 2B, and as two ranks (`pgrs train` under torchrun's variables, as
//!   `crates/cli/tests/distributed.rs` starts them) with half the threads and batch B each: the same global batch,
//!   so the same gradients (the first step's losses are compared). Step times are the differences of consecutive
//!   `time_s` in rank 0's metrics.jsonl (`train.log_every = 1`), the first [`WARMUP_STEPS`] left out. Two cases:
//!   LoRA r8 on the mid-size PaliGemma of `scripts/bench/make_model.py` (kilobytes of gradients) and a full
//!   fine-tune (`train.preset = "all"`) of a from-scratch model with tens of MB of gradients, both on a synthetic
//!   dataset written once (`rsicd_data::synth`).
//! - All-reduce: two ranks (this binary as `pgrs bench allreduce-worker`) time
//!   `ProcessGroup::all_reduce_sum_bucketed` with the trainer's buckets (`trainer::parallel::BUCKET_BYTES`) on f32
//!   tensors of each case's gradient sizes and on single tensors of `--sizes-mib`; the reference is PyTorch's own
//!   `torch.distributed.all_reduce` on gloo with the same buckets, in two Python processes
//!   (`scripts/bench/allreduce.py`). Both sides' sums are checked before any time is reported. The copy bandwidth
//!   of one large tensor copy, measured here, is the bound the loopback copies work against.
//!
//! The shared options mean here: `--threads` the cores of the one process (each rank gets half), `--steps` the
//! training steps of each run (default 12, 6 with `--quick`; the first [`WARMUP_STEPS`] untimed), `--rounds` the runs
//! of each layout and side (alternating which goes first), `--only`/`--skip` the parts `lora`, `full` and `sweep`.
//!
//! CPU only: two ranks on CUDA need a GPU each and NCCL, which this benchmark does not cover.
use super::spec::{read_json, write_json, write_raw};
use super::stats::{secs_range, Summary};
use super::{machine, report, Common, ModelChoice};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

/// Ranks of the data-parallel side.
const RANKS: usize = 2;
/// Training steps left out of the step times (the first has no predecessor in the log anyway).
pub const WARMUP_STEPS: usize = 2;
/// Untimed all-reduce repetitions before the timed ones (Gloo connects lazily).
const REDUCE_WARMUP: usize = 2;
/// Longest a group of processes may run before it is stopped and the benchmark fails.
const RUN_LIMIT: Duration = Duration::from_secs(900);
/// Largest relative difference of the first losses of the two layouts (the sums run in another order).
const LOSS_REL_TOL: f64 = 1e-5;
/// Synthetic images written once for the training runs (80 % of them train).
const SYNTH_IMAGES: usize = 120;
const SYNTH_SIZE: u32 = 64;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Batch per rank: one process trains twice this, each of the two ranks this (the same global batch).
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Sizes (MiB of f32, one tensor each) of the all-reduce sweep.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    pub sizes_mib: Vec<usize>,
    /// Timed all-reduce repetitions per tensor set of 8 MiB or more (after 2 untimed ones; ten times as many for
    /// smaller sets, at most 100); default 10, 5 with --quick.
    #[arg(long)]
    pub reps: Option<usize>,
}

impl Args {
    fn reps(&self) -> usize {
        self.reps.unwrap_or(if self.common.quick { 5 } else { 10 })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Lora,
    Full,
}

impl Case {
    const ALL: [Case; 2] = [Case::Lora, Case::Full];

    fn label(self) -> &'static str {
        match self {
            Case::Lora => "lora",
            Case::Full => "full",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Case::Lora => "LoRA r8 q/k/v/o, mid-size PaliGemma",
            Case::Full => "full fine-tune, from-scratch model",
        }
    }
}

/// The from-scratch model of the full fine-tune: SigLIP 256x4 over 64 image tokens, Gemma 512x3 (8 heads of 64, 1 KV
/// head, MLP 2048), a word-level vocabulary from the captions; about 15 M parameters (58 MB of f32 gradients), all
/// trained.
const SCRATCH: &str = "image_size = 64\npatch_size = 8\nvision_hidden = 256\nvision_layers = 4\nvision_heads = 4\n\
                       vision_mlp = 1024\ntext_hidden = 512\ntext_layers = 3\nheads = 8\nkv_heads = 1\n\
                       head_dim = 64\ntext_mlp = 2048\ninit_std = 0.02\n";

/// The experiment file of one case: `steps` steps of `batch` per process, every step logged, no evaluation but a
/// minimal final one, one checkpoint at the end (its trainables give the gradient sizes).
fn experiment(case: Case, model: &Path, data: &Path, batch: usize, steps: usize) -> String {
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    let mut t = format!("name = \"ddp-{}\"\nseed = 0\n", case.label());
    match case {
        Case::Lora => {
            t += &format!(
                "strategy = \"lora\"\n[model]\npath = {}\ndtype = \"f32\"\ndevice = \"cpu\"\n\
                 [lora]\nr = 8\nalpha = 16.0\ndropout = 0.0\n",
                q(model)
            );
        }
        Case::Full => {
            t += "strategy = \"hard_prompt\"\n[model]\nsource = \"scratch\"\ndtype = \"f32\"\ndevice = \"cpu\"\n";
            t += &format!("[model.scratch]\n{SCRATCH}");
        }
    }
    t += &format!("[data]\npath = {}\n[train]\n", q(data));
    if case == Case::Full {
        t += "preset = \"all\"\n";
    }
    t += &format!(
        "steps = {steps}\nbatch_size = {batch}\nlog_every = 1\neval_every = 0\ncheckpoint_every = {steps}\n\
         keep_checkpoints = 1\n[optim]\nname = \"adamw\"\nlr = 1e-4\n\
         [eval]\nbefore = false\nmax_new_tokens = 2\nbatch_size = 1\nval_subset = 1\ntest_subset = 1\n\
         meteor = \"skip\"\n"
    );
    t
}

/// One way of running the training: `processes` processes of `threads` threads, `batch` per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
struct Layout {
    processes: usize,
    threads: usize,
    batch: usize,
}

impl Layout {
    fn label(&self) -> String {
        format!("{}x{}t-b{}", self.processes, self.threads, self.batch)
    }
}

/// Seconds of each step after the first `warmup`: the differences of consecutive `time_s` (a step logged right
/// after its predecessor; step 1 has none, so it is always out).
pub fn step_seconds(train: &[::report::metrics_log::TrainRecord], warmup: usize) -> Vec<f64> {
    train
        .windows(2)
        .filter(|w| w[1].step == w[0].step + 1 && w[1].step as usize > warmup)
        .filter_map(|w| Some(w[1].time_s? - w[0].time_s?))
        .collect()
}

/// Bus bandwidth of an all-reduce of `bytes` in `secs` over `world` ranks, in GB/s (NCCL-tests' convention: a ring
/// all-reduce sends and receives `2 (n - 1) / n` times the buffer per rank, which is the buffer itself for 2 ranks).
pub fn bus_gbps(bytes: f64, secs: f64, world: usize) -> f64 {
    let n = world as f64;
    bytes * 2.0 * (n - 1.0) / n / secs / 1e9
}

/// Bytes of memory traffic per rank, in units of the buffer, of a 2-rank ring all-reduce over loopback TCP: the
/// buffer sent and received once (half in the reduce-scatter, half in the all-gather), each byte copied twice by the
/// kernel (read and write into the socket buffer, read and write out of it: 4 x 1), and the reduce-scatter's half
/// summed (two reads and a write of n/2: 1.5).
pub const LOOPBACK_TRAFFIC: f64 = 5.5;

/// The most bus bandwidth (GB/s) two ranks' loopback all-reduce can reach on a machine whose tensor copy moves
/// `copy_gbps` (bytes copied per second, i.e. twice that in memory traffic): both ranks' traffic, 2 x
/// [`LOOPBACK_TRAFFIC`] per byte, shares the memory that a copy uses at 2 per byte.
pub fn loopback_bound_gbps(copy_gbps: f64) -> f64 {
    copy_gbps / LOOPBACK_TRAFFIC
}

/// `1 thread`, `2 threads`.
fn n_threads(n: usize) -> String {
    format!("{n} thread{}", if n == 1 { "" } else { "s" })
}

/// How many collectives `all_reduce_sum_bucketed` makes of f32 tensors of these sizes: consecutive tensors packed
/// into buckets of at most `bucket_bytes`, a larger tensor alone (as `distributed`'s bucketing does for one dtype).
pub fn bucket_count(numels: &[i64], bucket_bytes: usize) -> usize {
    let (mut count, mut bytes) = (0, 0);
    for &n in numels {
        let size = n as usize * 4;
        if count > 0 && bytes + size <= bucket_bytes {
            bytes += size;
        } else {
            count += 1;
            bytes = size;
        }
    }
    count
}

/// What the all-reduce workers of both sides read (`scripts/bench/allreduce.py` too: field names are its contract).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReduceSpec {
    pub threads: usize,
    pub warmup: usize,
    pub bucket_bytes: usize,
    pub cases: Vec<ReduceCase>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReduceCase {
    pub label: String,
    /// f32 tensors, each starting at 1.0.
    pub numels: Vec<i64>,
    /// Timed repetitions.
    pub reps: usize,
}

/// Most timed repetitions of one case: every value doubles with each (two ranks), and 2^127 is f32's largest power
/// of two.
const MAX_REPS: usize = 100;

impl ReduceCase {
    /// `base` repetitions for 8 MiB or more, ten times as many below (latency-bound, and noisier), at most
    /// [`MAX_REPS`].
    fn new(label: String, numels: Vec<i64>, base: usize) -> Self {
        let small = numels.iter().sum::<i64>() < 2 << 20;
        let reps = if small { base * 10 } else { base }.clamp(1, MAX_REPS);
        Self { label, numels, reps }
    }

    fn bytes(&self) -> f64 {
        self.numels.iter().sum::<i64>() as f64 * 4.0
    }
}

/// What rank 0 of either side writes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReduceResult {
    pub side: String,
    pub world: usize,
    #[serde(default)]
    pub versions: serde_json::Value,
    pub cases: Vec<ReduceTimes>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReduceTimes {
    pub label: String,
    pub times_s: Vec<f64>,
    pub buckets: usize,
    /// The first value of the first tensor and the last of the last after every repetition: `world^(warmup+reps)`.
    pub first: f64,
    pub last: f64,
}

/// One rank of the Rust side (`pgrs bench allreduce-worker --spec … --out …`, under torchrun's variables).
pub fn worker(spec_path: &Path, out: &Path) -> Result<i32> {
    let spec: ReduceSpec = read_json(spec_path)?;
    tch::set_num_threads(spec.threads as i32);
    let env = distributed::RankEnv::from_env()?;
    let group = distributed::ProcessGroup::init(&env, Duration::from_secs(300))?;
    let mut cases = Vec::new();
    for c in &spec.cases {
        let mut tensors: Vec<Tensor> =
            c.numels.iter().map(|&n| Tensor::ones([n], (Kind::Float, Device::Cpu))).collect();
        let mut times = Vec::new();
        for i in 0..spec.warmup + c.reps {
            group.barrier()?;
            let t = Instant::now();
            group.all_reduce_sum_bucketed(&mut tensors, spec.bucket_bytes)?;
            if i >= spec.warmup {
                times.push(t.elapsed().as_secs_f64());
            }
        }
        let (Some(first), Some(last)) = (tensors.first(), tensors.last()) else {
            bail!("all-reduce case `{}` has no tensors", c.label);
        };
        cases.push(ReduceTimes {
            label: c.label.clone(),
            times_s: times,
            buckets: bucket_count(&c.numels, spec.bucket_bytes),
            first: first.double_value(&[0]),
            last: last.double_value(&[last.numel() as i64 - 1]),
        });
    }
    if group.is_main() {
        let versions = serde_json::json!({"pgrs": env!("CARGO_PKG_VERSION")});
        let result =
            ReduceResult { side: "rust".into(), world: group.world_size(), versions, cases };
        write_json(out, &result)?;
    }
    Ok(0)
}

/// Bytes copied per second by one large tensor copy (`copy_` of 256 MiB of f32) on `threads` threads, in GB/s: the
/// memory bandwidth every copy of a loopback all-reduce works against. Median of 5 after one untimed copy.
fn copy_gbps(threads: usize) -> f64 {
    let before = tch::get_num_threads();
    tch::set_num_threads(threads as i32);
    let n: i64 = 64 << 20;
    let src = Tensor::ones([n], (Kind::Float, Device::Cpu));
    let mut dst = Tensor::zeros([n], (Kind::Float, Device::Cpu));
    let mut times = Vec::new();
    for i in 0..6 {
        let t = Instant::now();
        dst.copy_(&src);
        if i > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    tch::set_num_threads(before);
    Summary::of(&times).map_or(f64::NAN, |s| (n * 4) as f64 / s.median / 1e9)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(25).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Starts `world` processes (`make(rank)`) under torchrun's variables (none for one process), `threads` threads
/// each (OpenMP, MKL, rayon), output in `<logs>/<tag>.rank<r>.log`, and waits for them all; a process that fails
/// (or [`RUN_LIMIT`]) stops the others, and the error shows the failed one's last lines. Returns the wall time.
fn run_ranks(
    world: usize,
    threads: usize,
    logs: &Path,
    tag: &str,
    make: &dyn Fn(usize) -> Command,
) -> Result<f64> {
    let port = free_port()?;
    let started = Instant::now();
    let (mut children, mut log_files) = (Vec::new(), Vec::new());
    let threads = threads.to_string();
    for rank in 0..world {
        let log = logs.join(format!("{tag}.rank{rank}.log"));
        let mut cmd = make(rank);
        distributed::RankEnv::local(rank, world, port).apply_to(&mut cmd);
        cmd.env("OMP_NUM_THREADS", &threads)
            .env("MKL_NUM_THREADS", &threads)
            .env("RAYON_NUM_THREADS", &threads)
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&log)?))
            .stderr(Stdio::from(std::fs::File::options().append(true).open(&log)?));
        children.push(cmd.spawn().with_context(|| format!("starting {tag} rank {rank}"))?);
        log_files.push(log);
    }
    let mut done = vec![None; world];
    loop {
        for (c, d) in children.iter_mut().zip(done.iter_mut()) {
            if d.is_none() {
                *d = c.try_wait()?;
            }
        }
        let failed = done.iter().position(|s| s.is_some_and(|s| !s.success()));
        let late = started.elapsed() > RUN_LIMIT;
        if failed.is_some() || late {
            for c in &mut children {
                let _ = c.kill();
                let _ = c.wait();
            }
            let r = failed.unwrap_or(0);
            let why = match done[r] {
                Some(s) => s.to_string(),
                None => format!("still running after {} s", RUN_LIMIT.as_secs()),
            };
            bail!(
                "{tag}: process {r} of {world} failed ({why}); last lines of {}:\n{}",
                log_files[r].display(),
                tail(&log_files[r])
            );
        }
        if done.iter().all(Option::is_some) {
            return Ok(started.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One training run of one case and layout.
#[derive(Debug, Clone, Serialize)]
struct TrainRun {
    case: &'static str,
    layout: Layout,
    round: usize,
    wall_s: f64,
    first_loss: Option<f64>,
    step_s: Vec<f64>,
}

struct Ctx<'a> {
    pgrs: PathBuf,
    repo: &'a Path,
    dir: PathBuf,
    logs: PathBuf,
    data: PathBuf,
    steps: usize,
}

/// Trains `case` with `layout`; also returns the sizes of its trainables (from the final checkpoint).
fn train_once(
    ctx: &Ctx,
    case: Case,
    model: &Path,
    layout: Layout,
    round: usize,
) -> Result<(TrainRun, Vec<i64>)> {
    let tag = format!("ddp-{}-{}-r{round}", case.label(), layout.label());
    let config = ctx.dir.join(format!("{}-b{}.toml", case.label(), layout.batch));
    std::fs::write(&config, experiment(case, model, &ctx.data, layout.batch, ctx.steps))?;
    let runs = ctx.dir.join("runs").join(&tag);
    let _ = std::fs::remove_dir_all(&runs);
    std::fs::create_dir_all(&runs)?;
    let make = |_rank: usize| {
        let mut c = Command::new(&ctx.pgrs);
        c.current_dir(ctx.repo)
            .arg("train")
            .arg("--config")
            .arg(&config)
            .args(["--quiet", "--skip-image-check", "--dist-timeout", "300", "--runs-dir"])
            .arg(&runs);
        c
    };
    let wall_s = run_ranks(layout.processes, layout.threads, &ctx.logs, &tag, &make)?;
    let run = std::fs::read_dir(&runs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.join("metrics.jsonl").is_file())
        .with_context(|| {
            format!("{tag}: no run directory with metrics.jsonl in {}", runs.display())
        })?;
    let log = ::report::metrics_log::MetricsLog::read(&run.join("metrics.jsonl"))?;
    let step_s = step_seconds(&log.train, WARMUP_STEPS);
    if step_s.is_empty() {
        let steps: Vec<u64> = log.train.iter().map(|r| r.step).collect();
        bail!("{tag}: no step times in {} (steps logged: {steps:?})", run.display());
    }
    let first_loss = log.train.first().and_then(|r| r.loss);
    let ckpt = run.join(format!("checkpoints/step-{:06}/trainable.safetensors", ctx.steps));
    let numels = Tensor::read_safetensors(&ckpt)
        .with_context(|| format!("reading {}", ckpt.display()))?
        .iter()
        .map(|(_, t)| t.numel() as i64)
        .collect();
    std::fs::remove_dir_all(&runs)?;
    Ok((TrainRun { case: case.label(), layout, round, wall_s, first_loss, step_s }, numels))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReduceSide {
    Rust,
    Torch,
}

/// Both all-reduce ranks of one side; rank 0's times, after checking every side's sums.
fn reduce_once(
    ctx: &Ctx,
    python: &Path,
    side: ReduceSide,
    spec: &ReduceSpec,
    round: usize,
) -> Result<ReduceResult> {
    let name = match side {
        ReduceSide::Rust => "rust",
        ReduceSide::Torch => "torch",
    };
    let tag = format!("ddp-allreduce-{name}-r{round}");
    let spec_path = ctx.logs.join("ddp-allreduce.spec.json");
    let out = ctx.logs.join(format!("{tag}.json"));
    let _ = std::fs::remove_file(&out);
    write_json(&spec_path, spec)?;
    let script = ctx.repo.join("scripts/bench/allreduce.py");
    let make = |_rank: usize| {
        let mut c = match side {
            ReduceSide::Rust => {
                let mut c = Command::new(&ctx.pgrs);
                c.args(["bench", "allreduce-worker"]);
                c
            }
            ReduceSide::Torch => {
                let mut c = Command::new(python);
                c.arg(&script).env("PYTHONWARNINGS", "ignore");
                c
            }
        };
        c.current_dir(ctx.repo).arg("--spec").arg(&spec_path).arg("--out").arg(&out);
        c
    };
    run_ranks(RANKS, spec.threads, &ctx.logs, &tag, &make)?;
    let r: ReduceResult = read_json(&out)?;
    if r.cases.len() != spec.cases.len() {
        bail!("{name} all-reduce: {} results for {} cases", r.cases.len(), spec.cases.len());
    }
    for (c, s) in r.cases.iter().zip(&spec.cases) {
        let want = (RANKS as f64).powi((spec.warmup + s.reps) as i32);
        if c.label != s.label || c.first != want || c.last != want {
            bail!(
                "{name} all-reduce of `{}` summed wrong: {} and {} where {want} was expected",
                c.label,
                c.first,
                c.last
            );
        }
    }
    Ok(r)
}

/// The synthetic dataset of the training runs (written once under the work directory).
fn ensure_data(dir: &Path) -> Result<PathBuf> {
    let data = dir.join(format!("synth-{SYNTH_SIZE}px-{SYNTH_IMAGES}-seed0"));
    let json = data.join("dataset_synth.json");
    if !json.is_file() {
        eprintln!("writing {SYNTH_IMAGES} synthetic images to {} (once)...", data.display());
        rsicd_data::synth::generate(&data, SYNTH_IMAGES, 0, SYNTH_SIZE)?;
    }
    Ok(json)
}

/// Everything measured for one training case.
struct CaseResult {
    case: Case,
    single: Vec<TrainRun>,
    ranks: Vec<TrainRun>,
    numels: Vec<i64>,
}

impl CaseResult {
    fn steps(runs: &[TrainRun]) -> Option<Summary> {
        Summary::of(&runs.iter().flat_map(|r| r.step_s.iter().copied()).collect::<Vec<_>>())
    }
    fn first_loss(runs: &[TrainRun]) -> f64 {
        runs.first().and_then(|r| r.first_loss).unwrap_or(f64::NAN)
    }
    /// Whether both layouts computed the same first loss (same batch, same initial weights; only the order of the
    /// sums differs).
    fn agree(&self) -> bool {
        let (a, b) = (Self::first_loss(&self.single), Self::first_loss(&self.ranks));
        (a - b).abs() <= LOSS_REL_TOL * a.abs()
    }
}

pub fn run(a: &Args) -> Result<i32> {
    let c = &a.common;
    if c.device != "cpu" {
        bail!(
            "bench ddp measures data parallelism on CPU (Gloo over loopback); ranks on CUDA need a GPU each and \
             NCCL, which it does not cover: drop --device {}",
            c.device
        );
    }
    if a.batch == 0 || a.sizes_mib.contains(&0) {
        bail!("--batch and --sizes-mib must be at least 1");
    }
    let session = c.session()?;
    let threads = session.threads;
    let per_rank = (threads / RANKS).max(1);
    let steps = c.steps.unwrap_or(if c.quick { 6 } else { 12 });
    if steps <= WARMUP_STEPS + 1 {
        bail!(
            "--steps {steps}: at least {} (the first {WARMUP_STEPS} are warm-up)",
            WARMUP_STEPS + 2
        );
    }
    let rounds = c.rounds();
    let reps = a.reps();
    let parts = c.select(vec!["lora", "full", "sweep"], |p| p.to_string())?;
    let selected: Vec<Case> =
        Case::ALL.into_iter().filter(|k| parts.contains(&k.label())).collect();
    let sweep = parts.contains(&"sweep");

    let dir = session.work.join("ddp");
    std::fs::create_dir_all(&dir)?;
    let ctx = Ctx {
        pgrs: session.runner.pgrs.clone(),
        repo: &session.repo,
        dir: dir.clone(),
        logs: session.runner.logs.clone(),
        data: ensure_data(&dir)?,
        steps,
    };
    let midsize = if selected.contains(&Case::Lora) {
        session.model(&ModelChoice::Generated(ModelChoice::DEFAULT))?
    } else {
        PathBuf::new()
    };
    eprintln!(
        "bench ddp: {} training case(s) x {rounds} round(s) x (1 process x {threads} threads, {RANKS} ranks x \
         {per_rank}), {steps} steps each; all-reduce {REDUCE_WARMUP} + {reps} repetitions per size (x10 below 8 \
         MiB)",
        selected.len()
    );
    let started = Instant::now();
    let copy = (copy_gbps(1), copy_gbps(threads));
    eprintln!("copy bandwidth: {:.1} GB/s on 1 thread, {:.1} GB/s on {threads}", copy.0, copy.1);

    let single = Layout { processes: 1, threads, batch: RANKS * a.batch };
    let ranks = Layout { processes: RANKS, threads: per_rank, batch: a.batch };
    let mut results = Vec::new();
    for &case in &selected {
        let mut r = CaseResult { case, single: vec![], ranks: vec![], numels: vec![] };
        for round in 0..rounds {
            let order = if round % 2 == 0 { [single, ranks] } else { [ranks, single] };
            for layout in order {
                let (run, numels) = train_once(&ctx, case, &midsize, layout, round)?;
                eprintln!(
                    "{} {}: {} ({:.0} s so far)",
                    case.label(),
                    layout.label(),
                    Summary::of(&run.step_s).map_or("-".into(), |s| secs_range(&s)),
                    started.elapsed().as_secs_f64()
                );
                if layout.processes == 1 {
                    r.single.push(run);
                    r.numels = numels;
                } else {
                    r.ranks.push(run);
                }
            }
        }
        results.push(r);
    }

    let mut reduce_cases: Vec<ReduceCase> = results
        .iter()
        .map(|r| ReduceCase::new(r.case.label().into(), r.numels.clone(), reps))
        .collect();
    if sweep {
        reduce_cases.extend(
            a.sizes_mib
                .iter()
                .map(|&m| ReduceCase::new(format!("{m} MiB"), vec![(m as i64) << 18], reps)),
        );
    }
    let spec = ReduceSpec {
        threads: per_rank,
        warmup: REDUCE_WARMUP,
        bucket_bytes: trainer::parallel::BUCKET_BYTES,
        cases: reduce_cases,
    };
    let (mut ours, mut torch) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [ReduceSide::Rust, ReduceSide::Torch]
        } else {
            [ReduceSide::Torch, ReduceSide::Rust]
        };
        for side in order {
            let r = reduce_once(&ctx, &session.python, side, &spec, round)?;
            match side {
                ReduceSide::Rust => ours.push(r),
                ReduceSide::Torch => torch.push(r),
            }
        }
        eprintln!(
            "all-reduce round {round}: done ({:.0} s so far)",
            started.elapsed().as_secs_f64()
        );
    }
    let reduce = ReduceTable { spec, ours, torch };

    let raw: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            serde_json::json!({"case": r.case.label(), "single": r.single, "ranks": r.ranks,
                               "gradient_numels": r.numels})
        })
        .chain(std::iter::once(serde_json::json!({
            "case": "allreduce", "spec": reduce.spec, "rust": reduce.ours, "torch": reduce.torch,
            "copy_gbps": {"1": copy.0, threads.to_string(): copy.1},
        })))
        .collect();
    write_raw(&session.work, "ddp", raw)?;
    let section =
        render(a, &results, &reduce, copy, &session.versions, threads, per_rank, steps, rounds);
    c.publish(&section)?;
    Ok(if results.iter().all(CaseResult::agree) { 0 } else { 2 })
}

struct ReduceTable {
    spec: ReduceSpec,
    ours: Vec<ReduceResult>,
    torch: Vec<ReduceResult>,
}

impl ReduceTable {
    fn times(runs: &[ReduceResult], label: &str) -> Option<Summary> {
        let all: Vec<f64> = runs
            .iter()
            .flat_map(|r| r.cases.iter().filter(|c| c.label == label))
            .flat_map(|c| c.times_s.iter().copied())
            .collect();
        Summary::of(&all)
    }
}

fn mb(bytes: f64) -> String {
    if bytes >= 1e6 {
        format!("{:.1} MB", bytes / 1e6)
    } else {
        format!("{:.0} kB", bytes / 1e3)
    }
}

#[allow(clippy::too_many_arguments)]
fn render(
    a: &Args,
    results: &[CaseResult],
    reduce: &ReduceTable,
    copy: (f64, f64),
    versions: &serde_json::Value,
    threads: usize,
    per_rank: usize,
    steps: usize,
    rounds: usize,
) -> String {
    let (c, reps) = (&a.common, a.reps());
    let (b, global) = (a.batch, a.batch * RANKS);
    let mut flags = c.flags();
    if b != 4 {
        flags += &format!(" --batch {b}");
    }
    let sizes: Vec<String> = a.sizes_mib.iter().map(usize::to_string).collect();
    if sizes.join(",") != "1,16,64,256" {
        flags += &format!(" --sizes-mib {}", sizes.join(","));
    }
    let mut s = format!(
        "## ddp: data-parallel step and all-reduce on CPU, {} (`cargo xtask bench ddp{flags}`)\n\n",
        report::today()
    );
    s += &format!(
        "Step time: the same experiment trained for {steps} steps as one `pgrs train` process with {threads} threads \
         and batch {global}, and as {RANKS} ranks (`pgrs train` under torchrun's variables, Gloo over 127.0.0.1) with \
         {} and batch {b} each: the same global batch, so the same gradients (the first losses must agree within \
         {LOSS_REL_TOL:e} relative). A step is everything between two lines of rank 0's metrics.jsonl \
         (`train.log_every = 1`): the batch's images loaded, forward, backward, on {RANKS} ranks the gradient \
         all-reduce (25 MiB buckets) and the summed loss, clipping, AdamW; steps 1-{WARMUP_STEPS} left out; medians \
         (min-max) over {rounds} round(s) x {} steps. Cases: LoRA r8 on Gemma's q/k/v/o of the mid-size PaliGemma \
         (`scripts/bench/make_model.py`, 224 px, 256 image tokens); a full fine-tune (`train.preset = \"all\"`) of a \
         from-scratch model (SigLIP 256x4 over 64 image tokens, Gemma 512x3 with MLP 2048, word-level vocabulary); \
         {SYNTH_IMAGES} synthetic {SYNTH_SIZE}-px images (`rsicd_data::synth`), f32, AdamW.\n\n",
        n_threads(per_rank),
        steps - WARMUP_STEPS
    );
    s += &format!(
        "All-reduce: {RANKS} processes of {} sum f32 tensors with `ProcessGroup::all_reduce_sum_bucketed` \
         (`trainer::parallel::BUCKET_BYTES` = 25 MiB buckets), after a barrier, {REDUCE_WARMUP} untimed + {} timed \
         repetitions per round ({} below 8 MiB), rank 0's times: each training case's gradient tensors (sizes from \
         its checkpoint) and one tensor per sweep size. Reference: PyTorch's `torch.distributed.all_reduce` on gloo, \
         same buckets, in {RANKS} Python processes (`scripts/bench/allreduce.py`); both sides' sums checked before \
         timing. Bus bandwidth = bytes x 2(n-1)/n / time (NCCL-tests' convention; for 2 ranks the bytes each rank \
         sends and receives per second). Copy bandwidth (one 256 MiB tensor `copy_`, bytes copied per second): \
         {:.1} GB/s on 1 thread, {:.1} GB/s on {threads}. Memory bounds a loopback all-reduce: per rank, a 2-rank \
         ring all-reduce of n bytes sends and receives n bytes, each copied twice by the kernel (into a socket buffer \
         and out of it), and sums n/2 (read twice, written once): about {LOOPBACK_TRAFFIC}n bytes of memory traffic \
         per rank where a copy of n bytes moves 2n, so with both ranks on this machine the bus bandwidth is at most \
         about copy bandwidth / {LOOPBACK_TRAFFIC} = {:.2} GB/s (last column: ours against that bound).\n\n",
        n_threads(per_rank),
        reps,
        (reps * 10).min(MAX_REPS),
        copy.0,
        copy.1,
        loopback_bound_gbps(copy.1)
    );
    s += &format!("{}\n\n", machine::describe("cpu", versions));
    s += &format!(
        "Physical bound: both layouts do the same arithmetic on the same {threads} logical CPUs and memory, so \
         neither can be faster than these cores allow, and the ratio says which uses them better: one process splits \
         every kernel over {threads} threads (and waits for the slowest at the end of each), while each rank runs \
         whole kernels on {} but repeats the optimizer update over all trainables and adds the all-reduce and a \
         second process's overheads.\n\n",
        n_threads(per_rank)
    );

    let ours_label = |label: &str| ReduceTable::times(&reduce.ours, label);
    let mut rows = Vec::new();
    for r in results {
        let (one, two) = (CaseResult::steps(&r.single), CaseResult::steps(&r.ranks));
        let bytes = r.numels.iter().sum::<i64>() as f64 * 4.0;
        let (l1, l2) = (CaseResult::first_loss(&r.single), CaseResult::first_loss(&r.ranks));
        let agree = r.agree();
        let ar = ours_label(r.case.label());
        rows.push(vec![
            r.case.describe().to_string(),
            format!("{:.2} M / {}", bytes / 4e6, mb(bytes)),
            format!("{l1:.4} / {l2:.4}{}", if agree { "" } else { " DISAGREE" }),
            one.map_or("-".into(), |x| secs_range(&x)),
            two.map_or("-".into(), |x| secs_range(&x)),
            match (one, two) {
                (Some(x), Some(y)) => format!("**{:.2}**", y.median / x.median),
                _ => "-".into(),
            },
            match (one, two) {
                (Some(x), Some(y)) => {
                    format!("{:.1} / {:.1}", global as f64 / x.median, global as f64 / y.median)
                }
                _ => "-".into(),
            },
            ar.map_or("-".into(), |x| secs_range(&x)),
            match (ar, two) {
                (Some(x), Some(y)) => format!("{:.0}%", 100.0 * x.median / y.median),
                _ => "-".into(),
            },
        ]);
    }
    if !rows.is_empty() {
        s += &report::table(
            &[
                "case",
                "trainable / gradient bytes",
                "loss step 1, 1 process / 2 ranks",
                &format!("step, 1 process x {threads} threads, batch {global}"),
                &format!("step, {RANKS} ranks x {}, batch {b} each", n_threads(per_rank)),
                "ratio 2 ranks / 1 process",
                "samples/s, 1 process / 2 ranks",
                "gradient all-reduce, 2 ranks",
                "all-reduce share of the 2-rank step",
            ],
            &[false, true, false, true, true, true, true, true, true],
            &rows,
        );
        s += "\n";
    }

    let mut rows = Vec::new();
    for case in &reduce.spec.cases {
        let (x, y) = (ours_label(&case.label), ReduceTable::times(&reduce.torch, &case.label));
        let bytes = case.bytes();
        let what = match results.iter().find(|r| r.case.label() == case.label) {
            Some(r) => format!("gradients: {}", r.case.describe()),
            None => format!("one tensor of {}", case.label),
        };
        let bw = |t: Option<Summary>| t.map(|t| bus_gbps(bytes, t.median, RANKS));
        let (bx, by) = (bw(x), bw(y));
        rows.push(vec![
            what,
            format!(
                "{} in {} tensor(s), {} bucket(s)",
                mb(bytes),
                case.numels.len(),
                bucket_count(&case.numels, reduce.spec.bucket_bytes)
            ),
            x.map_or("-".into(), |t| secs_range(&t)),
            y.map_or("-".into(), |t| secs_range(&t)),
            match (x, y) {
                (Some(x), Some(y)) => format!("**{:.2}**", x.median / y.median),
                _ => "-".into(),
            },
            match (bx, by) {
                (Some(p), Some(q)) => format!("{p:.2} / {q:.2}"),
                _ => "-".into(),
            },
            bx.map_or("-".into(), |p| format!("{:.0}%", 100.0 * p / loopback_bound_gbps(copy.1))),
        ]);
    }
    s += &report::table(
        &[
            "all-reduce of",
            "size",
            "ours (`all_reduce_sum_bucketed`)",
            "torch `dist.all_reduce` (gloo)",
            "ratio ours / torch",
            "bus bandwidth GB/s, ours / torch",
            "ours, of the loopback bound",
        ],
        &[false, false, true, true, true, true, true],
        &rows,
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_times_are_differences_of_consecutive_logged_steps_after_the_warm_up() {
        let jsonl = "{\"kind\":\"train\",\"step\":1,\"loss\":5.0,\"time_s\":10.0}\n\
                     {\"kind\":\"eval\",\"step\":1,\"split\":\"val\",\"metrics\":{\"CIDEr\":0.1}}\n\
                     {\"kind\":\"train\",\"step\":2,\"loss\":4.5,\"time_s\":12.0}\n\
                     {\"kind\":\"train\",\"step\":3,\"loss\":4.0,\"time_s\":12.5}\n\
                     \n\
                     {\"kind\":\"train\",\"step\":4,\"loss\":3.5,\"time_s\":13.25}\n\
                     {\"kind\":\"train\",\"step\":6,\"loss\":3.0,\"time_s\":15.0}\n";
        let parse = |text| {
            ::report::metrics_log::MetricsLog::parse(Path::new("metrics.jsonl"), text).unwrap()
        };
        let log = parse(jsonl);
        assert_eq!(log.train.iter().map(|r| r.step).collect::<Vec<_>>(), [1, 2, 3, 4, 6]);
        assert_eq!(log.train[0].loss, Some(5.0));
        // step 6 follows step 4 (a step not logged): no time for it
        assert_eq!(step_seconds(&log.train, 2), [0.5, 0.75]);
        assert_eq!(step_seconds(&log.train, 0), [2.0, 0.5, 0.75]);
        // steps without a time give none
        let untimed = parse("{\"kind\":\"train\",\"step\":1}\n{\"kind\":\"train\",\"step\":2}\n");
        assert!(step_seconds(&untimed.train, 0).is_empty());
    }

    #[test]
    fn bus_bandwidth_and_buckets() {
        // 2 ranks: the buffer itself per second; 4 ranks: 1.5 times it
        assert_eq!(bus_gbps(1e9, 0.5, 2), 2.0);
        assert_eq!(bus_gbps(1e9, 1.0, 4), 1.5);
        assert_eq!(loopback_bound_gbps(11.0), 2.0);
        assert_eq!((n_threads(1), n_threads(2)), ("1 thread".to_string(), "2 threads".to_string()));
        let mib = 1 << 18; // f32 values in 1 MiB
        assert_eq!(bucket_count(&[10 * mib, 10 * mib, 10 * mib], 25 << 20), 2);
        assert_eq!(bucket_count(&[64 * mib], 25 << 20), 1);
        assert_eq!(bucket_count(&[mib, 64 * mib, mib], 25 << 20), 3);
        assert_eq!(bucket_count(&[], 25 << 20), 0);
    }

    #[test]
    fn experiments_parse_as_configs() {
        let (model, data) = (Path::new("m"), Path::new("d/dataset_synth.json"));
        for case in Case::ALL {
            let text = experiment(case, model, data, 4, 12);
            let cfg = trainer::ExperimentConfig::from_toml(&text, &[]).unwrap();
            assert_eq!((cfg.train.batch_size, cfg.train.steps, cfg.train.log_every), (4, 12, 1));
        }
    }
}
