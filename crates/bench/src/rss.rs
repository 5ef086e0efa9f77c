//! Resident memory of this process from `/proc/self/status` (Linux): `VmRSS` now and `VmHWM`, the peak, which
//! `reset_peak` sets back to the current RSS (`/proc/self/clear_refs` = 5, Linux 4.0+). The Python worker measures
//! itself the same way, so the two sides' figures mean the same thing.

fn status_bytes(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

pub fn current() -> u64 {
    status_bytes("VmRSS")
}

pub fn peak() -> u64 {
    status_bytes("VmHWM")
}

/// Starts a new peak measurement from the current RSS; false where the kernel does not allow it.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Held by the crate's tests that allocate large buffers, so that another test's memory does not come or go while
/// this one reads the process's RSS (a 12 MB buffer freed meanwhile made 64 MB look like 59.6).
#[cfg(test)]
pub(crate) static LARGE_ALLOCATIONS: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
mod tests {
    #[test]
    fn peak_follows_an_allocation_and_resets() {
        let _alone = super::LARGE_ALLOCATIONS.lock().unwrap_or_else(|e| e.into_inner());
        let before = super::current();
        assert!(before > 0, "no /proc/self/status?");
        let big = vec![1u8; 64 << 20];
        std::hint::black_box(&big);
        let during = super::peak();
        assert!(during >= before + (60 << 20), "{during} vs {before}");
        drop(big);
        if super::reset_peak() {
            assert!(super::peak() < during - (32 << 20));
        }
    }
}
