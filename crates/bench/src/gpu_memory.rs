//! Peak GPU memory of this process on CUDA runs, sampled from `nvidia-smi --query-compute-apps` every 100 ms (tch
//! exposes no CUDA allocator statistics). The Python worker samples the same way, so both figures include the CUDA
//! context and allocator caching and are comparable; a sampling peak can miss spikes shorter than the interval.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Sampler {
    stop: Arc<AtomicBool>,
    peak_mib: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

fn used_mib(pid: u32) -> Option<u64> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let (p, m) = l.split_once(',')?;
        (p.trim().parse::<u32>().ok()? == pid).then(|| m.trim().parse().ok())?
    })
}

impl Sampler {
    pub fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_mib = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak_mib.clone());
        let pid = std::process::id();
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(m) = used_mib(pid) {
                    p.fetch_max(m, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Self { stop, peak_mib, handle: Some(handle) }
    }

    /// Stops sampling; the peak in bytes (`None` if nvidia-smi never reported this process).
    pub fn finish(mut self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let m = self.peak_mib.load(Ordering::Relaxed);
        (m > 0).then_some(m << 20)
    }
}
