//! Signals sent to `cargo xtask <command>` reach the child it launched, which is waited for: its exit code is
//! xtask's, and it is never left running. Runs the real binary on `score` (launched as `pgtools score`) with
//! `CARGO` and `CARGO_TARGET_DIR` pointing at stand-ins: a `cargo build` that returns at once (or waits for a
//! signal) and a `pgtools` shell script that traps signals.
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
