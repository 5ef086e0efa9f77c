//! Data-parallel building blocks on PyTorch's own distributed engine (c10d), for the trainer: the torchrun
//! environment contract (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`), a process group with a
//! TCPStore rendezvous, and the collectives data-parallel training needs (in-place all-reduce, broadcast, barrier,
//! all-gather of byte buffers). One rank needs no process group. CPU tensors go through Gloo; NCCL for CUDA tensors
//! is not wired yet (docs/distributed.md).
//!
//! The C++ side (`csrc/c10d.cpp`) is compiled against the headers of the libtorch torch-sys links and follows
//! PyTorch's `test/cpp/c10d/example/allreduce.cpp`; without Gloo's headers (`libgloo-dev`) the crate builds and a
//! multi-rank group is refused with that fix.
mod env;
mod group;

pub use env::RankEnv;
pub use group::ProcessGroup;

/// Whether this build has PyTorch's Gloo backend (more than one rank on CPU).
pub const HAS_GLOO: bool = cfg!(c10d_gloo);

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
    /// A failure reported by c10d (rendezvous timeout, a peer that went away, a shape mismatch).
    #[error("c10d {op} (rank {rank} of {world}): {msg}")]
    C10d { op: &'static str, rank: usize, world: usize, msg: String },
}
