//! A process group: nothing for one rank, else a TCPStore rendezvous and a Gloo group (csrc/c10d.cpp).
use crate::{DistError, RankEnv};
use std::time::Duration;
use tch::{Device, Tensor};

#[cfg(c10d_gloo)]
mod ffi {
    use std::os::raw::{c_char, c_int, c_longlong};
    use torch_sys::C_tensor;

    #[repr(C)]
    pub struct Group {
        _private: [u8; 0],
    }

    extern "C" {
        pub fn pgrs_c10d_new_gloo(
            addr: *const c_char,
            port: c_int,
            rank: c_int,
            world: c_int,
            timeout_ms: c_longlong,
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

/// This process's part of a run: its rank and, for more than one rank, the c10d group.
#[derive(Debug)]
pub struct ProcessGroup {
    env: RankEnv,
    #[cfg(c10d_gloo)]
    group: Option<std::ptr::NonNull<ffi::Group>>,
}

impl ProcessGroup {
    /// Joins the run `env` describes; blocks until every rank has arrived at the rendezvous or `timeout` passed.
    /// One rank joins nothing.
    pub fn init(env: &RankEnv, timeout: Duration) -> Result<Self, DistError> {
        if env.world_size == 1 {
            return Ok(Self::single_rank(env));
        }
        Self::init_gloo(env, timeout)
    }

    fn single_rank(env: &RankEnv) -> Self {
        Self {
            env: env.clone(),
            #[cfg(c10d_gloo)]
            group: None,
        }
    }

    #[cfg(not(c10d_gloo))]
    fn init_gloo(env: &RankEnv, _timeout: Duration) -> Result<Self, DistError> {
        Err(DistError::NoGloo { world: env.world_size })
    }

    #[cfg(c10d_gloo)]
    fn init_gloo(env: &RankEnv, timeout: Duration) -> Result<Self, DistError> {
        let addr = std::ffi::CString::new(env.master_addr.as_str()).map_err(|_| {
            DistError::Env { name: "MASTER_ADDR", msg: "contains a NUL byte".into() }
        })?;
        let mut err = std::ptr::null_mut();
        // SAFETY: all arguments are plain values or a valid C string; the result is checked for null.
        let g = unsafe {
            ffi::pgrs_c10d_new_gloo(
                addr.as_ptr(),
                env.master_port.into(),
                env.rank as i32,
                env.world_size as i32,
                timeout.as_millis().min(i64::MAX as u128) as i64,
                &mut err,
            )
        };
        match std::ptr::NonNull::new(g) {
            Some(group) => Ok(Self { env: env.clone(), group: Some(group) }),
            None => Err(DistError::C10d {
                op: "rendezvous",
                rank: env.rank,
                world: env.world_size,
                msg: format!(
                    "{} (rendezvous at {}:{})",
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

    /// Gloo collectives take CPU tensors; NCCL (CUDA) is not wired yet.
    fn check_cpu(&self, op: &'static str, t: &Tensor) -> Result<(), DistError> {
        if t.device() == Device::Cpu {
            return Ok(());
        }
        Err(self.failure(
            op,
            format!("tensor on {:?}: Gloo takes CPU tensors (NCCL is not wired yet)", t.device()),
        ))
    }

    fn failure(&self, op: &'static str, msg: String) -> DistError {
        DistError::C10d { op, rank: self.env.rank, world: self.env.world_size, msg }
    }

    /// Replaces each tensor by its sum over ranks, in place.
    pub fn all_reduce_sum(&self, tensors: &mut [Tensor]) -> Result<(), DistError> {
        for t in tensors.iter() {
            self.check_cpu("all_reduce", t)?;
        }
        self.call("all_reduce", |g, err| {
            let mut ptrs: Vec<_> = tensors.iter_mut().map(|t| t.as_mut_ptr()).collect();
            // SAFETY: `ptrs` point at live tensors for the duration of the call.
            unsafe { ffi::pgrs_c10d_all_reduce_sum(g, ptrs.as_mut_ptr(), ptrs.len() as i32, err) }
        })
    }

    /// Replaces each tensor by its sum over ranks, in place, through flat buffers of at most `bucket_bytes` (a tensor
    /// larger than that gets a bucket of its own): one collective per bucket instead of one per tensor, as
    /// DistributedDataParallel's reducer does for gradients. Tensors of different dtypes never share a bucket.
    pub fn all_reduce_sum_bucketed(
        &self,
        tensors: &mut [Tensor],
        bucket_bytes: usize,
    ) -> Result<(), DistError> {
        if self.world_size() == 1 {
            return Ok(());
        }
        for bucket in buckets(tensors, bucket_bytes) {
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
        self.check_cpu("broadcast", t)?;
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

    fn all_gather_tensor(&self, input: &Tensor) -> Result<Vec<Tensor>, DistError> {
        let mut outputs: Vec<Tensor> = (0..self.world_size()).map(|_| input.empty_like()).collect();
        let mut input = input.shallow_clone();
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
        Ok(outputs)
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

#[cfg(c10d_gloo)]
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

#[cfg(not(c10d_gloo))]
mod ffi {
    //! Without Gloo no group exists, so these are never reached.
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

#[cfg(not(c10d_gloo))]
impl ProcessGroup {
    fn call(
        &self,
        _op: &'static str,
        _f: impl FnOnce(*mut ffi::Group, *mut *mut i8) -> i32,
    ) -> Result<(), DistError> {
        Ok(()) // a single rank: every collective is the identity
    }
}

#[cfg(c10d_gloo)]
impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(g) = self.group.take() {
            // SAFETY: created by pgrs_c10d_new_gloo and freed once.
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
}
