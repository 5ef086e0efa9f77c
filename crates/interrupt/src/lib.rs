//! Clean stops on SIGINT, SIGTERM and SIGHUP.
//!
//! Batch schedulers and cloud instances stop jobs with SIGTERM (SLURM, Kubernetes, spot preemption), a closed
//! terminal sends SIGHUP and a user presses Ctrl-C (SIGINT). Long-running commands call [`install`] once and poll
//! [`requested`] at safe points (a training step boundary, between tensors of a conversion), where they finish what
//! keeps the user's files whole (a checkpoint, removing a temporary file) and exit with [`Signal::exit_code`]
//! (128 + the signal number, the shell convention: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP). A second signal
//! ends the process at once with the same code.
//!
//! Launchers that run another command ([`forward_to`]) pass every signal on to their child and wait for it, so the
//! child is never orphaned and decides itself how to stop.
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

/// The signals this crate handles.
pub const SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// A received signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal(pub i32);

impl Signal {
    pub fn name(self) -> &'static str {
        match self.0 {
            SIGINT => "SIGINT",
            SIGTERM => "SIGTERM",
            SIGHUP => "SIGHUP",
            _ => "signal",
        }
    }

    /// 128 + the signal number, as a shell reports a process ended by that signal.
    pub fn exit_code(self) -> i32 {
        128 + self.0
    }
}

static RECEIVED: AtomicI32 = AtomicI32::new(0);
static INSTALLED: OnceLock<()> = OnceLock::new();

/// Starts handling SIGINT, SIGTERM and SIGHUP for this process (idempotent). The first signal is recorded for
/// [`requested`] and `what_now` is printed ("saving a checkpoint at the end of this step"); a second one exits at
/// once with 128 + its number.
pub fn install(what_now: &'static str) {
    INSTALLED.get_or_init(|| {
        // A signal ignored when the process started stays ignored: `nohup` ignores SIGHUP, and a shell's background
        // jobs ignore SIGINT, precisely so that those signals do not stop them.
        let handled: Vec<i32> = SIGNALS.into_iter().filter(|s| !ignored_at_start(*s)).collect();
        let mut signals = Signals::new(&handled).expect("registering signal handlers");
        // A launcher may have left them blocked (a signal mask survives exec): a blocked SIGTERM would never stop us.
        // SAFETY: sigemptyset/sigaddset initialise the set; pthread_sigmask only changes this thread's mask, and
        // the threads started from here on inherit it.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &s in &handled {
                libc::sigaddset(&mut set, s);
            }
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        }
        std::thread::Builder::new()
            .name("interrupt".into())
            .spawn(move || {
                for sig in signals.forever() {
                    if RECEIVED.swap(sig, Ordering::SeqCst) != 0 {
                        eprintln!("\n{}: stopping now", Signal(sig).name());
                        // `_exit`: no destructors or atexit handlers racing the main thread's work.
                        signal_hook::low_level::exit(Signal(sig).exit_code());
                    }
                    eprintln!(
                        "\n{}: {what_now} (send it again to stop at once)",
                        Signal(sig).name()
                    );
                }
            })
            .expect("starting the signal thread");
    });
}

fn ignored_at_start(sig: i32) -> bool {
    // SAFETY: sigaction(2) with a null new action only reads the current disposition into `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

/// The first signal received since [`install`] or while [`forward_to`] was forwarding, if any.
pub fn requested() -> Option<Signal> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(Signal(s)),
    }
}

/// Passes SIGINT, SIGTERM and SIGHUP received by this process on to `pid` until the returned guard is dropped.
/// The launcher itself does not stop: it waits for its child, which handles the signal (a second one included).
/// When `pid` leads its own process group (a child spawned with `process_group(0)`, so that a terminal's Ctrl-C
/// reaches only the launcher), the signal goes to that whole group, as the terminal would have sent it: a child
/// that runs its own children (`cargo test` running test binaries) leaves none of them behind. The first signal
/// is also recorded for [`requested`], so a launcher knows not to start anything else.
pub fn forward_to(pid: u32) -> Forwarding {
    let mut signals = Signals::new(SIGNALS).expect("registering signal handlers");
    let handle = signals.handle();
    let thread = std::thread::Builder::new()
        .name("forward-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let _ = RECEIVED.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
                let pid = pid as libc::pid_t;
                // SAFETY: getpgid(2) and kill(2) with a pid we spawned and a valid signal number have no memory
                // effects.
                unsafe {
                    let target = if libc::getpgid(pid) == pid { -pid } else { pid };
                    libc::kill(target, sig);
                }
            }
        })
        .expect("starting the signal thread");
    Forwarding { handle, thread: Some(thread) }
}

/// Forwarding stops when this is dropped.
pub struct Forwarding {
    handle: signal_hook::iterator::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The exit code a launcher reports for its child: the child's own code, or 128 + the signal that ended it.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_shell_convention() {
        assert_eq!(Signal(SIGINT).exit_code(), 130);
        assert_eq!(Signal(SIGTERM).exit_code(), 143);
        assert_eq!(Signal(SIGHUP).exit_code(), 129);
        assert_eq!(Signal(SIGTERM).name(), "SIGTERM");
    }

    #[test]
    fn a_signal_ignored_at_start_stays_ignored() {
        // SAFETY: setting SIGUSR1's disposition in this test process only.
        unsafe { libc::signal(libc::SIGUSR1, libc::SIG_IGN) };
        assert!(ignored_at_start(libc::SIGUSR1));
        unsafe { libc::signal(libc::SIGUSR1, libc::SIG_DFL) };
        assert!(!ignored_at_start(libc::SIGUSR1));
    }

    #[test]
    fn first_signal_is_recorded_not_fatal() {
        install("test");
        assert_eq!(requested(), None);
        signal_hook::low_level::raise(SIGTERM).unwrap();
        for _ in 0..200 {
            if requested().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(requested(), Some(Signal(SIGTERM)));
    }
}
