//! What crates/distributed's build script needs to compile PyTorch's NCCL backend (`ProcessGroupNCCL.hpp`, which
//! pulls in ATen's CUDA headers) against a libtorch: that libtorch has CUDA (`lib/libtorch_cuda.so`), and NCCL's and
//! the CUDA toolkit's headers are installed. For the PyPI wheel (`<site-packages>/torch/lib`) the nvidia-* wheels
//! beside it hold them: NCCL's in `nvidia/nccl/include` (nvidia-nccl-cu13, a dependency of torch), the toolkit's in
//! `nvidia/cu13/include` (CUDA 13) or in one `nvidia/<library>/include` each (CUDA 12). torch's dependencies bring
//! the runtime's, cuBLAS', cuSPARSE's and cuSOLVER's headers but not the two parts of the toolkit that
//! `cuda_runtime.h` and `cuda_fp16.h` include: `crt/` (nvidia-cuda-crt) and libcu++'s `nv/target` (nvidia-cuda-cccl).
use std::path::{Path, PathBuf};

/// The toolkit headers a CUDA build of c10d needs, and the PyPI extra of `cuda-toolkit` that holds each.
const CUDA_HEADERS: [(&str, &str); 3] =
    [("cuda_runtime_api.h", "cudart"), ("crt/host_config.h", "crt"), ("nv/target", "cccl")];

/// Include directories for a CUDA build of c10d against the libtorch whose library directory is `torch_lib`, or
/// why there are none (what is missing, and how to install it).
pub fn cuda_includes(torch_lib: &Path) -> Result<Vec<PathBuf>, String> {
    if !torch_lib.join("libtorch_cuda.so").is_file() {
        return Err(format!(
            "{} has no libtorch_cuda.so (a CPU-only libtorch)",
            torch_lib.display()
        ));
    }
    let wheel = site_packages(torch_lib).map(|sp| sp.join("nvidia")).filter(|w| w.is_dir());
    let nccl = nccl_include(wheel.as_deref()).ok_or(
        "NCCL's headers (nccl.h) not found: pip install the nvidia-nccl wheel the torch wheel requires \
         (nvidia-nccl-cu13 for torch+cu130), apt install libnccl-dev, or set NCCL_INCLUDE to the directory holding \
         nccl.h",
    )?;
    let (toolkit, looked) = toolkit_includes(wheel.as_deref());
    for (header, extra) in CUDA_HEADERS {
        if !toolkit.iter().any(|d| d.join(header).exists()) {
            return Err(format!(
                "the CUDA toolkit's {header} not found in {looked}: set CUDA_HOME to a CUDA toolkit, or install \
                 the part torch's wheel leaves out into its venv: pip install \"cuda-toolkit[{extra}]==<the \
                 version torch requires>\" (`pip show -v torch`; e.g. cuda-toolkit[crt,cccl]==13.0.3 for torch \
                 2.13.0+cu130)"
            ));
        }
    }
    let toolkit = toolkit.into_iter().filter(|d| *d != nccl);
    Ok(std::iter::once(nccl.clone()).chain(toolkit).collect())
}

/// `<site-packages>` when `torch_lib` is a wheel's `<site-packages>/torch/lib`.
fn site_packages(torch_lib: &Path) -> Option<PathBuf> {
    let lib = std::fs::canonicalize(torch_lib).ok()?;
    let torch = lib.parent()?;
    (torch.file_name()? == "torch").then(|| torch.parent().map(Path::to_path_buf))?
}

/// `$NCCL_INCLUDE`, else the nvidia-nccl wheel's, else the system's (libnccl-dev).
fn nccl_include(wheel: Option<&Path>) -> Option<PathBuf> {
    let from_env = std::env::var_os("NCCL_INCLUDE").map(PathBuf::from);
    let from_wheel = wheel.map(|w| w.join("nccl/include"));
    let system =
        ["/usr/include", "/usr/local/include", "/usr/local/cuda/include"].map(PathBuf::from);
    from_env.into_iter().chain(from_wheel).chain(system).find(|d| d.join("nccl.h").is_file())
}

/// `$CUDA_HOME/include`, else the nvidia-* wheels' include directories when they hold the CUDA runtime's (the
/// toolkit the torch wheel was built with), else `/usr/local/cuda/include`; and where that is, in words.
fn toolkit_includes(wheel: Option<&Path>) -> (Vec<PathBuf>, String) {
    if let Some(home) = std::env::var_os("CUDA_HOME") {
        let dir = PathBuf::from(home).join("include");
        let looked = format!("$CUDA_HOME/include ({})", dir.display());
        return (vec![dir], looked);
    }
    if let Some(wheel) = wheel {
        let dirs: Vec<PathBuf> = subdir_includes(wheel);
        if dirs.iter().any(|d| d.join("cuda_runtime_api.h").is_file()) {
            return (
                dirs,
                format!("the nvidia-* wheels beside torch's ({}/*/include)", wheel.display()),
            );
        }
    }
    let dir = PathBuf::from("/usr/local/cuda/include");
    let looked =
        format!("{} (no $CUDA_HOME, no nvidia-cuda-runtime wheel beside torch's)", dir.display());
    (vec![dir], looked)
}

/// `<dir>/*/include`, sorted.
fn subdir_includes(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("include"))
        .filter(|d| d.is_dir())
        .collect();
    dirs.sort();
    dirs
}
