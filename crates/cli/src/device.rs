//! `--device` parsing with a useful error when CUDA is asked for but not usable.
use anyhow::{bail, Result};
use tch::{Cuda, Device};

pub fn parse(s: &str) -> Result<Device> {
    let device = match s {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        _ => match s.strip_prefix("cuda:").and_then(|i| i.parse::<usize>().ok()) {
            Some(i) => Device::Cuda(i),
            None => bail!("unknown device `{s}`: expected cpu, cuda or cuda:N"),
        },
    };
    if let Device::Cuda(i) = device {
        if !Cuda::is_available() {
            bail!("CUDA was requested but libtorch sees no usable GPU; run `cargo xtask doctor` for the cause and fix");
        }
        let n = Cuda::device_count() as usize;
        if i >= n {
            bail!("cuda:{i} requested but only {n} GPU(s) are visible");
        }
    }
    Ok(device)
}
