//! Signals sent to `cargo xtask <command>` reach the child it launched, which is waited for: its exit code is
//! xtask's, and it is never left running. Runs the real binary on `score` (launched as `pgtools score`) with
//! `CARGO` and `CARGO_TARGET_DIR` pointing at stand-ins: a `cargo build` that returns at once (or waits for a
//! signal) and a `pgtools` shell script that traps signals. `train --nproc N` is run the same way, with a stand-in
//! `pgrs` started once per rank.
mod common;

use common::{alive, signal, wait_exit, wait_for, xtask, TempDir};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};

const QUICK_BUILD: &str = "exit 0";
const LOOP: &str = "while :; do sleep 0.05; done";

fn script(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A script that sets its traps, then records its pid in `$D/<name>.pid` (`$D`: the test's directory), then runs
/// `rest`.
fn with_pid(name: &str, traps: &str, rest: &str) -> String {
    format!(
        "{traps}\necho $$ > \"$D/{name}.tmp\" && mv \"$D/{name}.tmp\" \"$D/{name}.pid\"\n{rest}"
    )
}

/// `xtask score` with a stand-in `cargo` (script `build`) and `pgtools` (script `tool`).
fn launch(dir: &Path, build: &str, tool: &str, own_group: bool) -> Child {
    script(&dir.join("cargo"), build);
    script(&dir.join("target/release/pgtools"), tool);
    let mut cmd = xtask();
    cmd.arg("score")
        .env("CARGO", dir.join("cargo"))
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .env("D", dir)
        .env_remove("PALIGEMMA_PROFILE")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if own_group {
        // As a shell runs a foreground job: Ctrl-C goes to this whole group.
        cmd.process_group(0);
    }
    cmd.spawn().unwrap()
}

/// Kills what a failed test left running, child groups included (after a passing test everything has exited
/// and nothing is signalled).
struct Reaper(Vec<i32>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for &pid in &self.0 {
                // SAFETY: kill(2) has no memory effects.
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

fn pid_of(dir: &Path, name: &str) -> i32 {
    let path = dir.join(format!("{name}.pid"));
    wait_for(&format!("{name} to start"), || path.exists());
    std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

fn got(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("got"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The process group of `pid` (field 5 of /proc/<pid>/stat).
fn pgrp(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    after_name.split(' ').nth(2).unwrap().parse().unwrap()
}

#[test]
fn sigterm_is_forwarded_and_the_child_waited_for() {
    let tmp = TempDir::new("launch-term");
    let mut xtask = launch(
        &tmp.0,
        QUICK_BUILD,
        &with_pid("tool", "trap 'echo TERM >> \"$D/got\"; exit 7' TERM", LOOP),
        false,
    );
    let mut reaper = Reaper(vec![xtask.id() as i32]);
    let child = pid_of(&tmp.0, "tool");
    reaper.0.push(child);
    signal(xtask.id() as i32, libc::SIGTERM);
    let status = wait_exit(&mut xtask);
    assert_eq!(status.code(), Some(7), "the child's own exit code");
    assert_eq!(got(&tmp.0), ["TERM"]);
    assert!(!alive(child), "no orphan");
}

#[test]
fn a_second_signal_is_forwarded_too() {
    let tmp = TempDir::new("launch-twice");
    let mut xtask = launch(
        &tmp.0,
        QUICK_BUILD,
        &with_pid(
            "tool",
            "n=0; trap 'n=$((n+1)); echo TERM$n >> \"$D/got\"; [ $n -ge 2 ] && exit 9' TERM",
            LOOP,
        ),
        false,
    );
    let mut reaper = Reaper(vec![xtask.id() as i32]);
    let child = pid_of(&tmp.0, "tool");
    reaper.0.push(child);
    signal(xtask.id() as i32, libc::SIGTERM);
    wait_for("the first SIGTERM to arrive", || got(&tmp.0).len() == 1);
    assert!(xtask.try_wait().unwrap().is_none(), "xtask keeps waiting for its child");
    signal(xtask.id() as i32, libc::SIGTERM);
    let status = wait_exit(&mut xtask);
    assert_eq!(status.code(), Some(9));
    assert_eq!(got(&tmp.0), ["TERM1", "TERM2"]);
    assert!(!alive(child));
}

#[test]
fn a_child_killed_by_the_signal_gives_128_plus_its_number() {
    let tmp = TempDir::new("launch-killed");
    let mut xtask = launch(&tmp.0, QUICK_BUILD, &with_pid("tool", "", "exec sleep 1000"), false);
    let mut reaper = Reaper(vec![xtask.id() as i32]);
    let child = pid_of(&tmp.0, "tool");
    reaper.0.push(child);
    signal(xtask.id() as i32, libc::SIGHUP);
    assert_eq!(wait_exit(&mut xtask).code(), Some(129));
    assert!(!alive(child));
}

/// A terminal's Ctrl-C goes to the foreground process group. The child has a group of its own, so it gets the
/// SIGINT once, from xtask (twice would make `pgrs train` skip its checkpoint and stop at once).
#[test]
fn ctrl_c_reaches_the_child_once_through_xtask() {
    let tmp = TempDir::new("launch-ctrl-c");
    let mut xtask = launch(
        &tmp.0,
        QUICK_BUILD,
        &with_pid("tool", "trap 'echo INT >> \"$D/got\"; exit 5' INT", LOOP),
        true,
    );
    let mut reaper = Reaper(vec![xtask.id() as i32]);
    let child = pid_of(&tmp.0, "tool");
    reaper.0.push(child);
    let group = xtask.id() as i32;
    assert_eq!(pgrp(group), group);
    assert_eq!(pgrp(child), child, "the child leads its own group, outside the terminal's");
    signal(-group, libc::SIGINT);
    assert_eq!(wait_exit(&mut xtask).code(), Some(5));
    assert_eq!(got(&tmp.0), ["INT"]);
    assert!(!alive(child));
}

/// SIGTERM during the build: the build gets it, and even if it then finishes, the tool is not started.
#[test]
fn a_signal_during_the_build_starts_nothing_more() {
    let tmp = TempDir::new("launch-build");
    let build = with_pid("build", "trap 'echo TERM >> \"$D/got\"; exit 0' TERM", LOOP);
    let mut xtask = launch(&tmp.0, &build, "echo started > \"$D/started\"", false);
    let mut reaper = Reaper(vec![xtask.id() as i32]);
    let build = pid_of(&tmp.0, "build");
    reaper.0.push(build);
    signal(xtask.id() as i32, libc::SIGTERM);
    assert_eq!(wait_exit(&mut xtask).code(), Some(143));
    assert_eq!(got(&tmp.0), ["TERM"]);
    assert!(!tmp.join("started").exists(), "pgtools was started after SIGTERM");
    assert!(!alive(build));
}

/// The child starts with xtask's original signal mask: the signals xtask holds back between children are not
/// blocked in the child (else `pgrs train` would never see a SIGTERM, and `cargo test` would pass the block on to
/// every test).
#[test]
fn the_child_does_not_inherit_blocked_signals() {
    let tmp = TempDir::new("launch-mask");
    let tool = "grep SigBlk /proc/self/status > \"$D/mask\"";
    let mut xtask = launch(&tmp.0, QUICK_BUILD, tool, false);
    let _reaper = Reaper(vec![xtask.id() as i32]);
    assert_eq!(wait_exit(&mut xtask).code(), Some(0));
    let line = std::fs::read_to_string(tmp.join("mask")).unwrap();
    let mask = u64::from_str_radix(line.trim().trim_start_matches("SigBlk:").trim(), 16).unwrap();
    for sig in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM] {
        assert_eq!(mask & (1 << (sig - 1)), 0, "signal {sig} blocked in the child: {line}");
    }
}

/// Without a signal nothing changes: the child's output and exit code come through.
#[test]
fn the_child_exit_code_is_xtasks() {
    let tmp = TempDir::new("launch-plain");
    let mut xtask = launch(&tmp.0, QUICK_BUILD, "exit 3", false);
    let _reaper = Reaper(vec![xtask.id() as i32]);
    assert_eq!(wait_exit(&mut xtask).code(), Some(3));
}

/// `xtask train <args>` with stand-ins for `cargo` (a build that writes `$D/built`), libtorch (`$LIBTORCH`, so no
/// setup runs) and `pgrs` (script `rank`, run once per rank); xtask's stderr goes to `$D/stderr`.
fn launch_train(dir: &Path, args: &[&str], rank: &str) -> Child {
    script(&dir.join("cargo"), "echo built >> \"$D/built\"");
    script(&dir.join("target/release/pgrs"), rank);
    let libtorch = dir.join("libtorch");
    std::fs::create_dir_all(libtorch.join("lib")).unwrap();
    std::fs::write(libtorch.join("lib/libtorch_cpu.so"), "").unwrap();
    let mut cmd = xtask();
    cmd.arg("train")
        .args(args)
        .env("CARGO", dir.join("cargo"))
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .env("LIBTORCH", libtorch)
        .env("D", dir)
        .env_remove("PALIGEMMA_PROFILE")
        .env_remove("OMP_NUM_THREADS")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap());
    cmd.spawn().unwrap()
}

fn stderr(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("stderr")).unwrap()
}

/// The rank's view, `NAME=value` per variable and then its arguments, in `$D/rank<RANK>` (`$D/single` without
/// `RANK`).
const RECORD_ENV: &str = "f=\"$D/${RANK:-single}\"
for v in RANK LOCAL_RANK WORLD_SIZE LOCAL_WORLD_SIZE GROUP_RANK ROLE_RANK ROLE_WORLD_SIZE MASTER_ADDR MASTER_PORT \\
    TORCHELASTIC_RUN_ID OMP_NUM_THREADS; do eval \"echo $v=\\${$v-unset}\"; done > \"$f.tmp\"
echo \"pgid=$(cut -d' ' -f5 /proc/$$/stat) pid=$$\" >> \"$f.tmp\"
echo \"args=$*\" >> \"$f.tmp\"
mv \"$f.tmp\" \"$f\"";

fn record(dir: &Path, name: &str) -> std::collections::BTreeMap<String, String> {
    let text = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut seen = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("pgid=") {
            let (pgid, pid) = rest.split_once(" pid=").unwrap();
            assert_eq!(pgid, pid, "{name} leads its own process group");
        } else {
            let (k, v) = line.split_once('=').unwrap();
            seen.insert(k.to_string(), v.to_string());
        }
    }
    seen
}

#[test]
fn nproc_starts_ranks_with_torchruns_environment() {
    let tmp = TempDir::new("ranks-env");
    let mut xtask = launch_train(&tmp.0, &["--nproc", "2", "--foo", "--set", "a=1"], RECORD_ENV);
    let _reaper = Reaper(vec![xtask.id() as i32]);
    assert_eq!(wait_exit(&mut xtask).code(), Some(0), "{}", stderr(&tmp.0));
    assert_eq!(
        std::fs::read_to_string(tmp.join("built")).unwrap(),
        "built\n",
        "pgrs is built once"
    );
    let ranks = [record(&tmp.0, "0"), record(&tmp.0, "1")];
    for (i, seen) in ranks.iter().enumerate() {
        let i = i.to_string();
        for (name, want) in [
            ("RANK", i.as_str()),
            ("LOCAL_RANK", &i),
            ("ROLE_RANK", &i),
            ("WORLD_SIZE", "2"),
            ("LOCAL_WORLD_SIZE", "2"),
            ("ROLE_WORLD_SIZE", "2"),
            ("GROUP_RANK", "0"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("args", "train --foo --set a=1"),
        ] {
            assert_eq!(seen[name], want, "{name} of rank {i}: {seen:?}");
        }
        let port: u16 = seen["MASTER_PORT"].parse().unwrap();
        assert!(port > 0);
        assert!(seen["OMP_NUM_THREADS"].parse::<usize>().unwrap() >= 1, "{seen:?}");
        assert_ne!(seen["TORCHELASTIC_RUN_ID"], "unset");
    }
    for shared in ["MASTER_PORT", "TORCHELASTIC_RUN_ID", "OMP_NUM_THREADS"] {
        assert_eq!(ranks[0][shared], ranks[1][shared], "{shared}");
    }
}

#[test]
fn the_master_address_and_port_can_be_given() {
    let tmp = TempDir::new("ranks-master");
    let args = [
        "--foo",
        "--nproc=2",
        "--master-port=29517",
        "--master-addr",
        "localhost",
        "--",
        "--nproc",
    ];
    let mut xtask = launch_train(&tmp.0, &args, RECORD_ENV);
    let _reaper = Reaper(vec![xtask.id() as i32]);
    assert_eq!(wait_exit(&mut xtask).code(), Some(0), "{}", stderr(&tmp.0));
    for rank in ["0", "1"] {
        let seen = record(&tmp.0, rank);
        assert_eq!(seen["MASTER_PORT"], "29517");
        assert_eq!(seen["MASTER_ADDR"], "localhost");
        assert_eq!(seen["args"], "train --foo -- --nproc", "after `--` everything is pgrs'");
    }
}

/// `--nproc 1` is a plain `train`: one process, no torchrun variables (the trainer then runs on its own).
#[test]
fn one_rank_is_a_plain_train() {
    let tmp = TempDir::new("ranks-one");
    let mut xtask = launch_train(&tmp.0, &["--nproc", "1", "--foo"], RECORD_ENV);
    let _reaper = Reaper(vec![xtask.id() as i32]);
    assert_eq!(wait_exit(&mut xtask).code(), Some(0), "{}", stderr(&tmp.0));
    let seen = record(&tmp.0, "single");
    assert_eq!(seen["WORLD_SIZE"], "unset");
    assert_eq!(seen["args"], "train --foo");
}

/// As torchrun: one rank failing stops the others (SIGTERM to their groups), and its code is xtask's.
#[test]
fn a_failing_rank_stops_the_others() {
    let tmp = TempDir::new("ranks-fail");
    let rank = with_pid(
        "rank$RANK",
        "trap 'echo TERM$RANK >> \"$D/got\"; exit 0' TERM",
        &format!(
            "if [ \"$RANK\" = 1 ]; then while [ ! -e \"$D/rank0.pid\" ]; do sleep 0.01; done; exit 3; fi\n{LOOP}"
        ),
    );
    let mut xtask = launch_train(&tmp.0, &["--nproc", "2"], &rank);
    let mut reaper = Reaper(vec![xtask.id() as i32]);
    reaper.0.extend([pid_of(&tmp.0, "rank0"), pid_of(&tmp.0, "rank1")]);
    assert_eq!(wait_exit(&mut xtask).code(), Some(3), "{}", stderr(&tmp.0));
    assert_eq!(got(&tmp.0), ["TERM0"]);
    assert!(stderr(&tmp.0).contains("rank 1 exited with code 3"), "{}", stderr(&tmp.0));
    assert!(!alive(reaper.0[1]), "no orphan");
}

#[test]
fn sigterm_reaches_every_rank_once() {
    let tmp = TempDir::new("ranks-term");
    let rank = with_pid("rank$RANK", "trap 'echo TERM > \"$D/term$RANK\"; exit 143' TERM", LOOP);
    let mut xtask = launch_train(&tmp.0, &["--nproc", "2"], &rank);
    let mut reaper = Reaper(vec![xtask.id() as i32]);
    reaper.0.extend([pid_of(&tmp.0, "rank0"), pid_of(&tmp.0, "rank1")]);
    signal(xtask.id() as i32, libc::SIGTERM);
    assert_eq!(wait_exit(&mut xtask).code(), Some(143), "{}", stderr(&tmp.0));
    for rank in 0..2 {
        assert_eq!(std::fs::read_to_string(tmp.join(&format!("term{rank}"))).unwrap(), "TERM\n");
        assert!(!alive(reaper.0[1 + rank]), "rank {rank} left running");
    }
}

#[test]
fn a_bad_nproc_is_a_usage_error() {
    for (i, args) in
        [&["--nproc", "0"][..], &["--nproc", "x"], &["--nproc=-1"], &["--x", "--nproc"]]
            .into_iter()
            .enumerate()
    {
        let tmp = TempDir::new(&format!("ranks-bad-{i}"));
        let mut xtask = launch_train(&tmp.0, args, "echo started > \"$D/started\"");
        let _reaper = Reaper(vec![xtask.id() as i32]);
        assert_eq!(wait_exit(&mut xtask).code(), Some(2), "{args:?}");
        let err = stderr(&tmp.0);
        assert!(err.starts_with("error: --nproc") && !err.contains("panicked"), "{args:?}: {err}");
        assert!(
            !tmp.join("built").exists() && !tmp.join("started").exists(),
            "{args:?} ran something"
        );
    }
}
