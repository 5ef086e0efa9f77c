//! Strict loading of a checkpoint into the variables of a `VarStore`.
use crate::{Checkpoint, Result, WeightsError};
use std::collections::{BTreeMap, BTreeSet};
use tch::nn::VarStore;

/// What a checkpoint key means for the model being loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMapping {
    /// Fill the variable with this name.
    Var(String),
    /// A tensor that is known and deliberately not loaded (a tied head, the text tower of a SigLIP checkpoint,
    /// a non-persistent buffer saved by an old exporter).
    Ignore,
}

#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub loaded: usize,
    pub ignored: Vec<String>,
}

/// Copies every checkpoint tensor into the variable `map` names, casting to the variable's dtype and device.
///
/// Errors: a key mapped to no variable (unexpected), a variable no key filled (missing), a shape mismatch, a
/// non-float tensor. Each error names the key and its file. `map` sees the key as stored in the file.
pub fn load_into(
    vs: &VarStore,
    ckpt: &Checkpoint,
    map: impl Fn(&str) -> KeyMapping,
) -> Result<LoadReport> {
    load_into_scope(vs, "", ckpt, map)
}

/// `load_into` restricted to the variables whose names start with `scope` (one part of a composed model, e.g.
/// `vision_tower.` from a standalone SigLIP checkpoint); variables outside the scope are neither filled nor missing.
pub fn load_into_scope(
    vs: &VarStore,
    scope: &str,
    ckpt: &Checkpoint,
    map: impl Fn(&str) -> KeyMapping,
) -> Result<LoadReport> {
    let vars: std::collections::HashMap<String, tch::Tensor> =
        vs.variables().into_iter().filter(|(k, _)| k.starts_with(scope)).collect();
    let mut filled = BTreeSet::new();
    let mut report = LoadReport::default();
    let mut unexpected: BTreeMap<String, String> = BTreeMap::new();
    let mut plan = Vec::new();
    for key in ckpt.names() {
        match map(key) {
            KeyMapping::Ignore => report.ignored.push(key.to_string()),
            KeyMapping::Var(name) => {
                match vars.get(&name) {
                    Some(var) => {
                        let info = ckpt.info(key).expect("key from the checkpoint");
                        let expected = var.size();
                        if info.shape != expected {
                            return Err(WeightsError::Shape {
                                key: key.to_string(),
                                path: ckpt.file_of(key).to_path_buf(),
                                expected,
                                found: info.shape,
                            });
                        }
                        if !filled.insert(name.clone()) {
                            return Err(WeightsError::Index {
                            path: ckpt.file_of(key).to_path_buf(),
                            msg: format!("two keys map to the parameter `{name}` (the second is `{key}`)"),
                        });
                        }
                        plan.push((key, var));
                    }
                    None => {
                        unexpected.insert(key.to_string(), name);
                    }
                }
            }
        }
    }
    if let Some((key, _)) = unexpected.iter().next() {
        return Err(WeightsError::UnexpectedKey {
            key: key.clone(),
            path: ckpt.file_of(key).to_path_buf(),
            more: unexpected.len() - 1,
        });
    }
    let missing: Vec<&String> = vars.keys().filter(|n| !filled.contains(*n)).collect();
    if !missing.is_empty() {
        let mut missing = missing;
        missing.sort();
        return Err(WeightsError::MissingKey {
            key: missing[0].clone(),
            path: ckpt.origin().to_path_buf(),
            more: missing.len() - 1,
        });
    }
    // Validate everything before touching a variable, then copy one tensor at a time.
    tch::no_grad(|| -> Result<()> {
        for (key, var) in plan {
            let src = ckpt.tensor(key)?;
            let mut dst = var.shallow_clone();
            dst.f_copy_(&src)?;
            report.loaded += 1;
        }
        Ok(())
    })?;
    Ok(report)
}
