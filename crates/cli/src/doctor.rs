//! `doctor`: what libtorch this binary really runs with, and whether it can use the GPU as users expect.
//! Every problem found comes with its fix.
use anyhow::Result;
use tch::{Cuda, Device, Kind, Tensor};

fn loaded_libraries() -> Vec<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut libs: Vec<String> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.contains("libtorch") || p.contains("libc10"))
        .map(String::from)
        .collect();
    libs.sort();
    libs.dedup();
    libs
}

fn cpu_flags() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default()
        .to_string()
}

pub fn run() -> Result<i32> {
    let mut problems = 0;
    let mut problem = |what: String, fix: &str| {
        problems += 1;
        println!("  PROBLEM: {what}\n      fix: {fix}");
    };
    // Touch libtorch so its libraries are mapped.
    let probe = Tensor::ones([64, 64], (Kind::Float, Device::Cpu))
        .matmul(&Tensor::ones([64, 64], (Kind::Float, Device::Cpu)));
    let ok = f64::try_from(probe.sum(Kind::Float)).unwrap_or(0.0) == 64.0 * 64.0 * 64.0;
    let libs = loaded_libraries();
    let cpu_lib = libs.iter().find(|l| l.ends_with("libtorch_cpu.so")).cloned().unwrap_or_default();
    println!(
        "  libtorch:  2.13.0 (tch 0.26), {}",
        if cpu_lib.is_empty() { "not found in the process map" } else { &cpu_lib }
    );
    if !ok {
        problem(
            "a CPU matmul gave a wrong result".into(),
            "reinstall libtorch: cargo xtask setup --force",
        );
    }
    let cuda_linked = libs.iter().any(|l| l.ends_with("libtorch_cuda.so"));
    println!(
        "  CUDA lib:  {}",
        if cuda_linked { "libtorch_cuda.so loaded" } else { "not loaded (CPU-only build)" }
    );
    let available = Cuda::is_available();
    println!(
        "  CUDA:      {}",
        if available {
            format!("available, {} device(s)", Cuda::device_count())
        } else {
            "not available".into()
        }
    );
    println!("  cuDNN:     {}", Cuda::cudnn_is_available());
    // GPUs as the driver sees them (tch has no device-properties API), the same query training uses.
    let gpus = trainer::device::gpus();
    if gpus.is_empty() {
        println!("  GPUs:      none (no nvidia-smi, or no GPU)");
    }
    for (i, g) in gpus.iter().enumerate() {
        let bf16 = g.native_bf16();
        println!(
            "  GPU {i}:     {}, {:.1} GiB, compute capability {}.{}, bf16 {}",
            g.name,
            g.memory_mib as f64 / 1024.0,
            g.capability.0,
            g.capability.1,
            if bf16 { "native" } else { "NOT native (emulated)" }
        );
        if !bf16 {
            problem(
                format!("GPU {i} ({}) has no native bf16 (compute capability < 8.0)", g.name),
                "train with --dtype f16 (fp32 master weights + loss scaling) or f32; avoid bf16 on this card",
            );
        }
    }
    if !gpus.is_empty() && !available {
        problem(
            "the driver sees a GPU but libtorch cannot use it".into(),
            if cuda_linked {
                "check the NVIDIA driver version against the CUDA 13 wheel (nvidia-smi), or CUDA_VISIBLE_DEVICES"
            } else {
                "libtorch_cuda.so was not linked: rebuild (cargo clean -p paligemma-cli) after `cargo xtask setup --force`"
            },
        );
    }
    if available {
        let t = Tensor::ones([256, 256], (Kind::Float, Device::Cuda(0)));
        let s = f64::try_from(t.matmul(&t).sum(Kind::Float)).unwrap_or(0.0);
        if s != 256.0 * 256.0 * 256.0 {
            problem(
                "a CUDA matmul gave a wrong result".into(),
                "check the driver and the GPU (nvidia-smi)",
            );
        } else {
            println!("  CUDA test: matmul on cuda:0 ok");
        }
    }
    let flags = cpu_flags();
    let cpu_bf16 = flags.contains("avx512_bf16") || flags.contains("amx_bf16");
    println!(
        "  CPU bf16:  {}",
        if cpu_bf16 { "native (avx512_bf16/amx)" } else { "emulated: prefer f32 on this CPU" }
    );
    println!("  MKL-DNN:   {}", tch::utils::has_mkldnn());
    println!(
        "  threads:   {} intra-op (libtorch), {} CPUs available",
        tch::get_num_threads(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    if problems > 0 {
        println!("\n{problems} problem(s) found");
        return Ok(1);
    }
    println!("\nno problems found");
    Ok(0)
}
