//! The environment contract of `torchrun` (and of `cargo xtask train --nproc`, which sets the same variables):
//! https://pytorch.org/docs/stable/elastic/run.html#environment-variables
use crate::DistError;

/// Where this process sits in a run and where the rendezvous is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankEnv {
    pub rank: usize,
    pub local_rank: usize,
    pub world_size: usize,
    pub master_addr: String,
    pub master_port: u16,
}

impl RankEnv {
    /// A single process: rank 0 of 1 (no variables needed).
    pub fn single() -> Self {
        Self {
            rank: 0,
            local_rank: 0,
            world_size: 1,
            master_addr: "127.0.0.1".into(),
            master_port: 0,
        }
    }

    /// Reads the process's environment: `single()` when `WORLD_SIZE` is unset, else every variable is required.
    pub fn from_env() -> Result<Self, DistError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// As `from_env`, from any lookup (tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, DistError> {
        if get("WORLD_SIZE").is_none() {
            return Ok(Self::single());
        }
        let num = |name: &'static str| -> Result<usize, DistError> {
            let v = get(name).ok_or_else(|| DistError::Env {
                name,
                msg: "not set (torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT)".into(),
            })?;
            v.trim().parse().map_err(|_| DistError::Env {
                name,
                msg: format!("`{v}` is not a non-negative integer"),
            })
        };
        let world_size = num("WORLD_SIZE")?;
        let rank = num("RANK")?;
        let local_rank = num("LOCAL_RANK")?;
        if world_size == 0 {
            return Err(DistError::Env { name: "WORLD_SIZE", msg: "must be at least 1".into() });
        }
        if rank >= world_size {
            return Err(DistError::Env {
                name: "RANK",
                msg: format!("{rank} is not below WORLD_SIZE {world_size}"),
            });
        }
        let master_addr = get("MASTER_ADDR")
            .filter(|a| !a.trim().is_empty())
            .ok_or(DistError::Env { name: "MASTER_ADDR", msg: "not set".into() })?;
        let port = num("MASTER_PORT")?;
        let master_port = u16::try_from(port).ok().filter(|p| *p > 0).ok_or(DistError::Env {
            name: "MASTER_PORT",
            msg: format!("{port} is not a TCP port (1-65535)"),
        })?;
        Ok(Self { rank, local_rank, world_size, master_addr, master_port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<RankEnv, DistError> {
        let m: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        RankEnv::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn the_torchrun_contract_is_read_and_checked() {
        assert_eq!(env(&[]).unwrap(), RankEnv::single());
        let full = [
            ("WORLD_SIZE", "4"),
            ("RANK", "3"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node0"),
            ("MASTER_PORT", "29500"),
        ];
        let e = env(&full).unwrap();
        assert_eq!((e.rank, e.local_rank, e.world_size, e.master_port), (3, 1, 4, 29500));
        assert_eq!(e.master_addr, "node0");
        for (key, bad, want) in [
            ("RANK", "4", "RANK: 4 is not below WORLD_SIZE 4"),
            ("RANK", "x", "RANK: `x` is not a non-negative integer"),
            ("MASTER_PORT", "70000", "MASTER_PORT: 70000 is not a TCP port"),
            ("WORLD_SIZE", "0", "WORLD_SIZE: must be at least 1"),
        ] {
            let pairs: Vec<(&str, &str)> =
                full.iter().map(|&(k, v)| if k == key { (k, bad) } else { (k, v) }).collect();
            let msg = env(&pairs).unwrap_err().to_string();
            assert!(msg.contains(want), "{key}={bad}: {msg}");
        }
        let missing: Vec<_> = full.iter().copied().filter(|(k, _)| *k != "LOCAL_RANK").collect();
        assert!(env(&missing).unwrap_err().to_string().contains("LOCAL_RANK: not set"));
    }
}
