//! A fork-join for the decoding step's parallel loops, whose helper threads stay awake between loops.
//!
//! Why not rayon's pool alone: a decoding step alternates parallel products (tens of µs to a few ms) with short
//! single-threaded libtorch ops, and rayon puts its idle workers to sleep within tens of µs. Waking one costs about as
//! much again on the project's 2-core VM: a 2 MB product (the mid-size model's MLP, 1 row) took 57 µs back to back and
//! 124 µs when the caller had been busy for 100 µs before each call (docs/benchmarks.md, issue 14). Here the calling
//! thread takes part in the loop, and each helper spins for [`SPIN`] after its last loop before it parks, as an
//! OpenMP team does between parallel regions (`OMP_WAIT_POLICY=active`), so a step's loops start at once.
//!
//! As many threads in all as rayon's global pool has (`RAYON_NUM_THREADS`, default one per CPU). One loop runs at a
//! time: a caller that finds the pool busy (another thread's loop, or a body calling [`for_each`]) runs through
//! rayon instead. Iterations are claimed in runs from a shared counter, so the work spreads as the threads go; which
//! thread runs an iteration is not fixed, so bodies must not depend on it (this crate's kernel gives the same bits
//! on any thread).
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a helper keeps spinning after its last loop before it parks: longer than the gaps between a decoding
/// step's products (the attention and element-wise ops, up to about 1 ms at 24 rows), far shorter than anything a
/// user would notice as a busy core.
const SPIN: Duration = Duration::from_millis(2);

/// The loop body, borrowed for the duration of one loop.
type Body = *const (dyn Fn(usize) + Sync);

/// State shared by the caller and the helpers.
struct Shared {
    /// The current loop and its progress in one word, so a claim can never take an iteration of a newer loop:
    /// epoch (bits 40-63), next iteration (bits 20-39), iterations (bits 0-19).
    counter: AtomicU64,
    /// The current loop's body. Written only while no helper is inside a loop (`in_flight == 0`) and before the
    /// loop's epoch is published; read only after a successful claim in that epoch.
    body: UnsafeCell<Option<Body>>,
    /// Helpers between their first claim attempt of a loop and their last: the caller waits for 0 before it returns.
    in_flight: AtomicUsize,
    /// Set by helper `i` before it parks; the next loop unparks it.
    parked: Vec<AtomicBool>,
    /// A body panicked on a helper: the caller panics in turn.
    panicked: AtomicBool,
}

// SAFETY: `body` is only accessed under the protocol described on the field (publication through `counter`).
unsafe impl Sync for Shared {}

const IDX_BITS: u32 = 20;
const MASK: u64 = (1 << IDX_BITS) - 1;
/// Epochs wrap around after 2^24 loops; a claim compares them for equality only.
const EPOCH_MASK: u64 = (1 << (64 - 2 * IDX_BITS)) - 1;
/// The most iterations one loop may have (larger loops run through rayon).
const MAX_ITEMS: usize = MASK as usize;

struct Pool {
    shared: &'static Shared,
    /// The helpers that started, with their index in `Shared::parked`.
    helpers: Vec<(usize, std::thread::Thread)>,
    /// Held by the caller of the loop in progress.
    busy: Mutex<()>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        // As many threads in all as rayon's global pool (`RAYON_NUM_THREADS`, default one per CPU).
        let n = rayon::current_num_threads().saturating_sub(1);
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            counter: AtomicU64::new(0),
            body: UnsafeCell::new(None),
            in_flight: AtomicUsize::new(0),
            parked: (0..n).map(|_| AtomicBool::new(false)).collect(),
            panicked: AtomicBool::new(false),
        }));
        let helpers = (0..n)
            .filter_map(|i| {
                std::thread::Builder::new()
                    .name(format!("smallmm-{i}"))
                    .spawn(move || helper(shared, i, n + 1))
                    .ok()
                    .map(|h| (i, h.thread().clone()))
            })
            .collect();
        Pool { shared, helpers, busy: Mutex::new(()) }
    })
}

/// `body(i)` for every `i` in `0..n`, on the calling thread and the pool's helpers; returns when all have run. A
/// panic in `body` is raised again here once no thread runs `body` any more.
pub fn for_each(n: usize, body: &(dyn Fn(usize) + Sync)) {
    let pool = pool();
    let guard = match pool.busy.try_lock() {
        Ok(g) if n <= MAX_ITEMS && !pool.helpers.is_empty() => g,
        _ => {
            use rayon::prelude::*;
            return (0..n).into_par_iter().for_each(body);
        }
    };
    let (s, threads) = (pool.shared, pool.helpers.len() + 1);
    while s.in_flight.load(SeqCst) != 0 {
        std::hint::spin_loop();
    }
    let epoch = ((s.counter.load(SeqCst) >> (2 * IDX_BITS)) + 1) & EPOCH_MASK;
    // SAFETY: no helper is inside a loop (`in_flight` is 0) and the new epoch is not yet published, so nothing reads
    // `body`; the lifetime is erased, and the pointer is only called before this function returns (below).
    unsafe { *s.body.get() = Some(std::mem::transmute::<&(dyn Fn(usize) + Sync), Body>(body)) };
    s.counter.store(epoch << (2 * IDX_BITS) | n as u64, SeqCst);
    for (i, thread) in &pool.helpers {
        if s.parked[*i].swap(false, SeqCst) {
            thread.unpark();
        }
    }
    // Caught, so that this function does not return while a helper may still call `body`.
    let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        while let Some(run) = claim(s, epoch, threads) {
            run.for_each(body);
        }
    }));
    while s.in_flight.load(SeqCst) != 0 {
        std::hint::spin_loop();
    }
    let helper_panicked = s.panicked.swap(false, SeqCst);
    drop(guard);
    if let Err(payload) = mine {
        std::panic::resume_unwind(payload);
    }
    assert!(!helper_panicked, "smallmm: a loop body panicked on a helper thread");
}

/// `f(i)` for every `i` in `0..n` as [`for_each`] runs them, collected in order.
pub fn map<T: Send + Sync>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let slots: Vec<OnceLock<T>> = (0..n).map(|_| OnceLock::new()).collect();
    for_each(n, &|i| {
        // Each index runs once, so the slot is empty.
        let _ = slots[i].set(f(i));
    });
    slots.into_iter().map(|s| s.into_inner().expect("for_each ran every index")).collect()
}

/// The next unclaimed iterations of loop `epoch`, if any: a run of consecutive ones, a share of those left that
/// shrinks as the loop nears its end (OpenMP's "guided" schedule), so that each thread reads one stretch of weights
/// at a time (which the kernel's prefetching into the next block relies on) and the threads still finish together.
fn claim(s: &Shared, epoch: u64, threads: usize) -> Option<std::ops::Range<usize>> {
    let mut v = s.counter.load(SeqCst);
    loop {
        let (e, next, n) = (v >> (2 * IDX_BITS), (v >> IDX_BITS) & MASK, v & MASK);
        if e != epoch || next >= n {
            return None;
        }
        let take = ((n - next) / (2 * threads as u64)).max(1);
        match s.counter.compare_exchange_weak(v, v + (take << IDX_BITS), SeqCst, SeqCst) {
            Ok(_) => return Some(next as usize..(next + take) as usize),
            Err(now) => v = now,
        }
    }
}

/// Whether the counter holds a loop with iterations left.
fn open(v: u64) -> bool {
    (v >> IDX_BITS) & MASK < v & MASK
}

fn helper(s: &'static Shared, me: usize, threads: usize) {
    let mut idle_since = Instant::now();
    loop {
        let v = s.counter.load(SeqCst);
        if !open(v) {
            if idle_since.elapsed() < SPIN {
                // Yield, not just spin: a thread that has work on this core (rayon's, libtorch's OpenMP team) runs
                // first, and with none the call returns at once.
                std::thread::yield_now();
            } else {
                s.parked[me].store(true, SeqCst);
                // A loop published between the load above and the flag would not unpark us: look again.
                if !open(s.counter.load(SeqCst)) {
                    std::thread::park();
                }
                s.parked[me].store(false, SeqCst);
                idle_since = Instant::now();
            }
            continue;
        }
        s.in_flight.fetch_add(1, SeqCst);
        let epoch = s.counter.load(SeqCst) >> (2 * IDX_BITS);
        while let Some(run) = claim(s, epoch, threads) {
            // SAFETY: a successful claim in `epoch` means its caller is still waiting for `in_flight` (which counts
            // this thread) to reach 0, so the body it published before the epoch is alive and unchanged.
            let body = unsafe { &*(*s.body.get()).expect("published with its epoch") };
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run.for_each(body)))
                .is_err()
            {
                s.panicked.store(true, SeqCst);
            }
        }
        s.in_flight.fetch_sub(1, SeqCst);
        idle_since = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Runs `for_each` over `n` and checks each index ran exactly once.
    fn check_once(n: usize) {
        let counts: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
        for_each(n, &|i| {
            counts[i].fetch_add(1, SeqCst);
        });
        for (i, c) in counts.iter().enumerate() {
            assert_eq!(c.load(SeqCst), 1, "index {i} of {n}");
        }
    }

    #[test]
    fn every_index_runs_once() {
        for round in 0..400 {
            check_once(round % 97);
        }
        check_once(5000);
        // More iterations than the counter holds: through rayon.
        check_once(MAX_ITEMS + 3);
        // Loops far apart, so the helpers park between them and must be woken.
        for n in [3, 64] {
            std::thread::sleep(SPIN * 2);
            check_once(n);
        }
    }

    #[test]
    fn several_callers_at_once() {
        std::thread::scope(|scope| {
            for t in 0..4 {
                scope.spawn(move || {
                    for round in 0..200 {
                        check_once((round * 7 + t) % 150);
                    }
                });
            }
        });
    }

    #[test]
    fn map_keeps_the_order() {
        assert_eq!(map(1000, |i| i * 3), (0..1000).map(|i| i * 3).collect::<Vec<_>>());
        assert!(map(0, |i| i).is_empty());
    }

    #[test]
    fn a_panicking_body_panics_the_caller_and_the_pool_goes_on() {
        for bad in [0, 57, 999] {
            let r = std::panic::catch_unwind(|| {
                for_each(1000, &|i| assert_ne!(i, bad, "the body's own panic"));
            });
            assert!(r.is_err(), "index {bad}");
            check_once(1000);
        }
    }

    /// CPU time (user + system, in clock ticks) of this process's threads named `name`, from /proc.
    #[cfg(target_os = "linux")]
    fn cpu_ticks_of(name: &str) -> Option<u64> {
        let mut total = None;
        for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim() != name {
                continue;
            }
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            // Fields after the parenthesised name: state is field 3, utime 14 and stime 15.
            let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let (user, system): (u64, u64) =
                (rest.get(11)?.parse().ok()?, rest.get(12)?.parse().ok()?);
            *total.get_or_insert(0) += user + system;
        }
        total
    }

    /// An idle pool costs nothing: after its spin the helper parks and uses no CPU time. Checked in a child copy of
    /// the test binary running this test alone, where no other test's loop can wake the helper.
    #[cfg(target_os = "linux")]
    #[test]
    fn an_idle_helper_parks() {
        const CHILD: &str = "SMALLMM_POOL_IDLE_CHILD";
        if std::env::var_os(CHILD).is_none() {
            let exe = std::env::current_exe().expect("the test binary");
            let out = std::process::Command::new(exe)
                .args(["pool::tests::an_idle_helper_parks", "--exact", "--test-threads", "1"])
                .env(CHILD, "1")
                .env("RAYON_NUM_THREADS", "2")
                .output()
                .expect("running the test binary");
            let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && text.contains("1 passed"), "child test:\n{text}");
            return;
        }
        check_once(1000);
        assert_eq!(pool().helpers.len(), 1, "RAYON_NUM_THREADS=2: the caller and one helper");
        let ticks = || cpu_ticks_of("smallmm-0").expect("the helper thread is listed in /proc");
        std::thread::sleep(SPIN * 5);
        let before = ticks();
        std::thread::sleep(Duration::from_millis(300));
        let after = ticks();
        // A helper still spinning would have taken about 30 ticks in 300 ms.
        assert!(after - before <= 2, "the idle helper used {} ticks in 300 ms", after - before);
    }

    /// Claims take runs that cover the loop once, in order, and none of another epoch: also where the epoch wraps.
    #[test]
    fn claims_cover_the_loop_once_across_the_epoch_wrap() {
        let s = Shared {
            counter: AtomicU64::new(EPOCH_MASK << (2 * IDX_BITS) | 5),
            body: UnsafeCell::new(None),
            in_flight: AtomicUsize::new(0),
            parked: Vec::new(),
            panicked: AtomicBool::new(false),
        };
        assert_eq!(claim(&s, EPOCH_MASK, 2), Some(0..1), "5 / 4 rounds down to 1");
        let epoch = (EPOCH_MASK + 1) & EPOCH_MASK;
        assert_eq!(epoch, 0);
        s.counter.store(epoch << (2 * IDX_BITS) | 1000, SeqCst);
        assert_eq!(claim(&s, EPOCH_MASK, 2), None, "a claim of the old loop");
        let mut next = 0;
        while let Some(run) = claim(&s, epoch, 2) {
            assert_eq!(run.start, next);
            assert!(!run.is_empty());
            next = run.end;
        }
        assert_eq!(next, 1000);
    }
}
