//! Compiles `csrc/c10d.cpp` (a thin C layer over PyTorch's c10d: `TCPStore`, `ProcessGroupGloo`) against the headers
//! of the libtorch that torch-sys links, when Gloo's own headers are installed (`libgloo-dev`; the PyPI wheel ships
//! c10d's headers but not Gloo's). Without them the crate still builds, and a process group of more than one rank is
//! refused with the fix (cfg `c10d_gloo` tells which; `PGRS_WITHOUT_GLOO=1` builds that way on purpose).
#[path = "../../xtask/gloo_include.rs"]
mod gloo_include;
#[path = "../../xtask/libtorch_rpath.rs"]
mod libtorch_rpath;

use std::path::{Path, PathBuf};

/// Gloo's headers, unless the build is asked to go without them.
fn gloo() -> Option<PathBuf> {
    println!("cargo:rerun-if-env-changed=GLOO_INCLUDE");
    println!("cargo:rerun-if-env-changed=PGRS_WITHOUT_GLOO");
    if std::env::var_os("PGRS_WITHOUT_GLOO").is_some() {
        return None; // a build as on a machine without the headers
    }
    gloo_include::gloo_include()
}

fn main() {
    libtorch_rpath::main();
    println!("cargo:rustc-check-cfg=cfg(c10d_gloo)");
    println!("cargo:rerun-if-changed=csrc/c10d.cpp");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else { return };
    let Some(gloo) = gloo() else {
        println!("cargo:warning=Gloo headers not found (apt install libgloo-dev, or set GLOO_INCLUDE): multi-rank training is disabled");
        return;
    };
    let torch = Path::new(&lib).parent().expect("libtorch/lib has a parent").join("include");
    cc::Build::new()
        .cpp(true)
        .file("csrc/c10d.cpp")
        .std("c++20")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .define("USE_C10D_GLOO", None)
        .include(&torch)
        .include(torch.join("torch/csrc/api/include"))
        .include(gloo)
        .flag_if_supported("-Wno-unused-parameter")
        .warnings(false)
        .compile("pgrs_c10d");
    println!("cargo:rustc-link-lib=torch_cpu");
    println!("cargo:rustc-link-lib=c10");
    println!("cargo:rustc-cfg=c10d_gloo");
}
