//! Speed against libtorch, in GB/s of weights read (issue 14). Not a test: run it in release, alone on the machine,
//!
//! ```sh
//! cargo test --release -p smallmm --test bench -- --ignored --nocapture --test-threads 1
//! ```
//!
//! The contenders of one table row take turns in blocks (`BLOCKS` rounds of `SETTLE` idle, one warm-up and
//! `PER_BLOCK` timed calls each), so each is timed in its steady state and a disturbance of the shared machine
//! spreads over all; cells are the median and, in brackets, the best call. Every call reads its weights from memory,
//! not from cache: the output head (263 MB in f32) is larger than the L3 cache, and the layer shapes cycle through
//! enough copies to exceed it, as in decoding, where the head's read evicts the layers' weights. libtorch's OpenMP workers
//! keep spinning for milliseconds after a parallel op (libgomp's default wait policy) and slow whatever runs next on
//! a 2-core machine; `after_a_libtorch_op` measures that on its own.
#![cfg(feature = "tch")]

use rayon::prelude::*;
use smallmm::{try_linear, Backend};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

const BLOCKS: usize = 3;
const PER_BLOCK: usize = 5;
/// Idle time before each block: libtorch's OpenMP workers stop spinning, so the block after libtorch's is not slowed.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(50);
/// Copies of a small weight matrix cycled through so that each call reads from memory (> the 32 MB L3).
const CYCLE_BYTES: usize = 96 << 20;

/// Seconds per call of each contender: (median, best). Each gets the number of its call.
fn race(contenders: &mut [&mut dyn FnMut(usize)]) -> Vec<(f64, f64)> {
    let mut times = vec![Vec::with_capacity(BLOCKS * PER_BLOCK); contenders.len()];
    for block in 0..BLOCKS {
        for (f, t) in contenders.iter_mut().zip(&mut times) {
            std::thread::sleep(SETTLE);
            for call in 0..=PER_BLOCK {
                let start = Instant::now();
                f(block * (PER_BLOCK + 1) + call);
                if call > 0 {
                    t.push(start.elapsed().as_secs_f64());
                }
            }
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            (t[t.len() / 2], t[0])
        })
        .collect()
}

fn gbs(bytes: f64, (median, best): (f64, f64)) -> String {
    format!("{:.1} ({:.1}) GB/s, {:.2} ms", bytes / median / 1e9, bytes / best / 1e9, median * 1e3)
}

/// One read of the words by a vectorised sum over rayon's threads: the memory bound the product can reach.
fn rust_read(words: &[u64]) -> u64 {
    words
        .par_chunks(1 << 14)
        .map(|c| c.iter().fold(0u64, |a, &v| a.wrapping_add(v)))
        .reduce(|| 0, u64::wrapping_add)
}

fn as_words(w: &Tensor) -> &[u64] {
    let bytes = w.numel() * w.kind().elt_size_in_bytes();
    // SAFETY: `w` is a contiguous CPU tensor of `bytes` bytes, allocated 64-byte aligned by libtorch, alive as long as
    // the borrow.
    unsafe { std::slice::from_raw_parts(w.data_ptr() as *const u64, bytes / 8) }
}

/// `E hᵀ` as `gemma::Gemma::logits_decode` computes it since 2026-12-02 (one row padded to two).
fn logits_decode(x: &Tensor, w: &Tensor) -> Tensor {
    let rows = x.size()[0];
    let h = if rows == 1 { x.repeat([2, 1]) } else { x.shallow_clone() };
    w.matmul(&h.tr()).tr().narrow(0, 0, rows).contiguous()
}

/// The product on a given backend through the slice API (x f32, weights as stored).
/// Nothing on a CPU that cannot run `b` (its column then shows "-").
fn slice_product(b: Backend, x: &[f32], w: &Tensor, out: &mut [f32]) {
    if !b.supported() {
        return;
    }
    let (n, k) = (w.size()[0] as usize, w.size()[1] as usize);
    let rows = x.len() / k;
    // SAFETY: `w` is a contiguous CPU tensor of n × k elements of its kind.
    unsafe {
        if w.kind() == Kind::Float {
            let ws = std::slice::from_raw_parts(w.data_ptr() as *const f32, n * k);
            smallmm::matmul_rows_f32_on(b, x, rows, k, ws, n, out);
        } else {
            let ws = std::slice::from_raw_parts(w.data_ptr() as *const u16, n * k);
            smallmm::matmul_rows_bf16_on(b, x, rows, k, ws, n, out);
        }
    }
}

/// bf16 rows by bf16 weights through the slice API (AVX-512 BF16); nothing where the CPU lacks it or either is not
/// bf16 (its column then shows "-").
fn dot_product(x: &Tensor, w: &Tensor, out: &mut [f32]) {
    let (n, k) = (w.size()[0] as usize, w.size()[1] as usize);
    if !(x.kind() == Kind::BFloat16 && w.kind() == Kind::BFloat16 && smallmm::bf16_dot(k)) {
        return;
    }
    // SAFETY: both are contiguous bf16 CPU tensors (x fresh from `to_kind`, w checked by the caller's construction).
    unsafe {
        let xs = std::slice::from_raw_parts(x.data_ptr() as *const u16, x.numel());
        let ws = std::slice::from_raw_parts(w.data_ptr() as *const u16, n * k);
        smallmm::matmul_rows_bf16_dot(xs, x.numel() / k, k, ws, n, out);
    }
}

fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?");
    format!(
        "{}, {} CPUs; libtorch threads {}, rayon threads {}; load average {}",
        model.trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        tch::get_num_threads(),
        rayon::current_num_threads(),
        load()
    )
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The output head, `h Eᵀ` with E 257,216 × 256 (the mid-size benchmark model's tied table), f32 and bf16 weights.
#[test]
#[ignore = "benchmark: run in release, alone"]
fn output_head() {
    let _guard = tch::no_grad_guard();
    println!("{}; smallmm backend {:?}", machine(), Backend::best());
    tch::manual_seed(0);
    let w = Tensor::randn([257_216, 256], (Kind::Float, Device::Cpu)) * 0.03;
    let wb = w.to_kind(Kind::BFloat16);
    for w in [&w, &wb] {
        let bytes = (w.numel() * w.kind().elt_size_in_bytes()) as f64;
        let words = as_words(w);
        let reads = race(&mut [
            &mut |_| {
                std::hint::black_box(rust_read(words));
            },
            &mut |_| drop(std::hint::black_box(w.sum(Kind::Float))),
        ]);
        println!(
            "\n{:?} weights, {:.0} MB; one read: Rust {}, libtorch `w.sum()` {}",
            w.kind(),
            bytes / 1e6,
            gbs(bytes, reads[0]),
            gbs(bytes, reads[1])
        );
        println!(
            "| rows | `smallmm::linear` ({:?}) | slices, Avx512 | slices, Avx2 | slices, bf16 dot | libtorch \
             `x.matmul(wᵀ)` | libtorch `logits_decode` |",
            Backend::best()
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|");
        for rows in [1, 2, 3, 8, 24, 32] {
            let x = Tensor::randn([rows, 256], (Kind::Float, Device::Cpu)) * 3.0;
            let xs = Vec::<f32>::try_from(&x.view(-1)).unwrap();
            // Rows of the weights' dtype, as decoding gives them: for bf16, `linear` multiplies bf16 by bf16 (AVX-512
            // BF16 where the CPU has it), as libtorch does; the slice columns take the f32 rows, widening the weights.
            let xt = x.to_kind(w.kind());
            let mut out = vec![0.0; rows as usize * 257_216];
            let mut out2 = vec![0.0; rows as usize * 257_216];
            let mut out3 = vec![0.0; rows as usize * 257_216];
            let t = race(&mut [
                &mut |_| drop(std::hint::black_box(try_linear(&xt, w).unwrap())),
                &mut |_| slice_product(Backend::Avx512, &xs, w, &mut out),
                &mut |_| slice_product(Backend::Avx2, &xs, w, &mut out2),
                &mut |_| dot_product(&xt, w, &mut out3),
                &mut |_| drop(std::hint::black_box(xt.matmul(&w.tr()))),
                &mut |_| drop(std::hint::black_box(logits_decode(&xt, w))),
            ]);
            let mut cells: Vec<String> = t.into_iter().map(|t| gbs(bytes, t)).collect();
            for (cell, b) in cells[1..3].iter_mut().zip([Backend::Avx512, Backend::Avx2]) {
                if !b.supported() {
                    *cell = "-".into();
                }
            }
            if !(w.kind() == Kind::BFloat16 && smallmm::bf16_dot(256)) {
                cells[3] = "-".into();
            }
            println!("| {rows} | {} |", cells.join(" | "));
        }
    }
    println!("\nload average at the end: {}", load());
}

/// The decoder's linear layers (mid-size model: 256 wide, KV 64, MLP 2048; PaliGemma 3B: 2048 wide, KV 256, MLP
/// 16384) and the head, weights read from memory, microseconds per call: where the crate wins decides
/// `smallmm::chosen`.
#[test]
#[ignore = "benchmark: run in release, alone"]
fn layer_shapes() {
    let _guard = tch::no_grad_guard();
    println!(
        "{}; smallmm backend {:?}; weights cycled through {} MB",
        machine(),
        Backend::best(),
        CYCLE_BYTES >> 20
    );
    println!(
        "| n × k | dtype | weight bytes | rows | smallmm µs | libtorch `linear` µs | speed-up |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    let shapes = [
        (16, 256),
        (64, 256),
        (256, 256),
        (2048, 256),
        (256, 2048),
        (2048, 2048),
        (256, 16384),
        (16384, 2048),
    ];
    for (n, k) in shapes {
        for kind in [Kind::Float, Kind::BFloat16] {
            let bytes = n * k * kind.elt_size_in_bytes();
            let copies = (CYCLE_BYTES / bytes).max(1);
            let ws: Vec<Tensor> = (0..copies)
                .map(|_| {
                    (Tensor::randn([n as i64, k as i64], (Kind::Float, Device::Cpu)) * 0.03)
                        .to_kind(kind)
                })
                .collect();
            for rows in [1, 8, 32] {
                let x = (Tensor::randn([rows, k as i64], (Kind::Float, Device::Cpu)) * 3.0)
                    .to_kind(kind);
                // Consecutive calls take different copies: the two contenders alternate, hence `2 * call`.
                let t = race(&mut [
                    &mut |call| {
                        drop(std::hint::black_box(
                            try_linear(&x, &ws[(2 * call) % copies]).unwrap(),
                        ))
                    },
                    &mut |call| {
                        drop(std::hint::black_box(
                            x.linear::<Tensor>(&ws[(2 * call + 1) % copies], None),
                        ))
                    },
                ]);
                let (ours, torch) = (t[0].0, t[1].0);
                println!(
                    "| {n} × {k} | {kind:?} | {bytes} | {rows} | {:.1} | {:.1} | {:.2}x |",
                    ours * 1e6,
                    torch * 1e6,
                    torch / ours
                );
            }
        }
    }
    println!("\nload average at the end: {}", load());
}

/// The head's product right after a small libtorch op (an element-wise add over 4 MB, which libtorch runs on its
/// OpenMP threads; its time, about 0.2 ms, is included) against back to back.
#[test]
#[ignore = "benchmark: run in release, alone"]
fn after_a_libtorch_op() {
    let _guard = tch::no_grad_guard();
    println!("{}; OMP_WAIT_POLICY={:?}", machine(), std::env::var("OMP_WAIT_POLICY").ok());
    let w = Tensor::randn([257_216, 256], (Kind::Float, Device::Cpu)) * 0.03;
    let bytes = (257_216 * 256 * 4) as f64;
    let other = Tensor::randn([1 << 20], (Kind::Float, Device::Cpu));
    println!("| rows | smallmm | smallmm after a libtorch op | logits_decode | logits_decode after a libtorch op |");
    println!("|---:|---:|---:|---:|---:|");
    for rows in [1, 8, 32] {
        let x = Tensor::randn([rows, 256], (Kind::Float, Device::Cpu)) * 3.0;
        let op = || drop(std::hint::black_box(&other + 1.0));
        let t = race(&mut [
            &mut |_| drop(std::hint::black_box(try_linear(&x, &w).unwrap())),
            &mut |_| {
                op();
                drop(std::hint::black_box(try_linear(&x, &w).unwrap()))
            },
            &mut |_| drop(std::hint::black_box(logits_decode(&x, &w))),
            &mut |_| {
                op();
                drop(std::hint::black_box(logits_decode(&x, &w)))
            },
        ]);
        let cells: Vec<String> = t.into_iter().map(|t| gbs(bytes, t)).collect();
        println!("| {rows} | {} |", cells.join(" | "));
    }
}
