//! Build script shared by every crate that links libtorch (`build = "../../xtask/libtorch_rpath.rs"`).
//!
//! torch-sys finds libtorch but never gives *our* binaries and test executables an rpath, and rustc's
//! default `--as-needed` drops `libtorch_cuda.so` because no symbol of it is referenced directly, after
//! which `Cuda::is_available()` is false even on a GPU machine (tch-rs #907). tch's own build script fixes
//! both for tch's targets only; `cargo:rustc-link-arg` applies to the package that emits it, so each
//! libtorch-linking crate runs this file (with `torch-sys` as a direct dependency, which is what makes
//! cargo hand it `DEP_TCH_LIBTORCH_LIB`).
pub fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        // Resolve the `.libtorch` symlink made by `cargo xtask setup`, so binaries keep working even if
        // the checkout moves or the link is removed.
        let lib = std::fs::canonicalize(&lib).map(|p| p.display().to_string()).unwrap_or(lib);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        // `libtorch.so` itself lists `libtorch_cuda.so` (when the wheel has CUDA) as NEEDED, so keeping it linked
        // keeps CUDA loaded.
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
    }
}
