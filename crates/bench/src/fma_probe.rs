//! The machine's f32 multiply-add rate, measured in the run that reports against it: the other physical bound of a
//! cached decoding step (issue 14). A step with r rows does r multiply-adds per weight it reads, so from some number
//! of rows on (about 16-24 with AVX-512 on the 2-core development machine) multiplying takes longer than reading, and
//! `multiply-adds / this rate` is the bound instead of `bytes / read speed`.
//!
//! The probe is the textbook peak loop: 12 independent vector accumulators per thread (more than the multiply-add
//! latency times the number of FMA ports on current x86 cores), one fused multiply-add per accumulator per
//! iteration, on the widest vectors the CPU has (AVX-512F, else AVX2 + FMA, chosen at run time); no memory traffic.
use std::time::Instant;

/// Iterations per thread and call: 192 multiply-adds each with AVX-512, about 10-20 ms per call.
const ITERS: usize = 1 << 20;

/// f32 multiply-adds per second on `threads` threads (median of 7 calls), or `None` on a CPU without AVX2 + FMA
/// (and off x86-64), where no comparable kernel runs either.
pub fn measure(threads: usize) -> anyhow::Result<Option<f64>> {
    let Some((kernel, per_iter)) = kernel() else { return Ok(None) };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build()?;
    let call = || {
        let started = Instant::now();
        let sums = pool.broadcast(|_| kernel(std::hint::black_box(ITERS)));
        std::hint::black_box(sums);
        started.elapsed().as_secs_f64()
    };
    call();
    let mut times: Vec<f64> = (0..7).map(|_| call()).collect();
    times.sort_by(f64::total_cmp);
    let fmas = (threads.max(1) * ITERS * per_iter) as f64;
    Ok(Some(fmas / times[times.len() / 2]))
}

/// A probe loop (iterations -> a sum to keep) and its multiply-adds per iteration.
type Probe = (fn(usize) -> f32, usize);

/// The widest probe this CPU runs.
#[allow(unreachable_code)]
fn kernel() -> Option<Probe> {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked above).
            return Some((|n| unsafe { x86::avx512(n) }, 12 * 16));
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            return Some((|n| unsafe { x86::avx2(n) }, 12 * 8));
        }
    }
    None
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn avx512(iters: usize) -> f32 {
        let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        let mut acc = [_mm512_setzero_ps(); 12];
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        acc.iter().map(|&v| _mm512_reduce_add_ps(v)).sum()
    }

    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2(iters: usize) -> f32 {
        let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        let mut acc = [_mm256_setzero_ps(); 12];
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        let mut lanes = [0.0f32; 8];
        acc.iter()
            .map(|&v| {
                _mm256_storeu_ps(lanes.as_mut_ptr(), v);
                lanes.iter().sum::<f32>()
            })
            .sum()
    }
}
