//! Resuming: the run state a new run starts from, and continuing a run from its newest good checkpoint. Damaged
//! checkpoints are moved aside first; a changed config is refused with each changed key; a run with no good
//! checkpoint restarts from step 0 with a fresh metrics log (docs/reliability.md).
use crate::checkpoint::{self, RunState};
use crate::config::ExperimentConfig;
use crate::session::Session;
use crate::strategy::{self, Built};
use crate::TrainError;
use sha2::Digest;
use std::collections::{BTreeMap, BTreeSet};
use weights::DType;

/// The config as far as it decides what is learned, as canonical JSON: knobs that do not (logging, evaluation
/// cadence, device) are blanked, so a resumed run may change them; everything else must match the checkpoint's.
fn config_fingerprint(cfg: &ExperimentConfig) -> String {
    let mut c = cfg.clone();
    c.train.log_every = 0;
    c.train.eval_every = 0;
    c.train.checkpoint_every = 0;
    c.train.keep_checkpoints = 0;
    c.eval = Default::default();
    c.log = Default::default();
    c.model.device = crate::device::DeviceSpec::Unspecified;
    c.canonical_json()
}

/// Step 0 of a new run of `world_size` ranks.
pub fn fresh_state(cfg: &ExperimentConfig, built: &Built, world_size: usize) -> RunState {
    let fingerprint = config_fingerprint(cfg);
    RunState {
        loss_scale: if built.base_dtype == DType::F16 { 65536.0 } else { 1.0 },
        config_hash: strategy::hex(&sha2::Sha256::digest(&fingerprint)),
        base_hash: built.base_hash.clone(),
        config: serde_json::from_str(&fingerprint).ok(),
        world_size,
        ..Default::default()
    }
}

/// Continues `s.run` from its newest checkpoint that verifies: weights, optimizer state, data cursor and run state
/// are restored and the metrics log is cut back to that step. In a data-parallel run rank 0 alone moves damaged
/// checkpoints aside, and every rank must resume the same step (the run directory must be on a filesystem every
/// node sees).
pub fn resume(s: &mut Session) -> Result<(), TrainError> {
    s.resumed = true;
    if s.run.is_writer() {
        for (to, why) in checkpoint::quarantine_damaged(&s.run.checkpoints())? {
            eprintln!("warning: {why}\n  moved to {} (never resumed from or kept)", to.display());
        }
    }
    s.group.barrier().map_err(crate::parallel::c10d)?;
    let latest = checkpoint::latest_good(&s.run.checkpoints())?;
    let step = latest.as_ref().map_or(0, |(_, saved)| saved.step);
    crate::parallel::check_agree(&s.group, "the step to resume from", step as u64)?;
    let Some((dir, saved)) = latest else {
        let old = s.run.restart_metrics()?;
        let kept = old.map(|p| format!(" (the earlier log is kept as {})", p.display()));
        if s.run.is_writer() {
            eprintln!(
                "no good checkpoint in {}: starting from step 0{}",
                s.run.checkpoints().display(),
                kept.unwrap_or_default()
            );
        }
        return Ok(());
    };
    check_same_run(&dir, &saved, &s.state)?;
    let opt_state = checkpoint::load(&dir, &s.built.trainables)?;
    s.optimizer.load_state(&opt_state, saved.step as i64).map_err(TrainError::Checkpoint)?;
    let cursor = rsicd_data::Cursor { epoch: saved.cursor_epoch, position: saved.cursor_position };
    s.td.sampler.resume(cursor);
    s.run.truncate_metrics_after(saved.step)?;
    if s.run.is_writer() {
        eprintln!("resuming {} from step {}", s.run.path.display(), saved.step);
    }
    s.scaler.scale = saved.loss_scale;
    s.scaler.good = saved.good_steps;
    s.state = RunState { config: s.state.config.take(), ..saved };
    Ok(())
}

/// The checkpoint must come from the same config (up to the keys a resume may change) and the same base weights.
fn check_same_run(
    dir: &std::path::Path,
    saved: &RunState,
    now: &RunState,
) -> Result<(), TrainError> {
    if saved.config_hash != now.config_hash {
        let changes = match (&saved.config, &now.config) {
            (Some(old), Some(new)) => config_changes(old, new),
            _ => vec![],
        };
        return Err(TrainError::Checkpoint(format!(
            "{}: the config changed since this checkpoint (only logging, evaluation and device keys may change on \
             resume){}{}",
            dir.display(),
            if changes.is_empty() { "" } else { ":\n  " },
            changes.join("\n  ")
        )));
    }
    if saved.world_size != now.world_size {
        return Err(TrainError::Checkpoint(format!(
            "{}: written by a run of {} rank(s), and this one has {}: the global batch (batch_size x ranks x \
             grad_accum) and so what is learned would change; resume with {} rank(s) (torchrun --nproc-per-node, \
             cargo xtask train --nproc)",
            dir.display(),
            saved.world_size,
            now.world_size,
            saved.world_size
        )));
    }
    if saved.base_hash != now.base_hash {
        return Err(TrainError::Checkpoint(format!(
            "{}: the base weights differ from those this run started from",
            dir.display()
        )));
    }
    Ok(())
}

/// `key: old -> new` for every leaf that differs between two configs (dotted keys, as `--set` takes them).
fn config_changes(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    fn leaves(v: &serde_json::Value, key: String, out: &mut BTreeMap<String, String>) {
        let dot = if key.is_empty() { "" } else { "." };
        match v.as_object() {
            Some(m) => m.iter().for_each(|(k, x)| leaves(x, format!("{key}{dot}{k}"), out)),
            None => drop(out.insert(key, v.to_string())),
        }
    }
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    leaves(old, String::new(), &mut a);
    leaves(new, String::new(), &mut b);
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let shown = |m: &BTreeMap<String, String>, k: &String| {
        m.get(k).cloned().unwrap_or_else(|| "(unset)".into())
    };
    let changed = keys.into_iter().filter(|k| a.get(*k) != b.get(*k));
    changed.map(|k| format!("{k}: {} -> {}", shown(&a, k), shown(&b, k))).collect()
}
