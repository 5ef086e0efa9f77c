//! Data-parallel building blocks on PyTorch's own distributed engine (c10d), for the trainer: the torchrun
//! environment contract (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`), a process group with a
//! TCPStore rendezvous, and the collectives data-parallel training needs (in-place all-reduce, broadcast, barrier,
//! all-gather of byte buffers). One rank needs no process group. The group's device picks the backend: Gloo for CPU
//! tensors, NCCL for CUDA tensors (`Backend::for_device`; docs/distributed.md).
//!
//! The C++ side (`csrc/c10d.cpp`) is compiled against the headers of the libtorch torch-sys links and follows
//! PyTorch's `test/cpp/c10d/example/allreduce.cpp`; each backend is built when its headers are there (Gloo:
//! `libgloo-dev`; NCCL: a CUDA libtorch with NCCL's and the CUDA toolkit's headers, see build.rs), and a multi-rank
//! group on a backend the build lacks is refused with the fix. It all builds and tests on a machine without CUDA.
mod env;
mod group;

pub use env::RankEnv;
pub use group::{Backend, ProcessGroup};

use tch::Device;

/// Whether this build has PyTorch's Gloo backend (more than one rank on CPU).
pub const HAS_GLOO: bool = cfg!(c10d_gloo);

/// Whether this build has PyTorch's NCCL backend (more than one rank on CUDA).
pub const HAS_NCCL: bool = cfg!(c10d_nccl);

#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// A torchrun variable that is missing or malformed.
    #[error("environment variable {name}: {msg}")]
    Env { name: &'static str, msg: String },
    /// This build has no Gloo (its headers were not installed when the crate was built).
    #[error(
        "{world} ranks need PyTorch's Gloo backend, and this build was made without Gloo's headers: install them \
         (Debian/Ubuntu: `apt install libgloo-dev`, or set GLOO_INCLUDE to a directory holding gloo/config.h) and \
         rebuild"
    )]
    NoGloo { world: usize },
    /// This build has no NCCL (a CPU-only libtorch, or NCCL's or the CUDA toolkit's headers were not installed when
    /// the crate was built).
    #[error(
        "{world} ranks on CUDA need PyTorch's NCCL backend, and this build was made without it: it needs the CUDA \
         build of libtorch (the PyPI torch==2.13.0 that `cargo xtask setup` installs on Linux x86-64 is one, \
         with lib/libtorch_cuda.so; an external LIBTORCH must be a CUDA one too), NCCL's headers (the \
         nvidia-nccl-cu13 wheel torch depends on, libnccl-dev, or NCCL_INCLUDE) and the CUDA toolkit's (CUDA_HOME, \
         or in torch's venv: pip install \"cuda-toolkit[crt,cccl]==13.0.3\", the parts the torch wheel leaves \
         out); then rebuild (`cargo build -p distributed -vv` prints what is still missing)"
    )]
    NoNccl { world: usize },
    /// A device no c10d backend here takes tensors on.
    #[error("no c10d backend for tensors on {}: Gloo takes CPU tensors, NCCL CUDA tensors", device_name(*.device))]
    NoBackend { device: Device },
    /// A tensor on another device than the one the group's backend works on.
    #[error(
        "c10d {op} (rank {rank} of {world}): a tensor on {}, and this process group's backend, {backend}, takes \
         tensors on {} only (ProcessGroup::init_for(env, timeout, device) makes the group for the device the \
         tensors are on)",
        device_name(*.tensor), device_name(*.group)
    )]
    WrongDevice {
        op: &'static str,
        rank: usize,
        world: usize,
        tensor: Device,
        group: Device,
        backend: Backend,
    },
    /// A failure reported by c10d (rendezvous timeout, a peer that went away, a shape mismatch).
    #[error("c10d {op} (rank {rank} of {world}): {msg}")]
    C10d { op: &'static str, rank: usize, world: usize, msg: String },
}

/// A device as PyTorch writes it: `cpu`, `cuda:0`.
fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
    }
}
