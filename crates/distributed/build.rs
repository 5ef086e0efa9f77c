//! Compiles `csrc/c10d.cpp` (a thin C layer over PyTorch's c10d: `TCPStore`, `ProcessGroupGloo` for CPU tensors,
//! `ProcessGroupNCCL` for CUDA tensors) against the headers of the libtorch that torch-sys links, with each backend
//! whose headers are installed:
//! - Gloo (cfg `c10d_gloo`) when Gloo's own headers are (`libgloo-dev`; the PyPI wheel ships c10d's headers but not
//!   Gloo's); `PGRS_WITHOUT_GLOO=1` builds without it on purpose.
//! - NCCL (cfg `c10d_nccl`; `USE_C10D_NCCL`, `USE_CUDA`, linking `torch_cuda`) when the libtorch is a CUDA build
//!   (`lib/libtorch_cuda.so`) and NCCL's and the CUDA toolkit's headers are found (`xtask/nccl_include.rs`: the
//!   nvidia-* wheels beside torch's, `NCCL_INCLUDE`, `CUDA_HOME`, the system's); `PGRS_WITHOUT_NCCL=1` builds
//!   without it on purpose.
//!
//! Without either the crate still builds (cfg `c10d` tells whether the C layer is there at all), and a process
//! group of more than one rank on a backend the build lacks is refused with the fix.
#[path = "../../xtask/gloo_include.rs"]
mod gloo_include;
#[path = "../../xtask/libtorch_rpath.rs"]
mod libtorch_rpath;
#[path = "../../xtask/nccl_include.rs"]
mod nccl_include;

use std::path::{Path, PathBuf};

/// Gloo's headers, unless the build is asked to go without them.
fn gloo() -> Option<PathBuf> {
    println!("cargo:rerun-if-env-changed=GLOO_INCLUDE");
    println!("cargo:rerun-if-env-changed=PGRS_WITHOUT_GLOO");
    if std::env::var_os("PGRS_WITHOUT_GLOO").is_some() {
        return None; // a build as on a machine without the headers
    }
    let found = gloo_include::gloo_include();
    if found.is_none() {
        println!(
            "cargo:warning=Gloo headers not found (apt install libgloo-dev, or set GLOO_INCLUDE): multi-rank \
             training on CPU is disabled"
        );
    }
    found
}

/// NCCL's and the CUDA toolkit's include directories, when the libtorch in `lib` is a CUDA build and they are
/// installed, unless the build is asked to go without them. Says why not only for a CUDA libtorch (a CPU-only one
/// has no use for NCCL).
fn nccl(lib: &Path) -> Option<Vec<PathBuf>> {
    for var in ["NCCL_INCLUDE", "CUDA_HOME", "PGRS_WITHOUT_NCCL"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    if std::env::var_os("PGRS_WITHOUT_NCCL").is_some() {
        return None;
    }
    match nccl_include::cuda_includes(lib) {
        Ok(dirs) => Some(dirs),
        Err(why) => {
            if lib.join("libtorch_cuda.so").is_file() {
                println!(
                    "cargo:warning=NCCL backend not built: {why}; multi-rank training on CUDA is disabled (after \
                     installing, `cargo clean -p distributed` rebuilds with it)"
                );
            }
            None
        }
    }
}

fn main() {
    libtorch_rpath::main();
    for cfg in ["c10d", "c10d_gloo", "c10d_nccl"] {
        println!("cargo:rustc-check-cfg=cfg({cfg})");
    }
    println!("cargo:rerun-if-changed=csrc/c10d.cpp");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else { return };
    let lib = PathBuf::from(lib);
    let gloo = gloo();
    let nccl = nccl(&lib);
    if gloo.is_none() && nccl.is_none() {
        return;
    }
    let torch = lib.parent().expect("libtorch/lib has a parent").join("include");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file("csrc/c10d.cpp")
        .std("c++20")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .include(&torch)
        .include(torch.join("torch/csrc/api/include"))
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-interference-size")
        .warnings(false);
    if let Some(gloo) = &gloo {
        build.define("USE_C10D_GLOO", None).include(gloo);
    }
    if let Some(dirs) = &nccl {
        build.define("USE_C10D_NCCL", None).define("USE_CUDA", None).includes(dirs);
    }
    build.compile("pgrs_c10d");
    if nccl.is_some() {
        println!("cargo:rustc-link-lib=torch_cuda");
        println!("cargo:rustc-link-lib=c10_cuda");
        println!("cargo:rustc-cfg=c10d_nccl");
    }
    println!("cargo:rustc-link-lib=torch_cpu");
    println!("cargo:rustc-link-lib=c10");
    println!("cargo:rustc-cfg=c10d");
    if gloo.is_some() {
        println!("cargo:rustc-cfg=c10d_gloo");
    }
}
