//! `cargo xtask train --nproc N <args…>`: N local ranks of `pgrs train <args…>`, started by xtask itself the way
//! `torchrun --no-python --nproc-per-node N pgrs train <args…>` starts them, without Python.
//!
//! Each rank gets torchrun's environment contract
//! (<https://pytorch.org/docs/stable/elastic/run.html#environment-variables>): `RANK`, `LOCAL_RANK`, `WORLD_SIZE`,
//! `LOCAL_WORLD_SIZE`, `GROUP_RANK`, `ROLE_RANK`, `ROLE_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT` and the
//! `TORCHELASTIC_*` run id and restart counts, plus `OMP_NUM_THREADS` unless the user set it. Failures follow
//! torchrun too: when one rank ends badly the others are sent SIGTERM, and SIGKILL if they are still there 30 s
//! later; xtask exits with the first failing rank's code.
//!
//! Like [`launcher::run_child`]'s single child, every rank leads a process group of its own, and SIGINT, SIGTERM
//! and SIGHUP received by xtask are passed on once to each group while xtask keeps waiting for all of them.
use crate::launcher::{self, signals};
use crate::setup;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// How long the surviving ranks have to stop after a failure (torchrun's default too) before they are killed.
const GRACE: Duration = Duration::from_secs(30);
/// How often the ranks are checked; a rank's failure is acted on within this.
const POLL: Duration = Duration::from_millis(50);

/// What xtask takes out of `train`'s arguments when `--nproc` is among them.
#[derive(Debug)]
struct Plan {
    nproc: usize,
    master_addr: String,
    master_port: Option<u16>,
    /// Everything else, for `pgrs train`.
    args: Vec<String>,
}

/// `cargo xtask train [--nproc N|gpu [--master-port P] [--master-addr A]] <args…>`.
pub fn train(args: &[String]) -> Result<i32> {
    if !options(args).any(|a| a == "--nproc" || a.starts_with("--nproc=")) {
        return launcher::run_cli("train", args);
    }
    let plan = match Plan::parse(args) {
        Ok(plan) => plan,
        Err(e) => {
            // A usage error, reported as clap reports its own.
            eprintln!("error: {e:#}");
            return Ok(2);
        }
    };
    if plan.nproc == 1 {
        return launcher::run_cli("train", &plan.args);
    }
    setup::ensure(false)?;
    let code = launcher::build("paligemma-cli", "pgrs")?;
    if code != 0 {
        return Ok(code);
    }
    run(&plan, &launcher::binary("pgrs"))
}

/// The arguments xtask may take options from: a `--` ends them, as it ends a command's options.
fn options(args: &[String]) -> impl Iterator<Item = &String> {
    args.iter().take_while(|a| *a != "--")
}

impl Plan {
    fn parse(args: &[String]) -> Result<Plan> {
        let (mut nproc, mut master_addr, mut master_port) = (None, None, None);
        let mut rest = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            if arg == "--" {
                rest.push(arg.clone());
                rest.extend(it.by_ref().cloned());
                break;
            }
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (arg.as_str(), None),
            };
            let slot = match name {
                "--nproc" => &mut nproc,
                "--master-addr" => &mut master_addr,
                "--master-port" => &mut master_port,
                _ => {
                    rest.push(arg.clone());
                    continue;
                }
            };
            let value = inline.or_else(|| it.next().cloned());
            *slot = Some(value.with_context(|| format!("{name} needs a value"))?);
        }
        Ok(Plan {
            nproc: ranks(&nproc.context("--nproc needs a value")?)?,
            master_addr: master_addr.unwrap_or_else(|| "127.0.0.1".into()),
            master_port: master_port.as_deref().map(port).transpose()?,
            args: rest,
        })
    }
}

fn ranks(value: &str) -> Result<usize> {
    if value == "gpu" {
        return gpus();
    }
    match value.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => bail!(
            "--nproc {value:?}: expected a number of ranks (1 or more) or `gpu` (one rank per GPU)"
        ),
    }
}

fn gpus() -> Result<usize> {
    let out = Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .context("--nproc gpu: running `nvidia-smi -L` to count the GPUs")?;
    let listed =
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with("GPU ")).count();
    if !out.status.success() || listed == 0 {
        bail!("--nproc gpu: `nvidia-smi -L` lists no GPU; give the number of ranks instead");
    }
    Ok(listed)
}

fn port(value: &str) -> Result<u16> {
    match value.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => bail!("--master-port {value:?}: expected a TCP port (1-65535)"),
    }
}

/// A port nobody listens on now, for rank 0's store: there is a small window in which another process may take
/// it, as with torchrun's own choice of a free port.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .context("finding a free port for MASTER_PORT")?;
    Ok(listener.local_addr()?.port())
}

/// Distinct for every launch, so a rank can tell runs apart (torchrun's `--standalone` uses a fresh uuid).
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}-{nanos:x}", std::process::id())
}

/// The variables every rank shares.
fn shared_env(plan: &Plan) -> Result<Vec<(&'static str, String)>> {
    let port = match plan.master_port {
        Some(p) => p,
        None => free_port()?,
    };
    let n = plan.nproc.to_string();
    let mut env = vec![
        ("WORLD_SIZE", n.clone()),
        ("LOCAL_WORLD_SIZE", n.clone()),
        ("ROLE_WORLD_SIZE", n),
        ("GROUP_RANK", "0".into()),
        ("MASTER_ADDR", plan.master_addr.clone()),
        ("MASTER_PORT", port.to_string()),
        ("TORCHELASTIC_RUN_ID", run_id()),
        ("TORCHELASTIC_RESTART_COUNT", "0".into()),
        ("TORCHELASTIC_MAX_RESTARTS", "0".into()),
    ];
    if std::env::var_os("OMP_NUM_THREADS").is_none() {
        // N ranks each using every core would oversubscribe the machine N times; torchrun sets 1, we share them.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        env.push(("OMP_NUM_THREADS", (cores / plan.nproc).max(1).to_string()));
    }
    Ok(env)
}

/// A started rank; signals reach its group until this is dropped.
struct Rank {
    rank: usize,
    child: Child,
    _forwarding: interrupt::Forwarding,
}

impl Rank {
    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) has no memory effects; the child is not yet waited for, so its group id is still ours.
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), sig) };
    }
}

/// Starts the ranks and waits for all of them; the exit code xtask reports.
fn run(plan: &Plan, pgrs: &Path) -> Result<i32> {
    signals::hold();
    if let Some(sig) = launcher::stopped() {
        eprintln!("{}: not starting {}", sig.name(), pgrs.display());
        return Ok(sig.exit_code());
    }
    let env = shared_env(plan)?;
    let mut ranks = Vec::with_capacity(plan.nproc);
    for rank in 0..plan.nproc {
        match spawn(pgrs, plan, rank, &env) {
            Ok(started) => ranks.push(started),
            Err(e) => {
                // Those already started would wait forever for the missing rank.
                stop(&ranks);
                supervise(ranks, Some(Instant::now() + GRACE))?;
                return Err(e);
            }
        }
    }
    // Held back until every rank has its forwarding: a signal sent meanwhile reaches them all, now.
    signals::release();
    let code = supervise(ranks, None);
    signals::hold();
    code
}

fn spawn(pgrs: &Path, plan: &Plan, rank: usize, env: &[(&str, String)]) -> Result<Rank> {
    let mut cmd = Command::new(pgrs);
    cmd.arg("train").args(&plan.args).envs(env.iter().map(|(k, v)| (k, v)));
    for name in ["RANK", "LOCAL_RANK", "ROLE_RANK"] {
        cmd.env(name, rank.to_string());
    }
    launcher::in_own_group(&mut cmd);
    let child = cmd.spawn().with_context(|| format!("starting rank {rank}: {}", pgrs.display()))?;
    // Registered while the signals are held, so one sent right after the spawn is forwarded too.
    let forwarding = interrupt::forward_to(child.id());
    Ok(Rank { rank, child, _forwarding: forwarding })
}

/// Waits for every rank. The first to fail (exit code ≠ 0, or killed) decides xtask's exit code and, unless
/// xtask itself was asked to stop, makes the others stop: SIGTERM now, SIGKILL at `deadline`.
fn supervise(mut ranks: Vec<Rank>, mut deadline: Option<Instant>) -> Result<i32> {
    let mut failure = None;
    while !ranks.is_empty() {
        for (rank, code) in reap(&mut ranks)? {
            if code == 0 {
                continue;
            }
            eprintln!("rank {rank} exited with code {code}");
            if failure.is_none() {
                failure = Some(code);
                // Signalled, every rank got the signal already: a second one would make `pgrs train` stop at
                // once instead of saving its checkpoint.
                if interrupt::requested().is_none() && deadline.is_none() {
                    stop(&ranks);
                    deadline = Some(Instant::now() + GRACE);
                }
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            kill(&ranks);
            deadline = None;
        }
        std::thread::sleep(POLL);
    }
    Ok(failure.unwrap_or(0))
}

/// Takes the ranks that have ended out of `ranks`: their numbers and exit codes (128 + n for signal n).
fn reap(ranks: &mut Vec<Rank>) -> Result<Vec<(usize, i32)>> {
    let mut ended = Vec::new();
    let mut i = 0;
    while i < ranks.len() {
        match ranks[i]
            .child
            .try_wait()
            .with_context(|| format!("waiting for rank {}", ranks[i].rank))?
        {
            Some(status) => ended.push((ranks.swap_remove(i).rank, interrupt::exit_code(status))),
            None => i += 1,
        }
    }
    ended.sort_unstable();
    Ok(ended)
}

fn stop(ranks: &[Rank]) {
    for r in ranks {
        eprintln!("stopping rank {} (SIGTERM)", r.rank);
        r.signal(libc::SIGTERM);
    }
}

fn kill(ranks: &[Rank]) {
    for r in ranks {
        eprintln!("rank {} still running {} s after SIGTERM: killing it", r.rank, GRACE.as_secs());
        r.signal(libc::SIGKILL);
    }
}
