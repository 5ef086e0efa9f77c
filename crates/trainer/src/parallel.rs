//! What data parallelism adds to the training loop (docs/distributed.md). Every rank draws the same global
//! micro-batch from the seeded sampler and trains on its slice; each rank's loss is weighted by its share of the
//! global supervised tokens (or examples), so the gradients summed over ranks are those of one process with the
//! global batch (PyTorch's DistributedDataParallel averages instead, which equals this only when every rank has the
//! same number of tokens). Gradients are summed in flat buckets before the guards and clipping, so every rank sees
//! the same gradient and makes the same decision; trainables start from rank 0's; a stop needs every rank's vote.
//! With one process every collective is the identity and nothing here costs anything.
use crate::config::ExperimentConfig;
use crate::device::DeviceSpec;
use crate::TrainError;
use distributed::{ProcessGroup, RankEnv};
use paligemma::{LossReduction, Sequence, IGNORE};
use std::time::Duration;
use tch::Tensor;

/// Gradients travel in flat buffers of this size (DistributedDataParallel's default `bucket_cap_mb`).
pub const BUCKET_BYTES: usize = 25 << 20;

/// Which slice of each global micro-batch this process trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub rank: usize,
    pub world: usize,
}

impl Shard {
    /// One process: the whole batch.
    pub const ALL: Shard = Shard { rank: 0, world: 1 };

    pub fn of(group: &ProcessGroup) -> Self {
        Self { rank: group.rank(), world: group.world_size() }
    }

    /// The positions of this rank's `n` samples in a global micro-batch of `n * world`.
    pub fn range(self, n: usize) -> std::ops::Range<usize> {
        self.rank * n..(self.rank + 1) * n
    }
}

/// What the loss is normalised by, counted over the samples of one micro-batch (the loss skips the first position,
/// which is never supervised, and an example-mean counts only examples with a supervised token).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub tokens: i64,
    pub examples: i64,
}

impl Counts {
    pub fn of(seqs: &[Sequence]) -> Self {
        let per: Vec<i64> = seqs
            .iter()
            .map(|s| s.labels.iter().skip(1).filter(|&&l| l != IGNORE).count() as i64)
            .collect();
        Self { tokens: per.iter().sum(), examples: per.iter().filter(|&&n| n > 0).count() as i64 }
    }

    /// This rank's share of the global loss: its mean is multiplied by this before backward, so the sum over ranks
    /// is the global mean.
    pub fn share_of(self, global: Counts, reduction: LossReduction) -> f64 {
        let (mine, all) = match reduction {
            LossReduction::TokenMean => (self.tokens, global.tokens),
            LossReduction::ExampleMean => (self.examples, global.examples),
        };
        mine as f64 / all.max(1) as f64
    }
}

/// The seed of one step's randomness (LoRA dropout, checkpointed blocks): from (seed, step), and the rank, so ranks
/// draw independent masks; rank 0 draws what a single process draws.
pub fn step_seed(seed: u64, step: usize, rank: usize) -> i64 {
    let base = (seed as i64).wrapping_mul(1_000_003).wrapping_add(step as i64);
    base.wrapping_add((rank as i64).wrapping_mul(0x9E37_79B9))
}

fn rank_env() -> Result<RankEnv, TrainError> {
    RankEnv::from_env().map_err(|e| TrainError::Config(e.to_string()))
}

/// The config as this rank runs it: with several ranks on GPUs, rank `LOCAL_RANK` takes GPU `LOCAL_RANK` (torchrun's
/// convention), or the one GPU it sees when the scheduler gave each rank its own (`srun --gpus-per-task=1`).
pub fn for_this_rank(cfg: &ExperimentConfig) -> Result<ExperimentConfig, TrainError> {
    let env = rank_env()?;
    let mut cfg = cfg.clone();
    if env.world_size > 1 && matches!(cfg.model.device, DeviceSpec::Cuda(_)) {
        let visible = tch::Cuda::device_count() as usize;
        cfg.model.device = DeviceSpec::Cuda(if visible == 1 { 0 } else { env.local_rank });
    }
    Ok(cfg)
}

/// Joins the run the launcher's environment describes (one process joins nothing); waiting longer than `timeout`
/// for the others, or later for any collective, is an error rather than a hang.
/// Gloo on CPU, NCCL on GPUs.
pub fn join(device: DeviceSpec, timeout: Duration) -> Result<ProcessGroup, TrainError> {
    let env = rank_env()?;
    ProcessGroup::init_for(&env, timeout, device.resolve()?).map_err(c10d)
}

pub(crate) fn c10d(e: distributed::DistError) -> TrainError {
    TrainError::Stopped(format!("data-parallel training stopped: {e}"))
}

/// Sums the accumulated gradients over ranks (flat buckets, one collective each).
pub fn sum_gradients(
    group: &ProcessGroup,
    trainables: &[(String, Tensor)],
) -> Result<(), TrainError> {
    if group.world_size() == 1 {
        return Ok(());
    }
    let mut grads: Vec<Tensor> =
        trainables.iter().map(|(_, t)| t.grad()).filter(Tensor::defined).collect();
    group.all_reduce_sum_bucketed(&mut grads, BUCKET_BYTES).map_err(c10d)
}

/// Sums small per-step values over ranks (the weighted loss, token counts, a data error flag).
pub fn sum_values<const N: usize>(
    group: &ProcessGroup,
    values: [f64; N],
) -> Result<[f64; N], TrainError> {
    if group.world_size() == 1 {
        return Ok(values);
    }
    let mut t = [Tensor::from_slice(&values).to_device(group.device())];
    group.all_reduce_sum(&mut t).map_err(c10d)?;
    let summed =
        Vec::<f64>::try_from(&t[0].to_device(tch::Device::Cpu)).map_err(TrainError::Torch)?;
    Ok(std::array::from_fn(|i| summed[i]))
}

/// Overwrites every rank's trainables with rank 0's (before the first step).
pub fn broadcast_trainables(
    group: &ProcessGroup,
    trainables: &[(String, Tensor)],
) -> Result<(), TrainError> {
    if group.world_size() == 1 {
        return Ok(());
    }
    for (_, t) in trainables {
        // The collective writes the storage: through a detached alias, not the autograd leaf.
        group.broadcast(&mut t.detach(), 0).map_err(c10d)?;
    }
    Ok(())
}

/// The signal to stop on, once any rank received one: every rank stops at the same step boundary.
pub fn agreed_signal(group: &ProcessGroup) -> Result<Option<interrupt::Signal>, TrainError> {
    let local = interrupt::requested();
    if group.world_size() == 1 {
        return Ok(local);
    }
    let vote = |s: i32| if local == Some(interrupt::Signal(s)) { 1.0 } else { 0.0 };
    let votes = sum_values(group, interrupt::SIGNALS.map(vote))?;
    Ok(interrupt::SIGNALS
        .into_iter()
        .zip(votes)
        .find(|(_, v)| *v > 0.0)
        .map(|(s, _)| interrupt::Signal(s)))
}

/// Every rank's value of something that must agree (a resumed step), or an error naming the ranks that differ.
pub fn check_agree(group: &ProcessGroup, what: &str, value: u64) -> Result<(), TrainError> {
    let all = group.all_gather_bytes(&value.to_le_bytes()).map_err(c10d)?;
    let values: Vec<u64> =
        all.iter().map(|b| u64::from_le_bytes(b.as_slice().try_into().unwrap_or([0; 8]))).collect();
    if values.iter().all(|v| *v == values[0]) {
        return Ok(());
    }
    let listed: Vec<String> =
        values.iter().enumerate().map(|(r, v)| format!("rank {r}: {v}")).collect();
    Err(TrainError::Stopped(format!("the ranks disagree on {what} ({})", listed.join(", "))))
}

/// Rank 0's bytes on every rank.
pub fn from_rank0(group: &ProcessGroup, bytes: &[u8]) -> Result<Vec<u8>, TrainError> {
    let mut all = group.all_gather_bytes(bytes).map_err(c10d)?;
    Ok(all.swap_remove(0))
}

/// Evaluation batches go round-robin to the ranks (batch `k` to rank `k % world`), whole, so each is computed
/// exactly as a single process computes it; the captions come back in batch order on every rank.
pub fn gather_captions(
    group: &ProcessGroup,
    mine: Vec<(usize, Vec<String>)>,
    batches: usize,
) -> Result<Vec<String>, TrainError> {
    if group.world_size() == 1 {
        return Ok(mine.into_iter().flat_map(|(_, c)| c).collect());
    }
    let bytes = serde_json::to_vec(&mine).expect("json");
    let mut by_batch: Vec<Option<Vec<String>>> = vec![None; batches];
    for part in group.all_gather_bytes(&bytes).map_err(c10d)? {
        let got: Vec<(usize, Vec<String>)> = serde_json::from_slice(&part)
            .map_err(|e| TrainError::Stopped(format!("gathered captions unreadable: {e}")))?;
        for (k, captions) in got {
            if let Some(slot) = by_batch.get_mut(k) {
                *slot = Some(captions);
            }
        }
    }
    by_batch
        .into_iter()
        .enumerate()
        .map(|(k, c)| c.ok_or_else(|| TrainError::Stopped(format!("no rank captioned batch {k}"))))
        .collect::<Result<Vec<_>, _>>()
        .map(|v| v.into_iter().flatten().collect())
}

/// Whether evaluation batch `k` is this rank's.
pub fn owns_batch(group: Option<&ProcessGroup>, k: usize) -> bool {
    group.is_none_or(|g| k % g.world_size() == g.rank())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_sum_to_one_and_rank0_seeds_as_one_process() {
        let (a, b) = (Counts { tokens: 7, examples: 2 }, Counts { tokens: 13, examples: 2 });
        let all = Counts { tokens: 20, examples: 4 };
        for r in [LossReduction::TokenMean, LossReduction::ExampleMean] {
            assert!((a.share_of(all, r) + b.share_of(all, r) - 1.0).abs() < 1e-15);
        }
        assert_eq!(a.share_of(all, LossReduction::TokenMean), 0.35);
        assert_eq!(step_seed(3, 5, 0), 3 * 1_000_003 + 5);
        assert_ne!(step_seed(3, 5, 1), step_seed(3, 5, 0));
        assert_eq!(Shard { rank: 1, world: 2 }.range(3), 3..6);
    }
}
