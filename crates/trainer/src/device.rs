//! What the GPU can do, from the driver (tch has no device-properties API): native bf16 needs compute capability
//! 8.0+ (Ampere); on older cards (T4 = 7.5) bf16 is emulated, slow, and we ask for f16 with loss scaling instead.
use crate::TrainError;
use std::process::Command;
use tch::{Cuda, Device};
use weights::DType;

/// Where to compute, as configs and `--device` say it: `cpu`, `cuda` (= `cuda:0`) or `cuda:N`. Parsed when the
/// config or option is read ([`crate::setting::Setting`]); checked against the machine by [`DeviceSpec::resolve`],
/// the one device check every command uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
    /// Left open: only in config fingerprints, where the device may change between a run and its resume.
    Unspecified,
}

impl DeviceSpec {
    /// The libtorch device, after checking that CUDA is usable and the GPU exists.
    pub fn resolve(self) -> Result<Device, TrainError> {
        let i = match self {
            Self::Cpu | Self::Unspecified => return Ok(Device::Cpu),
            Self::Cuda(i) => i,
        };
        if !Cuda::is_available() {
            return Err(TrainError::Config(
                "CUDA was requested but libtorch sees no usable GPU; `cargo xtask doctor` says why and how to fix it"
                    .into(),
            ));
        }
        let n = Cuda::device_count() as usize;
        if i >= n {
            return Err(TrainError::Config(format!(
                "cuda:{i} requested but only {n} GPU(s) are visible"
            )));
        }
        Ok(Device::Cuda(i))
    }
}

#[derive(Debug, Clone)]
pub struct GpuInfo {
    pub name: String,
    pub memory_mib: u64,
    pub capability: (u32, u32),
}

impl GpuInfo {
    pub fn native_bf16(&self) -> bool {
        self.capability.0 >= 8
    }
}

/// GPUs as `nvidia-smi` reports them (empty without a driver).
pub fn gpus() -> Vec<GpuInfo> {
    let Ok(out) = Command::new("nvidia-smi")
        .args(["--query-gpu=name,memory.total,compute_cap", "--format=csv,noheader,nounits"])
        .output()
    else {
        return vec![];
    };
    if !out.status.success() {
        return vec![];
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            let (maj, min) = f.get(2)?.split_once('.')?;
            Some(GpuInfo {
                name: f.first()?.to_string(),
                memory_mib: f.get(1)?.parse().ok()?,
                capability: (maj.parse().ok()?, min.parse().ok()?),
            })
        })
        .collect()
}

/// Refuses bf16 on a GPU without native bf16, with the fix.
pub fn check_dtype(device: Device, dtype: DType) -> Result<(), TrainError> {
    if let (Device::Cuda(i), DType::Bf16) = (device, dtype) {
        if let Some(g) = gpus().get(i) {
            if !g.native_bf16() {
                return Err(TrainError::Config(format!(
                    "GPU {i} ({}, compute capability {}.{}) has no native bf16: set model.dtype = \"f16\" (f32 master \
                     weights and loss scaling) or \"f32\"",
                    g.name, g.capability.0, g.capability.1
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gpu_that_is_not_there_is_a_clear_error() {
        assert_eq!(DeviceSpec::Cpu.resolve().unwrap(), Device::Cpu);
        let beyond = DeviceSpec::Cuda(1 << 20).resolve().unwrap_err().to_string();
        let expected = if Cuda::is_available() { "GPU(s) are visible" } else { "no usable GPU" };
        assert!(beyond.contains(expected), "{beyond}");
    }
}
