//! Checkpoints that can be trusted: trainable weights, optimizer state and the run state (step, data cursor, loss
//! scale, hashes of the config and of the base weights) written to a temporary directory, fsynced, listed with their
//! sha256 in a manifest, then renamed into place. Resuming verifies the manifest and falls back to the previous
//! checkpoint when the newest is damaged; a resumed run moves damaged checkpoints to `checkpoints/damaged/`, so they
//! are never counted among the checkpoints kept, and pruning never removes the checkpoint just written.
use crate::TrainError;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunState {
    /// Optimizer steps completed.
    pub step: usize,
    pub cursor_epoch: u64,
    pub cursor_position: usize,
    pub nan_hits: usize,
    pub loss_scale: f64,
    pub good_steps: usize,
    pub config_hash: String,
    pub base_hash: String,
    /// The normalized config `config_hash` is computed from, so a refused resume can name the keys that changed.
    /// Absent in checkpoints written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    /// Ranks of the data-parallel run that wrote it (1: one process); a resume needs as many (the global batch,
    /// and so what is learned, depends on it). Checkpoints written before it was recorded come from one process.
    #[serde(default = "one_rank")]
    pub world_size: usize,
    /// The best validation so far (`train.select_best`), validations since it improved, and whether early stopping
    /// ended training (a resume then goes straight to the final evaluation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<crate::selection::Best>,
    #[serde(default)]
    pub evals_since_best: usize,
    #[serde(default)]
    pub stopped_early: bool,
}

fn one_rank() -> usize {
    1
}

const FILES: [&str; 3] = ["trainable.safetensors", "optimizer.safetensors", "state.json"];

fn io(path: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |e| TrainError::Io(format!("{}: {e}", path.display()))
}

fn sha256_file(path: &Path) -> Result<String, TrainError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    Ok(crate::strategy::hex(&sha2::Sha256::digest(&bytes)))
}

fn write_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), TrainError> {
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.detach().to_device(Device::Cpu).contiguous()))
        .collect();
    Tensor::write_safetensors(&cpu, path).map_err(TrainError::Torch)
}

fn sync(path: &Path) -> Result<(), TrainError> {
    std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(io(path))
}

/// `checkpoints/step-000120/`.
pub fn dir_for(root: &Path, step: usize) -> PathBuf {
    root.join(format!("step-{step:06}"))
}

/// Writes a checkpoint atomically and keeps only the newest `keep`.
pub fn save(
    root: &Path,
    state: &RunState,
    trainables: &[(String, Tensor)],
    optimizer: &[(String, Tensor)],
    keep: usize,
) -> Result<PathBuf, TrainError> {
    std::fs::create_dir_all(root).map_err(io(root))?;
    let final_dir = dir_for(root, state.step);
    let tmp = root.join(format!(".tmp-step-{:06}-{}", state.step, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    write_tensors(&tmp.join(FILES[0]), trainables)?;
    write_tensors(&tmp.join(FILES[1]), optimizer)?;
    std::fs::write(tmp.join(FILES[2]), serde_json::to_vec_pretty(state).expect("json"))
        .map_err(io(&tmp))?;
    let mut manifest = serde_json::Map::new();
    for f in FILES {
        sync(&tmp.join(f))?;
        manifest.insert(f.into(), sha256_file(&tmp.join(f))?.into());
    }
    let mpath = tmp.join("manifest.json");
    let mut file = std::fs::File::create(&mpath).map_err(io(&mpath))?;
    file.write_all(&serde_json::to_vec_pretty(&manifest).expect("json")).map_err(io(&mpath))?;
    file.sync_all().map_err(io(&mpath))?;
    let _ = std::fs::remove_dir_all(&final_dir);
    std::fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
    if let Ok(d) = std::fs::File::open(root) {
        let _ = d.sync_all();
    }
    prune(root, keep, state.step);
    Ok(final_dir)
}

/// `checkpoints/best/`: the files of the step checkpoint `from`, hard-linked (checkpoint files are written once and
/// never changed, so a link is a copy that costs nothing) or copied, then swapped in whole. It is not a `step-`
/// directory, so pruning and resuming never touch it.
pub fn save_best(root: &Path, from: &Path) -> Result<PathBuf, TrainError> {
    let (best, pid) = (root.join("best"), std::process::id());
    let (tmp, old) = (root.join(format!(".tmp-best-{pid}")), root.join(format!(".old-best-{pid}")));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    for f in FILES.iter().chain(&["manifest.json"]) {
        let (src, dst) = (from.join(f), tmp.join(f));
        std::fs::hard_link(&src, &dst)
            .or_else(|_| std::fs::copy(&src, &dst).map(drop))
            .map_err(io(&src))?;
    }
    if best.exists() {
        std::fs::rename(&best, &old).map_err(io(&best))?;
    }
    std::fs::rename(&tmp, &best).map_err(io(&best))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(best)
}

/// Step directories, newest first.
pub fn list(root: &Path) -> Vec<(usize, PathBuf)> {
    let mut out: Vec<(usize, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let step = name.strip_prefix("step-")?.parse().ok()?;
            Some((step, e.path()))
        })
        .collect();
    out.sort_by_key(|x| std::cmp::Reverse(x.0));
    out
}

/// Keeps the newest `keep` checkpoints, and always the one just written (`saved`), whatever else is there.
fn prune(root: &Path, keep: usize, saved: usize) {
    let others = list(root).into_iter().filter(|(step, _)| *step != saved);
    for (_, dir) in others.skip(keep.max(1) - 1) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Moves every checkpoint that fails verification to `checkpoints/damaged/` (kept for inspection, never resumed
/// from, never counted by pruning) and returns what was moved, with the reason.
pub fn quarantine_damaged(root: &Path) -> Result<Vec<(PathBuf, String)>, TrainError> {
    let mut moved = vec![];
    for (_, dir) in list(root) {
        if let Err(e) = verify(&dir) {
            let aside = root.join("damaged");
            std::fs::create_dir_all(&aside).map_err(io(&aside))?;
            let mut to = aside.join(dir.file_name().expect("step dir"));
            let mut n = 1;
            while to.exists() {
                n += 1;
                to = aside
                    .join(format!("{}-{n}", dir.file_name().expect("step dir").to_string_lossy()));
            }
            std::fs::rename(&dir, &to).map_err(io(&dir))?;
            moved.push((to, e.to_string()));
        }
    }
    Ok(moved)
}

/// Checks a checkpoint directory against its manifest; returns its state.
pub fn verify(dir: &Path) -> Result<RunState, TrainError> {
    let damaged = |why: String| TrainError::Checkpoint(format!("{}: {why}", dir.display()));
    let mpath = dir.join("manifest.json");
    let manifest: HashMap<String, String> = serde_json::from_slice(
        &std::fs::read(&mpath).map_err(|e| damaged(format!("manifest.json: {e}")))?,
    )
    .map_err(|e| damaged(format!("manifest.json: {e}")))?;
    for f in FILES {
        let want = manifest.get(f).ok_or_else(|| damaged(format!("manifest lacks {f}")))?;
        let got = sha256_file(&dir.join(f)).map_err(|e| damaged(e.to_string()))?;
        if &got != want {
            return Err(damaged(format!(
                "{f} does not match its checksum (damaged or partly written)"
            )));
        }
    }
    serde_json::from_slice(&std::fs::read(dir.join(FILES[2])).map_err(io(dir))?)
        .map_err(|e| damaged(format!("state.json: {e}")))
}

/// The newest checkpoint that verifies, with a warning for each damaged newer one.
pub fn latest_good(root: &Path) -> Result<Option<(PathBuf, RunState)>, TrainError> {
    for (_, dir) in list(root) {
        match verify(&dir) {
            Ok(state) => return Ok(Some((dir, state))),
            Err(e) => tracing::warn!("skipping a damaged checkpoint: {e}"),
        }
    }
    Ok(None)
}

/// Copies the checkpoint's trainable tensors into `trainables` (names and shapes must match exactly) and returns
/// the optimizer state tensors.
pub fn load(
    dir: &Path,
    trainables: &[(String, Tensor)],
) -> Result<HashMap<String, Tensor>, TrainError> {
    let saved: HashMap<String, Tensor> = Tensor::read_safetensors(dir.join(FILES[0]))
        .map_err(TrainError::Torch)?
        .into_iter()
        .collect();
    for (name, t) in trainables {
        let src = saved.get(name).ok_or_else(|| {
            TrainError::Checkpoint(format!(
                "{}: no tensor `{name}`: the run's trainables changed",
                dir.display()
            ))
        })?;
        if src.size() != t.size() {
            return Err(TrainError::Checkpoint(format!(
                "{}: `{name}` has shape {:?}, the model has {:?}",
                dir.display(),
                src.size(),
                t.size()
            )));
        }
        tch::no_grad(|| t.shallow_clone().copy_(src));
    }
    if let Some(extra) = saved.keys().find(|k| !trainables.iter().any(|(n, _)| n == *k)) {
        return Err(TrainError::Checkpoint(format!(
            "{}: unexpected tensor `{extra}`",
            dir.display()
        )));
    }
    Ok(Tensor::read_safetensors(dir.join(FILES[1]))
        .map_err(TrainError::Torch)?
        .into_iter()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn state(step: usize) -> RunState {
        RunState {
            step,
            cursor_epoch: 0,
            cursor_position: step * 2,
            nan_hits: 0,
            loss_scale: 1.0,
            good_steps: step,
            config_hash: "c".into(),
            base_hash: "b".into(),
            config: None,
            world_size: 1,
            ..Default::default()
        }
    }

    #[test]
    fn damaged_newest_falls_back_to_previous() {
        let root = std::env::temp_dir().join(format!("pg-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let w = vec![("w".to_string(), Tensor::ones([4], (Kind::Float, Device::Cpu)))];
        save(&root, &state(2), &w, &[], 3).unwrap();
        let w4 = vec![("w".to_string(), Tensor::ones([4], (Kind::Float, Device::Cpu)) * 2.0)];
        let newest = save(&root, &state(4), &w4, &[], 3).unwrap();
        assert_eq!(latest_good(&root).unwrap().unwrap().1.step, 4);
        // truncate the newest weights: detected, the step-2 checkpoint is used
        let f = newest.join("trainable.safetensors");
        let bytes = std::fs::read(&f).unwrap();
        std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
        assert!(verify(&newest).unwrap_err().to_string().contains("does not match its checksum"));
        let (dir, st) = latest_good(&root).unwrap().unwrap();
        assert_eq!(st.step, 2);
        let target = vec![("w".to_string(), Tensor::zeros([4], (Kind::Float, Device::Cpu)))];
        load(&dir, &target).unwrap();
        assert_eq!(f64::try_from(target[0].1.sum(Kind::Float)).unwrap(), 4.0);
        // a half-written checkpoint directory (no rename happened) is never listed
        std::fs::create_dir_all(root.join(".tmp-step-000006-1")).unwrap();
        assert_eq!(list(&root).len(), 2);
        // pruning keeps the newest
        save(&root, &state(6), &w, &[], 2).unwrap();
        assert_eq!(list(&root).iter().map(|x| x.0).collect::<Vec<_>>(), [6, 4]);
        let wrong = vec![("v".to_string(), Tensor::zeros([4], (Kind::Float, Device::Cpu)))];
        assert!(load(&dir_for(&root, 6), &wrong)
            .unwrap_err()
            .to_string()
            .contains("no tensor `v`"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// Issue 9, item 2: when every checkpoint is damaged, new ones must survive pruning.
    #[test]
    fn damaged_checkpoints_are_moved_aside_and_never_kept_instead_of_new_ones() {
        let root = std::env::temp_dir().join(format!("pg-ckpt-damaged-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let w = vec![("w".to_string(), Tensor::ones([4], (Kind::Float, Device::Cpu)))];
        for step in [10, 20] {
            let dir = save(&root, &state(step), &w, &[], 5).unwrap();
            std::fs::write(dir.join("trainable.safetensors"), b"damaged").unwrap();
        }
        assert!(latest_good(&root).unwrap().is_none());
        // Even before quarantine, a new checkpoint with a lower step is never pruned in favour of newer numbers.
        save(&root, &state(1), &w, &[], 2).unwrap();
        assert!(dir_for(&root, 1).exists(), "the checkpoint just written was pruned");
        assert_eq!(list(&root).iter().map(|x| x.0).collect::<Vec<_>>(), [20, 1]);
        let moved = quarantine_damaged(&root).unwrap();
        assert_eq!(moved.len(), 1, "{moved:?}");
        assert!(moved[0].1.contains("does not match its checksum"), "{}", moved[0].1);
        assert!(root.join("damaged/step-000020").exists());
        save(&root, &state(2), &w, &[], 1).unwrap();
        assert_eq!(list(&root).iter().map(|x| x.0).collect::<Vec<_>>(), [2]);
        assert_eq!(latest_good(&root).unwrap().unwrap().1.step, 2);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
