//! A process group: nothing for one rank, else a TCPStore rendezvous and a c10d group on the backend for the group's
//! device (csrc/c10d.cpp): Gloo for CPU tensors, NCCL for CUDA tensors.
use crate::{DistError, RankEnv};
use std::time::Duration;
use tch::{Device, Tensor};

/// The c10d backend a group's collectives go through; the device its tensors live on chooses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PyTorch's Gloo backend: CPU tensors.
    Gloo,
    /// PyTorch's NCCL backend: CUDA tensors, on one GPU per rank.
    Nccl,
}

impl Backend {
    /// Gloo for CPU tensors, NCCL for CUDA tensors (as torch.distributed's default `cpu:gloo,cuda:nccl`).
    pub fn for_device(device: Device) -> Result<Self, DistError> {
        match device {
            Device::Cpu => Ok(Self::Gloo),
            Device::Cuda(_) => Ok(Self::Nccl),
            Device::Mps | Device::Vulkan => Err(DistError::NoBackend { device }),
        }
    }

    /// Whether this build has it (its headers were there when the crate was built).
    pub fn is_built(self) -> bool {
        match self {
            Self::Gloo => crate::HAS_GLOO,
            Self::Nccl => crate::HAS_NCCL,
        }
    }

    /// The error for a group of `world` ranks on this backend in a build without it.
    fn missing(self, world: usize) -> DistError {
        match self {
            Self::Gloo => DistError::NoGloo { world },
            Self::Nccl => DistError::NoNccl { world },
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Gloo => "Gloo",
            Self::Nccl => "NCCL",
        })
    }
}

#[cfg(c10d)]
mod ffi {
    use std::os::raw::{c_char, c_int, c_longlong};
    use torch_sys::C_tensor;

    #[repr(C)]
    pub struct Group {
        _private: [u8; 0],
    }

    /// The backend numbers of `pgrs_c10d_new` (csrc/c10d.cpp).
    pub fn backend_id(b: super::Backend) -> c_int {
        match b {
            super::Backend::Gloo => 0,
            super::Backend::Nccl => 1,
        }
    }

    extern "C" {
        pub fn pgrs_c10d_new(
            addr: *const c_char,
            port: c_int,
            rank: c_int,
            world: c_int,
            timeout_ms: c_longlong,
            backend: c_int,
            cuda_device: c_int,
            err: *mut *mut c_char,
        ) -> *mut Group;
        pub fn pgrs_c10d_free(g: *mut Group);
        pub fn pgrs_c10d_free_error(err: *mut c_char);
        pub fn pgrs_c10d_all_reduce_sum(
            g: *mut Group,
            t: *mut *mut C_tensor,
            n: c_int,
            err: *mut *mut c_char,
        ) -> c_int;
        pub fn pgrs_c10d_broadcast(
            g: *mut Group,
            t: *mut C_tensor,
            root: c_int,
            err: *mut *mut c_char,
        ) -> c_int;
        pub fn pgrs_c10d_barrier(g: *mut Group, err: *mut *mut c_char) -> c_int;
        pub fn pgrs_c10d_all_gather(
            g: *mut Group,
            input: *mut C_tensor,
            outputs: *mut *mut C_tensor,
            world: c_int,
            err: *mut *mut c_char,
        ) -> c_int;
    }

    /// Takes the message c10d.cpp allocated (if any) and frees it.
    pub fn take_error(err: *mut c_char) -> String {
        if err.is_null() {
            return "failed without a message".into();
        }
        // SAFETY: c10d.cpp hands out a NUL-terminated malloc'd copy, freed right after it is read.
        let msg = unsafe { std::ffi::CStr::from_ptr(err) }.to_string_lossy().into_owned();
        unsafe { pgrs_c10d_free_error(err) };
        msg
    }
}

/// This process's part of a run: its rank, the device its collectives' tensors live on and, for more than one rank,
/// the c10d group.
#[derive(Debug)]
pub struct ProcessGroup {
    env: RankEnv,
    device: Device,
    backend: Backend,
    #[cfg(c10d)]
    group: Option<std::ptr::NonNull<ffi::Group>>,
}

impl ProcessGroup {
    /// Joins the run `env` describes with a group for CPU tensors (Gloo): `init_for(env, timeout, Device::Cpu)`.
    pub fn init(env: &RankEnv, timeout: Duration) -> Result<Self, DistError> {
        Self::init_for(env, timeout, Device::Cpu)
    }

    /// Joins the run `env` describes with a group for tensors on `device`: Gloo for `Device::Cpu`, NCCL for
    /// `Device::Cuda(i)` (which becomes this thread's current CUDA device; one GPU per rank, usually
    /// `Device::Cuda(env.local_rank)`). Blocks until every rank has arrived at the rendezvous or `timeout` passed;
    /// `timeout` also bounds each collective. One rank joins nothing, on any backend.
    pub fn init_for(env: &RankEnv, timeout: Duration, device: Device) -> Result<Self, DistError> {
        let backend = Backend::for_device(device)?;
        if env.world_size == 1 {
            return Ok(Self {
                env: env.clone(),
                device,
                backend,
                #[cfg(c10d)]
                group: None,
            });
        }
        if !backend.is_built() {
            return Err(backend.missing(env.world_size));
        }
        if let Device::Cuda(i) = device {
            let seen = tch::Cuda::device_count();
            if i as i64 >= seen {
                return Err(DistError::C10d {
                    op: "rendezvous",
                    rank: env.rank,
                    world: env.world_size,
                    msg: format!(
                        "no cuda:{i} for NCCL: this process sees {seen} CUDA device(s) (driver, \
                         CUDA_VISIBLE_DEVICES)"
                    ),
                });
            }
        }
        Self::join(env, timeout, device, backend)
    }

    #[cfg(not(c10d))]
    fn join(
        env: &RankEnv,
        _timeout: Duration,
        _device: Device,
        backend: Backend,
    ) -> Result<Self, DistError> {
        Err(backend.missing(env.world_size)) // unreachable: no backend is built
    }

    #[cfg(c10d)]
    fn join(
        env: &RankEnv,
        timeout: Duration,
        device: Device,
        backend: Backend,
    ) -> Result<Self, DistError> {
        let addr = std::ffi::CString::new(env.master_addr.as_str()).map_err(|_| {
            DistError::Env { name: "MASTER_ADDR", msg: "contains a NUL byte".into() }
        })?;
        let cuda_device = match device {
            Device::Cuda(i) => i32::try_from(i).unwrap_or(i32::MAX),
            _ => -1,
        };
        let mut err = std::ptr::null_mut();
        // SAFETY: all arguments are plain values or a valid C string; the result is checked for null.
        let g = unsafe {
            ffi::pgrs_c10d_new(
                addr.as_ptr(),
                env.master_port.into(),
                env.rank as i32,
                env.world_size as i32,
                timeout.as_millis().min(i64::MAX as u128) as i64,
                ffi::backend_id(backend),
                cuda_device,
                &mut err,
            )
        };
        match std::ptr::NonNull::new(g) {
            Some(group) => Ok(Self { env: env.clone(), device, backend, group: Some(group) }),
            None => Err(DistError::C10d {
                op: "rendezvous",
                rank: env.rank,
                world: env.world_size,
                msg: format!(
                    "{} ({backend} group, rendezvous at {}:{})",
                    ffi::take_error(err),
                    env.master_addr,
                    env.master_port
                ),
            }),
        }
    }

    pub fn rank(&self) -> usize {
        self.env.rank
    }

    pub fn world_size(&self) -> usize {
        self.env.world_size
    }

    pub fn is_main(&self) -> bool {
        self.env.rank == 0
    }

    /// The device the collectives' tensors live on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The backend the collectives go through (for one rank, the one they would).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The group's backend takes tensors on the group's device only (Gloo: CPU; NCCL: its GPU).
    fn check_device(&self, op: &'static str, t: &Tensor) -> Result<(), DistError> {
        if self.device == t.device() {
            return Ok(());
        }
        Err(DistError::WrongDevice {
            op,
            rank: self.env.rank,
            world: self.env.world_size,
            tensor: t.device(),
            group: self.device,
            backend: self.backend,
        })
    }

    fn failure(&self, op: &'static str, msg: String) -> DistError {
        DistError::C10d { op, rank: self.env.rank, world: self.env.world_size, msg }
    }

    /// Replaces each tensor by its sum over ranks, in place.
    pub fn all_reduce_sum(&self, tensors: &mut [Tensor]) -> Result<(), DistError> {
        for t in tensors.iter() {
            self.check_device("all_reduce", t)?;
        }
        self.call("all_reduce", |g, err| {
            let mut ptrs: Vec<_> = tensors.iter_mut().map(|t| t.as_mut_ptr()).collect();
            // SAFETY: `ptrs` point at live tensors for the duration of the call.
            unsafe { ffi::pgrs_c10d_all_reduce_sum(g, ptrs.as_mut_ptr(), ptrs.len() as i32, err) }
        })
    }

    /// Replaces each tensor by its sum over ranks, in place, through flat buffers of at most `bucket_bytes` (a tensor
    /// larger than that gets a bucket of its own, reduced in place): one collective per bucket instead of one per tensor, as
    /// DistributedDataParallel's reducer does for gradients. Tensors of different dtypes never share a bucket.
    pub fn all_reduce_sum_bucketed(
        &self,
        tensors: &mut [Tensor],
        bucket_bytes: usize,
    ) -> Result<(), DistError> {
        for t in tensors.iter() {
            self.check_device("all_reduce", t)?;
        }
        if self.world_size() == 1 {
            return Ok(());
        }
        for bucket in buckets(tensors, bucket_bytes) {
            if let [i] = bucket[..] {
                if tensors[i].is_contiguous() {
                    // Alone in its bucket: reduced where it lies (no copy the size of, say, an embedding).
                    self.all_reduce_sum(std::slice::from_mut(&mut tensors[i]))?;
                    continue;
                }
            }
            let parts: Vec<Tensor> = bucket.iter().map(|&i| tensors[i].reshape([-1])).collect();
            let mut flat = [Tensor::cat(&parts, 0)];
            self.all_reduce_sum(&mut flat)?;
            let mut offset = 0;
            for &i in &bucket {
                let n = tensors[i].numel() as i64;
                let summed = flat[0].narrow(0, offset, n).view_(tensors[i].size());
                tensors[i].copy_(&summed);
                offset += n;
            }
        }
        Ok(())
    }

    /// Replaces each (floating-point) tensor by its mean over ranks, in place.
    pub fn all_reduce_mean(&self, tensors: &mut [Tensor]) -> Result<(), DistError> {
        if let Some(t) = tensors.iter().find(|t| !t.is_floating_point()) {
            return Err(self.failure("all_reduce", format!("a mean of {:?} values", t.kind())));
        }
        self.all_reduce_sum(tensors)?;
        if self.world_size() > 1 {
            for t in tensors.iter_mut() {
                let _ = t.g_div_scalar_(self.world_size() as f64);
            }
        }
        Ok(())
    }

    /// Overwrites `t` on every rank with rank `root`'s.
    pub fn broadcast(&self, t: &mut Tensor, root: usize) -> Result<(), DistError> {
        self.check_device("broadcast", t)?;
        self.call("broadcast", |g, err| {
            // SAFETY: `t` is a live tensor for the duration of the call.
            unsafe { ffi::pgrs_c10d_broadcast(g, t.as_mut_ptr(), root as i32, err) }
        })
    }

    /// Returns once every rank has called it.
    pub fn barrier(&self) -> Result<(), DistError> {
        self.call("barrier", |g, err| unsafe { ffi::pgrs_c10d_barrier(g, err) })
    }

    /// Every rank's `bytes`, in rank order (lengths may differ between ranks).
    pub fn all_gather_bytes(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, DistError> {
        if self.world_size() == 1 {
            return Ok(vec![bytes.to_vec()]);
        }
        // through the group's device (NCCL gathers CUDA tensors), read back on the CPU
        let lens = self.all_gather_tensor(&Tensor::from_slice(&[bytes.len() as i64]))?;
        let lens: Vec<usize> = lens.iter().map(|t| t.int64_value(&[0]) as usize).collect();
        let max = lens.iter().copied().max().unwrap_or(0);
        let mut padded = bytes.to_vec();
        padded.resize(max, 0);
        let parts = self.all_gather_tensor(&Tensor::from_slice(&padded))?;
        parts
            .iter()
            .zip(lens)
            .map(|(t, n)| match Vec::<u8>::try_from(t) {
                Ok(v) if n <= v.len() => Ok(v[..n].to_vec()),
                other => {
                    Err(self
                        .failure("all_gather", format!("gathered buffer unreadable: {other:?}")))
                }
            })
            .collect()
    }

    /// Every rank's CPU tensor `input` (one shape and dtype on all ranks), in rank order, on the CPU; it travels
    /// on the group's device.
    fn all_gather_tensor(&self, input: &Tensor) -> Result<Vec<Tensor>, DistError> {
        let mut input = input.to_device(self.device);
        let mut outputs: Vec<Tensor> = (0..self.world_size()).map(|_| input.empty_like()).collect();
        let world = self.world_size();
        self.call("all_gather", |g, err| {
            let mut ptrs: Vec<_> = outputs.iter_mut().map(|t| t.as_mut_ptr()).collect();
            // SAFETY: input and outputs are live tensors of one shape and dtype for the duration of the call.
            unsafe {
                ffi::pgrs_c10d_all_gather(
                    g,
                    input.as_mut_ptr(),
                    ptrs.as_mut_ptr(),
                    world as i32,
                    err,
                )
            }
        })?;
        Ok(outputs.iter().map(|t| t.to_device(Device::Cpu)).collect())
    }
}

/// Indices of `tensors` grouped into consecutive buckets of one dtype and at most `bucket_bytes` each (an oversized
/// tensor alone).
fn buckets(tensors: &[Tensor], bucket_bytes: usize) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for (i, t) in tensors.iter().enumerate() {
        let size = t.numel() * t.kind().elt_size_in_bytes();
        let same_kind =
            out.last().and_then(|b| b.last()).is_some_and(|&j| tensors[j].kind() == t.kind());
        match out.last_mut() {
            Some(b) if same_kind && bytes + size <= bucket_bytes => {
                b.push(i);
                bytes += size;
            }
            _ => {
                out.push(vec![i]);
                bytes = size;
            }
        }
    }
    out
}

#[cfg(c10d)]
impl ProcessGroup {
    /// Runs one C call on the group (nothing for a single rank), turning a reported failure into an error.
    fn call(
        &self,
        op: &'static str,
        f: impl FnOnce(*mut ffi::Group, *mut *mut std::os::raw::c_char) -> i32,
    ) -> Result<(), DistError> {
        let Some(g) = self.group else { return Ok(()) };
        let mut err = std::ptr::null_mut();
        match f(g.as_ptr(), &mut err) {
            0 => Ok(()),
            _ => Err(self.failure(op, ffi::take_error(err))),
        }
    }
}

#[cfg(not(c10d))]
mod ffi {
    //! Without any backend no group exists, so these are never reached.
    pub enum Group {}
    pub unsafe fn pgrs_c10d_all_reduce_sum(
        _: *mut Group,
        _: *mut *mut torch_sys::C_tensor,
        _: i32,
        _: *mut *mut i8,
    ) -> i32 {
        0
    }
    pub unsafe fn pgrs_c10d_broadcast(
        _: *mut Group,
        _: *mut torch_sys::C_tensor,
        _: i32,
        _: *mut *mut i8,
    ) -> i32 {
        0
    }
    pub unsafe fn pgrs_c10d_barrier(_: *mut Group, _: *mut *mut i8) -> i32 {
        0
    }
    pub unsafe fn pgrs_c10d_all_gather(
        _: *mut Group,
        _: *mut torch_sys::C_tensor,
        _: *mut *mut torch_sys::C_tensor,
        _: i32,
        _: *mut *mut i8,
    ) -> i32 {
        0
    }
}

#[cfg(not(c10d))]
impl ProcessGroup {
    fn call(
        &self,
        _op: &'static str,
        _f: impl FnOnce(*mut ffi::Group, *mut *mut i8) -> i32,
    ) -> Result<(), DistError> {
        Ok(()) // a single rank: every collective is the identity
    }
}

#[cfg(c10d)]
impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(g) = self.group.take() {
            // SAFETY: created by pgrs_c10d_new and freed once (shutting the backend down first).
            unsafe { ffi::pgrs_c10d_free(g.as_ptr()) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn buckets_keep_order_dtype_and_size() {
        let f = |n: i64| Tensor::zeros([n], (Kind::Float, Device::Cpu));
        let ts =
            [f(10), f(10), f(30), Tensor::zeros([2], (Kind::Int64, Device::Cpu)), f(1), f(100)];
        // 80-byte buckets: 40 + 40 fit, 120 alone, the i64 pair apart from floats, 4 bytes, 400 alone
        assert_eq!(buckets(&ts, 80), vec![vec![0, 1], vec![2], vec![3], vec![4], vec![5]]);
        assert_eq!(buckets(&ts, 1 << 20), vec![vec![0, 1, 2], vec![3], vec![4, 5]]);
    }

    #[test]
    fn the_device_chooses_the_backend() {
        assert_eq!(Backend::for_device(Device::Cpu).unwrap(), Backend::Gloo);
        assert_eq!(Backend::for_device(Device::Cuda(0)).unwrap(), Backend::Nccl);
        assert_eq!(Backend::for_device(Device::Cuda(3)).unwrap(), Backend::Nccl);
        let e = Backend::for_device(Device::Mps).unwrap_err().to_string();
        assert!(
            e.contains("tensors on mps") && e.contains("Gloo takes CPU") && e.contains("NCCL CUDA"),
            "{e}"
        );
        assert_eq!(
            (Backend::Gloo.to_string(), Backend::Nccl.to_string()),
            ("Gloo".into(), "NCCL".into())
        );
        assert_eq!(Backend::Nccl.is_built(), crate::HAS_NCCL);
    }

    #[test]
    fn a_tensor_on_another_device_than_the_group_is_refused_naming_both() {
        // one rank on CUDA touches no GPU, so this runs without one: the check comes before anything else
        let pg =
            ProcessGroup::init_for(&RankEnv::single(), Duration::from_secs(1), Device::Cuda(0))
                .unwrap();
        assert_eq!((pg.backend(), pg.device()), (Backend::Nccl, Device::Cuda(0)));
        let mut t = [Tensor::from_slice(&[1.0f32])];
        let e = pg.all_reduce_sum(&mut t).unwrap_err().to_string();
        assert!(
            e.contains("all_reduce (rank 0 of 1): a tensor on cpu")
                && e.contains("backend, NCCL, takes tensors on cuda:0 only"),
            "{e}"
        );
        let e = pg.all_reduce_sum_bucketed(&mut t, 1 << 20).unwrap_err().to_string();
        assert!(e.contains("a tensor on cpu"), "{e}");
        let e = pg.broadcast(&mut t[0], 0).unwrap_err().to_string();
        assert!(e.contains("c10d broadcast") && e.contains("NCCL"), "{e}");
        // and the other way round, as a CPU group of two ranks reports a CUDA tensor
        let e = DistError::WrongDevice {
            op: "all_reduce",
            rank: 1,
            world: 2,
            tensor: Device::Cuda(1),
            group: Device::Cpu,
            backend: Backend::Gloo,
        }
        .to_string();
        assert!(
            e.contains("(rank 1 of 2): a tensor on cuda:1")
                && e.contains("Gloo, takes tensors on cpu only")
                && e.contains("init_for"),
            "{e}"
        );
        let cpu = ProcessGroup::init(&RankEnv::single(), Duration::from_secs(1)).unwrap();
        assert_eq!((cpu.backend(), cpu.device()), (Backend::Gloo, Device::Cpu));
    }

    #[test]
    fn without_nccl_more_ranks_on_cuda_are_refused_with_the_fix() {
        let e = DistError::NoNccl { world: 2 }.to_string();
        for want in [
            "2 ranks on CUDA",
            "NCCL",
            "libtorch_cuda.so",
            "cargo xtask setup",
            "nvidia-nccl-cu13",
            "CUDA_HOME",
        ] {
            assert!(e.contains(want), "{want}: {e}");
        }
        let env = RankEnv { world_size: 2, master_port: 29500, ..RankEnv::single() };
        let group = |d| ProcessGroup::init_for(&env, Duration::from_secs(1), d);
        if crate::HAS_NCCL {
            // a build with NCCL on a machine without that GPU says so before any rendezvous
            if tch::Cuda::device_count() == 0 {
                let e = group(Device::Cuda(0)).unwrap_err().to_string();
                assert!(
                    e.contains("no cuda:0 for NCCL: this process sees 0 CUDA device(s)"),
                    "{e}"
                );
            }
            return; // the refusal is the property of a build without it (PGRS_WITHOUT_NCCL=1 makes one)
        }
        let e = group(Device::Cuda(0)).unwrap_err();
        assert!(matches!(e, DistError::NoNccl { world: 2 }), "{e}");
    }
}
