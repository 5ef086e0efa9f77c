//! The process's memory settings for captioning on the CPU: glibc's allocator told to keep large freed blocks for
//! reuse ([`keep_freed_memory`]), and libtorch's large tensors in transparent huge pages
//! ([`huge_pages_for_large_tensors`]).
//!
//! By default glibc serves blocks from 128 KiB up (the threshold rises with use, to at most 32 MiB) with a fresh
//! `mmap` and hands them back to the system on `free`, and trims the heap's free top above twice that. A captioning
//! call allocates and frees the same large tensors over and over (the vision tower's and the prefill's activations,
//! a step's logits: 8 MiB at batch 8), so each time their pages are faulted in and zeroed again. On the project's
//! 2-core VM a page fault costs about 1.6 µs: allocating, filling and freeing 8 MiB took 3.4 ms fresh from the
//! system against 0.08 ms reused (docs/benchmarks.md, issue 14, step 13). With blocks up to 64 MiB kept in the heap
//! and up to 256 MiB of free heap kept, the benchmark's captioning process faulted about 220k pages instead of
//! 557-827k (nearly all of them now from loading the model), its first token came 13-38% sooner and its peak RSS
//! stayed within 30 MiB.
//! PyTorch's CPU performance guide gives the same advice through jemalloc or tcmalloc
//! (<https://pytorch.org/tutorials/recipes/recipes/tuning_guide.html>); these two settings need neither.
//!
//! Huge pages: a decoding step streams every weight of the language model once (291 MB for the benchmark's mid-size
//! model), and in 4 KiB pages each page is a TLB miss and a page the hardware prefetchers stop at. libtorch puts
//! blocks of 2 MiB and more in transparent huge pages when `THP_MEM_ALLOC_ENABLE=1` (`c10::alloc_cpu`: 2 MiB aligned,
//! `madvise(MADV_HUGEPAGE)`), which the kernel honours in its default `madvise` mode. Measured on the project's VM
//! (docs/benchmarks.md, issue 14, step 14): the f32 output head 3-6% faster alternating in one process, decoding steps
//! 1-13% shorter (medians of 4 alternating worker runs per case; beam 3 at batch 8 within noise), peak RSS unchanged.
//!
//! Process-wide, so a library never sets either on its own: `pgrs caption`, `pgrs eval` and `bench generate`'s
//! worker call [`for_captioning`] first, which applies both. Training does not (its peak memory is measured and
//! planned as it is). A user's own settings win: the allocator's are left alone when `GLIBC_TUNABLES` names a
//! `glibc.malloc.` tunable or any `MALLOC_` variable is set (glibc's `MALLOC_ARENA_MAX`, `MALLOC_TOP_PAD_`, …;
//! jemalloc's `MALLOC_CONF`), or off glibc; huge pages when `THP_MEM_ALLOC_ENABLE` is set to anything, or the kernel
//! has them off.

/// What [`for_captioning`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemorySettings {
    pub allocator: AllocatorTuning,
    pub huge_pages: HugePages,
}

/// Both settings of this module, as a captioning process wants them: [`keep_freed_memory`] and
/// [`huge_pages_for_large_tensors`]. Call it first thing in a binary, before any tensor exists (libtorch reads the
/// huge-page setting at its first allocation) and while the process has one thread.
pub fn for_captioning() -> MemorySettings {
    MemorySettings { allocator: keep_freed_memory(), huge_pages: huge_pages_for_large_tensors() }
}

/// glibc's `M_MMAP_THRESHOLD`: blocks below it come from the heap (and stay there when freed).
pub const MMAP_THRESHOLD: usize = 64 << 20;
/// glibc's `M_TRIM_THRESHOLD`: free memory at the top of the heap kept up to this much.
pub const TRIM_THRESHOLD: usize = 256 << 20;

/// What [`keep_freed_memory`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocatorTuning {
    /// Both thresholds set.
    Applied,
    /// The environment configures glibc's allocator already: left as the user set it.
    UserSettings,
    /// Not glibc (or glibc refused the values): nothing changed.
    Unavailable,
}

/// Sets glibc's mmap and trim thresholds to [`MMAP_THRESHOLD`] and [`TRIM_THRESHOLD`] for this process unless the
/// environment already configures its allocator (see the module header). Call it once, early, from a binary.
pub fn keep_freed_memory() -> AllocatorTuning {
    let tunables = std::env::var("GLIBC_TUNABLES").ok();
    let names: Vec<String> =
        std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()).collect();
    let tuning = if user_configured(tunables.as_deref(), names.iter().map(String::as_str)) {
        AllocatorTuning::UserSettings
    } else {
        set_thresholds()
    };
    tracing::debug!(?tuning, "glibc allocator thresholds");
    tuning
}

/// Whether the environment (`GLIBC_TUNABLES` and the variables' names) configures the allocator: a `glibc.malloc.`
/// tunable, or any `MALLOC_` variable.
fn user_configured<'a>(
    glibc_tunables: Option<&str>,
    mut names: impl Iterator<Item = &'a str>,
) -> bool {
    names.any(|k| k.starts_with("MALLOC_"))
        || glibc_tunables
            .is_some_and(|t| t.split(':').any(|kv| kv.trim().starts_with("glibc.malloc.")))
}

/// The environment variable libtorch reads (once, at its first CPU allocation) to put blocks of 2 MiB and more in
/// transparent huge pages.
pub const THP_ENV: &str = "THP_MEM_ALLOC_ENABLE";

/// Where the kernel says whether transparent huge pages are on (`always [madvise] never`).
const THP_MODE: &str = "/sys/kernel/mm/transparent_hugepage/enabled";

/// What [`huge_pages_for_large_tensors`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HugePages {
    /// `THP_MEM_ALLOC_ENABLE=1` set for libtorch.
    Enabled,
    /// The environment sets `THP_MEM_ALLOC_ENABLE` already: left as the user set it.
    UserSetting,
    /// The kernel has no transparent huge pages, or has them off: nothing changed.
    Unavailable,
}

/// Asks libtorch to put its blocks of 2 MiB and more (the weights, the larger activations) in transparent huge pages
/// (see the module header), unless the environment sets `THP_MEM_ALLOC_ENABLE` or the kernel has them off. libtorch
/// reads the variable once, at its first CPU allocation: call this before any tensor exists, from a binary, while the
/// process has one thread (it sets an environment variable).
pub fn huge_pages_for_large_tensors() -> HugePages {
    let mode = std::fs::read_to_string(THP_MODE).ok();
    let outcome = huge_pages_outcome(std::env::var_os(THP_ENV).is_some(), mode.as_deref());
    if outcome == HugePages::Enabled {
        std::env::set_var(THP_ENV, "1");
    }
    tracing::debug!(?outcome, "libtorch's huge pages");
    outcome
}

/// The decision of [`huge_pages_for_large_tensors`] from whether the user set the variable and the kernel's mode.
fn huge_pages_outcome(user_set: bool, kernel_mode: Option<&str>) -> HugePages {
    if user_set {
        HugePages::UserSetting
    } else if kernel_mode.is_some_and(|m| m.contains("[always]") || m.contains("[madvise]")) {
        HugePages::Enabled
    } else {
        HugePages::Unavailable
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> AllocatorTuning {
    // SAFETY: mallopt only sets allocator parameters; both values are positive and fit an int.
    let ok = unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int) == 1
    };
    if ok {
        AllocatorTuning::Applied
    } else {
        AllocatorTuning::Unavailable
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> AllocatorTuning {
    AllocatorTuning::Unavailable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_settings_are_recognised() {
        let none = || std::iter::empty();
        assert!(!user_configured(None, none()));
        assert!(!user_configured(Some(""), none()));
        assert!(!user_configured(Some("glibc.pthread.rseq=0"), ["PATH", "HOME"].into_iter()));
        assert!(!user_configured(None, ["MY_MALLOC_", "OMP_NUM_THREADS"].into_iter()));
        assert!(user_configured(Some("glibc.malloc.mmap_threshold=1048576"), none()));
        assert!(user_configured(Some("glibc.pthread.rseq=0:glibc.malloc.arena_max=2"), none()));
        for var in ["MALLOC_ARENA_MAX", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_CONF"]
        {
            assert!(user_configured(None, ["PATH", var].into_iter()), "{var}");
        }
    }

    #[test]
    fn huge_pages_follow_the_user_and_the_kernel() {
        let on = Some("always [madvise] never\n");
        assert_eq!(huge_pages_outcome(false, on), HugePages::Enabled);
        assert_eq!(huge_pages_outcome(false, Some("[always] madvise never")), HugePages::Enabled);
        assert_eq!(
            huge_pages_outcome(false, Some("always madvise [never]")),
            HugePages::Unavailable
        );
        assert_eq!(huge_pages_outcome(false, None), HugePages::Unavailable);
        assert_eq!(huge_pages_outcome(true, on), HugePages::UserSetting);
    }

    /// Set by [`libtorch_puts_large_tensors_in_huge_pages`] for the copy of this test binary it runs.
    const CHILD: &str = "PGRS_TEST_HUGE_PAGES_CHILD";

    /// The property the setting is for, in a fresh process (libtorch reads the variable at its first allocation,
    /// and the other tests of this binary allocate tensors): after [`huge_pages_for_large_tensors`], a 64 MiB
    /// tensor lies (partly) in huge pages. The test runs this binary again with only itself selected.
    #[cfg(target_os = "linux")]
    #[test]
    fn libtorch_puts_large_tensors_in_huge_pages() {
        let huge_kb = || {
            let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
            rollup
                .lines()
                .find_map(|l| l.strip_prefix("AnonHugePages:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        if std::env::var_os(CHILD).is_some() {
            assert_eq!(huge_pages_for_large_tensors(), HugePages::Enabled);
            let before = huge_kb();
            let t = tch::Tensor::ones([16 << 20], (tch::Kind::Float, tch::Device::Cpu));
            let after = huge_kb();
            assert!(
                after >= before + 2048,
                "AnonHugePages {before} -> {after} kB with a 64 MiB tensor"
            );
            drop(t);
            return;
        }
        let mode = std::fs::read_to_string(THP_MODE).ok();
        if huge_pages_outcome(false, mode.as_deref()) != HugePages::Enabled {
            eprintln!("transparent huge pages off in this kernel: not tested");
            return;
        }
        let exe = std::env::current_exe().expect("the test binary");
        let name = "allocator::tests::libtorch_puts_large_tensors_in_huge_pages";
        let out = std::process::Command::new(exe)
            .args([name, "--exact", "--test-threads", "1"])
            .env(CHILD, "1")
            .env_remove(THP_ENV)
            .output()
            .expect("running the test binary");
        let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && text.contains("1 passed"), "child test:\n{text}");
    }

    /// The property the setting is for: a block of 48 MiB (above the 32 MiB that glibc's own threshold can reach,
    /// so by default always a fresh `mmap`) freed and allocated again faults in (almost) no page the second time.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_large_block_freed_is_reused_without_page_faults() {
        // Process-wide: the other tests of this binary run with the setting too, as `pgrs caption` does.
        if keep_freed_memory() != AllocatorTuning::Applied {
            eprintln!("allocator settings from the environment: not tested");
            return;
        }
        let faults = || {
            // SAFETY: getrusage fills the struct it is given.
            let mut u: libc::rusage = unsafe { std::mem::zeroed() };
            assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) }, 0);
            u.ru_minflt
        };
        const LEN: usize = 48 << 20;
        let touch = || {
            let v = vec![1u8; LEN];
            std::hint::black_box(&v);
        };
        touch();
        let before = faults();
        touch();
        let again = faults() - before;
        let pages = (LEN / 4096) as i64;
        assert!(again < pages / 10, "{again} page faults for {pages} pages reused");
    }
}
