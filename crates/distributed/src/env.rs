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

/// The variables of the contract, as `from_env` reads them.
const VARS: [&str; 5] = ["RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"];

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

    /// Rank `rank` of `world` processes on this machine meeting at `127.0.0.1:port`; `single()` for world 1.
    pub fn local(rank: usize, world: usize, port: u16) -> Self {
        if world <= 1 {
            return Self::single();
        }
        let master_addr = "127.0.0.1".into();
        Self { rank, local_rank: rank, world_size: world, master_addr, master_port: port }
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

    /// `from_env`'s inverse, for launchers: sets this rank's variables on a child, or for `single()` (world 1)
    /// removes them, so the child runs as one process whatever the launcher's own environment says.
    pub fn apply_to<'a>(
        &self,
        cmd: &'a mut std::process::Command,
    ) -> &'a mut std::process::Command {
        for var in VARS {
            cmd.env_remove(var);
        }
        if self.world_size > 1 {
            cmd.env("RANK", self.rank.to_string())
                .env("LOCAL_RANK", self.local_rank.to_string())
                .env("WORLD_SIZE", self.world_size.to_string())
                .env("MASTER_ADDR", &self.master_addr)
                .env("MASTER_PORT", self.master_port.to_string());
        }
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// What `apply_to` leaves on a command, read back through `from_lookup`.
    fn applied(env: &RankEnv) -> Result<RankEnv, DistError> {
        let mut cmd = std::process::Command::new("true");
        cmd.env("WORLD_SIZE", "9").env("RANK", "8");
        env.apply_to(&mut cmd);
        let set: HashMap<String, Option<String>> = cmd
            .get_envs()
            .map(|(k, v)| {
                (k.to_string_lossy().into_owned(), v.map(|v| v.to_string_lossy().into_owned()))
            })
            .collect();
        RankEnv::from_lookup(|k| set.get(k).cloned().flatten())
    }

    #[test]
    fn a_launched_rank_reads_back_what_its_launcher_applied() {
        let two = RankEnv::local(1, 2, 29517);
        assert_eq!((two.rank, two.local_rank, two.world_size, two.master_port), (1, 1, 2, 29517));
        assert_eq!(applied(&two).unwrap(), two);
        assert_eq!(RankEnv::local(0, 1, 29517), RankEnv::single());
        // World 1 removes the launcher's own variables (set to 9 ranks above).
        assert_eq!(applied(&RankEnv::single()).unwrap(), RankEnv::single());
    }

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
