//! LoRA adapters in the HF PEFT layout: `adapter_config.json` + `adapter_model.safetensors` with PEFT's key names
//! (`base_model.model.<module>.lora_A.weight`, module names as transformers 5.x names them), so an adapter trained
//! here loads in PEFT 0.21 and one trained there loads here (strictly: every key must land on a module, both halves
//! must be there, shapes must match). Also merging adapters into the base for export.
use crate::strategy::Built;
use crate::{ExperimentConfig, TrainError};
use layers::LoraConfig;
use paligemma::{names, PaliGemma};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use tch::{nn, Device, Tensor};
use weights::KeyMapping;

const PREFIX: &str = "base_model.model.";

/// Our module name (hub layout) -> the module name transformers 5.x gives it (what PEFT writes).
fn module_5x(module: &str) -> String {
    for [outer, inner] in [names::VISION, names::LANGUAGE] {
        if let Some(rest) = module.strip_prefix(&format!("{outer}.{inner}.")) {
            return format!("model.{outer}.{rest}");
        }
    }
    format!("model.{module}")
}

/// A PEFT key -> `(our module name, "lora_A" | "lora_B")`.
fn parse_key(key: &str) -> Option<(String, &'static str)> {
    let rest = key.strip_prefix(PREFIX).unwrap_or(key);
    let (module, half) = if let Some(m) = rest.strip_suffix(".lora_A.weight") {
        (m, "lora_A")
    } else {
        (rest.strip_suffix(".lora_B.weight")?, "lora_B")
    };
    // map `<module>.weight` through the checkpoint-name rules, then drop `.weight`
    match names::paligemma_key(&format!("{module}.weight")) {
        KeyMapping::Var(v) => Some((v.strip_suffix(".weight")?.to_string(), half)),
        KeyMapping::Ignore => None,
    }
}

fn escape(s: &str) -> String {
    s.replace('.', "\\.")
}

/// Writes the run's adapters in PEFT's layout (plus `paligemma_rs.json` with what PEFT has no field for).
pub fn save_adapter(
    dir: &Path,
    built: &Built,
    lc: &LoraConfig,
    cfg: &ExperimentConfig,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::Io(format!("{}: {e}", dir.display())))?;
    let mut tensors = Vec::new();
    let mut modules = BTreeSet::new();
    for (name, t) in built.adapter_vs.variables() {
        let Some(module) =
            name.strip_suffix(".lora_A.weight").or_else(|| name.strip_suffix(".lora_B.weight"))
        else {
            continue;
        };
        let half = if name.ends_with("lora_A.weight") { "lora_A" } else { "lora_B" };
        let m5 = module_5x(module);
        tensors.push((
            format!("{PREFIX}{m5}.{half}.weight"),
            t.detach().to_device(Device::Cpu).contiguous(),
        ));
        modules.insert(m5);
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let pattern = format!("({})", modules.iter().map(|m| escape(m)).collect::<Vec<_>>().join("|"));
    let config = json!({
        "peft_type": "LORA",
        "task_type": null,
        "base_model_name_or_path": cfg.model.path.as_ref().map(|p| p.display().to_string()),
        "r": lc.r,
        "lora_alpha": lc.lora_alpha,
        "lora_dropout": lc.lora_dropout,
        "use_rslora": lc.use_rslora,
        "target_modules": pattern,
        "bias": "none",
        "fan_in_fan_out": false,
        "init_lora_weights": true,
        "modules_to_save": null,
        "use_dora": false,
        "inference_mode": true,
        "revision": null,
    });
    let tmp = dir.join(".adapter_model.safetensors.tmp");
    Tensor::write_safetensors(&tensors, &tmp)?;
    std::fs::rename(&tmp, dir.join("adapter_model.safetensors"))
        .map_err(|e| TrainError::Io(e.to_string()))?;
    crate::run::write_atomic(
        &dir.join("adapter_config.json"),
        &serde_json::to_vec_pretty(&config).expect("json"),
    )?;
    let meta = json!({"base_hash": built.base_hash, "targets": cfg.lora.as_ref().map(|l| &l.targets), "name": cfg.name});
    crate::run::write_atomic(
        &dir.join("paligemma_rs.json"),
        &serde_json::to_vec_pretty(&meta).expect("json"),
    )?;
    Ok(())
}

/// Loads a PEFT LoRA adapter directory onto `model`, creating the adapter variables under `adapter_vs` (f32).
pub fn load_adapter(
    dir: &Path,
    model: &mut PaliGemma,
    adapter_vs: &nn::VarStore,
) -> Result<LoraConfig, TrainError> {
    let bad = |m: String| TrainError::Config(format!("{}: {m}", dir.display()));
    let cfg_path = dir.join("adapter_config.json");
    let c: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&cfg_path).map_err(|e| bad(format!("adapter_config.json: {e}")))?,
    )
    .map_err(|e| bad(format!("adapter_config.json: {e}")))?;
    if c["peft_type"] != "LORA" {
        return Err(bad(format!("peft_type {} is not supported (LoRA only)", c["peft_type"])));
    }
    for (key, ok) in [
        ("use_dora", c["use_dora"].as_bool() != Some(true)),
        ("fan_in_fan_out", c["fan_in_fan_out"].as_bool() != Some(true)),
        ("bias", c["bias"].is_null() || c["bias"] == "none"),
        (
            "modules_to_save",
            c["modules_to_save"].is_null()
                || c["modules_to_save"].as_array().is_some_and(|a| a.is_empty()),
        ),
    ] {
        if !ok {
            return Err(bad(format!("`{key}` = {} is not supported", c[key])));
        }
    }
    let lc = LoraConfig {
        r: c["r"].as_i64().ok_or_else(|| bad("`r` missing".into()))?,
        lora_alpha: c["lora_alpha"].as_f64().ok_or_else(|| bad("`lora_alpha` missing".into()))?,
        lora_dropout: c["lora_dropout"].as_f64().unwrap_or(0.0),
        use_rslora: c["use_rslora"].as_bool().unwrap_or(false),
    };
    let weights_path = dir.join("adapter_model.safetensors");
    let saved = Tensor::read_safetensors(&weights_path)
        .map_err(|e| bad(format!("adapter_model.safetensors: {e}")))?;
    let mut halves: BTreeMap<String, [Option<Tensor>; 2]> = BTreeMap::new();
    for (key, t) in saved {
        let (module, half) = parse_key(&key)
            .ok_or_else(|| bad(format!("unexpected key `{key}` (not a LoRA weight)")))?;
        halves.entry(module).or_default()[usize::from(half == "lora_B")] = Some(t);
    }
    let mut linears: BTreeMap<String, &mut layers::Linear> =
        model.linears_mut().into_iter().collect();
    for (module, [a, b]) in halves {
        let (a, b) = match (a, b) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(bad(format!("module `{module}` lacks lora_A or lora_B"))),
        };
        let linear = linears.get_mut(&module).ok_or_else(|| {
            bad(format!("the adapter targets `{module}`, which this model does not have"))
        })?;
        let mut path = adapter_vs.root();
        for part in module.split('.') {
            path = path.sub(part);
        }
        linear.add_lora(path, &lc)?;
        let (va, vb) = linear.lora_weights().expect("just added");
        for (src, dst, half) in [(&a, va, "lora_A"), (&b, vb, "lora_B")] {
            if src.size() != dst.size() {
                return Err(bad(format!(
                    "`{module}.{half}` has shape {:?}, expected {:?}",
                    src.size(),
                    dst.size()
                )));
            }
            tch::no_grad(|| dst.shallow_clone().copy_(src));
        }
    }
    Ok(lc)
}

/// Where `p` is: absolute, with symlinks resolved for the part that exists, and the part that does not yet exist
/// appended lexically (so a target not created yet compares correctly with the directories a run reads).
pub fn resolve_path(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
    };
    let comps: Vec<Component> = abs.components().collect();
    for k in (1..=comps.len()).rev() {
        let prefix: PathBuf = comps[..k].iter().collect();
        if let Ok(mut out) = prefix.canonicalize() {
            for c in &comps[k..] {
                match c {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::Normal(n) => out.push(n),
                    _ => {}
                }
            }
            return out;
        }
    }
    abs
}

/// Checks an export target before anything is written: it must not be, hold or lie inside any of `inputs` (what
/// it is, path: the directories the run reads), and it must be empty or new unless `overwrite`. Even with
/// `overwrite`, a sharded model there is refused: loaders would read its index instead of the exported file.
pub fn check_export_target(
    out: &Path,
    inputs: &[(String, PathBuf)],
    overwrite: bool,
) -> Result<(), TrainError> {
    let bad = |m: String| Err(TrainError::Config(format!("{}: {m}", out.display())));
    let target = resolve_path(out);
    for (what, dir) in inputs {
        let dir_abs = resolve_path(dir);
        let relation = if target == dir_abs {
            "is"
        } else if target.starts_with(&dir_abs) {
            "is inside"
        } else if dir_abs.starts_with(&target) {
            "contains"
        } else {
            continue;
        };
        return bad(format!(
            "refusing to export here: it {relation} {what}, {}, which the run reads; choose a new directory",
            dir_abs.display()
        ));
    }
    if out.exists() {
        if !out.is_dir() {
            return bad("exists and is not a directory".into());
        }
        let mut entries: Vec<String> = std::fs::read_dir(out)
            .map_err(|e| TrainError::Io(format!("{}: {e}", out.display())))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        entries.sort();
        if !entries.is_empty() && !overwrite {
            return bad(format!(
                "the directory is not empty ({} entries: {}); pass --overwrite to replace model.safetensors, \
                 config.json and tokenizer.json in it, or choose a new directory",
                entries.len(),
                entries.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                    + if entries.len() > 3 { ", …" } else { "" }
            ));
        }
        if entries.iter().any(|e| e == "model.safetensors.index.json") {
            return bad(
                "holds a sharded model (model.safetensors.index.json), which loaders would read instead of the \
                 exported model.safetensors; remove it or choose a new directory"
                    .into(),
            );
        }
    }
    Ok(())
}

/// The files an export writes, in the order they are renamed into place.
const EXPORT_FILES: [&str; 3] = ["model.safetensors", "config.json", "tokenizer.json"];

fn staged(out: &Path, name: &str) -> PathBuf {
    out.join(format!(".{name}.export-tmp"))
}

/// Folds every adapter into the base weights and writes an HF-format model directory (hub names; no adapter files),
/// loadable by `cargo xtask caption` and by transformers. Every file is written under a temporary name first and
/// renamed only once all of them are complete, so a failed export leaves no half-written model (and removes the
/// directory if it created it), and no file is ever copied onto itself. The directory the tokenizer comes from (the
/// base model's) is refused as a target; the caller checks the rest with [`check_export_target`].
pub fn export_merged(
    model: &mut PaliGemma,
    base_vs: &nn::VarStore,
    tokenizer: &Path,
    out: &Path,
) -> Result<(), TrainError> {
    let source_dir =
        tokenizer.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if resolve_path(out) == resolve_path(source_dir) {
        return Err(TrainError::Config(format!(
            "{}: refusing to export into the directory the tokenizer {} is read from (the base model); \
             choose a new directory",
            out.display(),
            tokenizer.display()
        )));
    }
    let tokenizer_bytes = std::fs::read(tokenizer)
        .map_err(|e| TrainError::Io(format!("{}: {e}", tokenizer.display())))?;
    for (_, linear) in model.linears_mut() {
        if linear.has_lora() {
            linear.merge()?;
        }
    }
    let created = !out.exists();
    std::fs::create_dir_all(out).map_err(|e| TrainError::Io(format!("{}: {e}", out.display())))?;
    let write_all = || -> Result<(), TrainError> {
        let mut tensors: Vec<(String, Tensor)> = base_vs
            .variables()
            .into_iter()
            .map(|(n, t)| (n, t.detach().to_device(Device::Cpu).contiguous()))
            .collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        Tensor::write_safetensors(&tensors, staged(out, "model.safetensors"))?;
        let io =
            |p: PathBuf| move |e: std::io::Error| TrainError::Io(format!("{}: {e}", p.display()));
        let cfg = staged(out, "config.json");
        std::fs::write(&cfg, model.config.to_json().as_bytes()).map_err(io(cfg.clone()))?;
        let tok = staged(out, "tokenizer.json");
        std::fs::write(&tok, &tokenizer_bytes).map_err(io(tok.clone()))?;
        for name in EXPORT_FILES {
            std::fs::rename(staged(out, name), out.join(name)).map_err(io(out.join(name)))?;
        }
        Ok(())
    };
    let result = write_all();
    if result.is_err() {
        for name in EXPORT_FILES {
            let _ = std::fs::remove_file(staged(out, name));
        }
        if created {
            let _ = std::fs::remove_dir(out);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_both_ways() {
        let ours = "language_model.model.layers.0.self_attn.q_proj";
        let k = format!("{PREFIX}{}.lora_A.weight", module_5x(ours));
        assert_eq!(
            k,
            "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight"
        );
        assert_eq!(parse_key(&k), Some((ours.to_string(), "lora_A")));
        // older PEFT + transformers 4.x hub names
        let old = "base_model.model.language_model.model.layers.0.self_attn.q_proj.lora_B.weight";
        assert_eq!(parse_key(old), Some((ours.to_string(), "lora_B")));
        let v = "vision_tower.vision_model.encoder.layers.1.mlp.fc1";
        assert_eq!(
            parse_key(&format!("{PREFIX}{}.lora_A.weight", module_5x(v))),
            Some((v.to_string(), "lora_A"))
        );
        assert_eq!(parse_key("base_model.model.model.language_model.norm.weight"), None);
    }

    struct TempDir(PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn export_targets_the_run_reads_or_that_hold_files_are_refused() {
        let tmp =
            TempDir(std::env::temp_dir().join(format!("pg-export-target-{}", std::process::id())));
        let (base, data, run) = (tmp.0.join("base"), tmp.0.join("data"), tmp.0.join("runs/r1"));
        for d in [&base, &data, &run] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(base.join("model.safetensors"), b"x").unwrap();
        let inputs = vec![
            ("the base model directory (model.path)".to_string(), base.clone()),
            ("the dataset directory (data.path)".to_string(), data.clone()),
            ("the run directory".to_string(), run.clone()),
        ];
        let err = |out: &Path, overwrite: bool| {
            check_export_target(out, &inputs, overwrite).unwrap_err().to_string()
        };
        // the base itself, also spelled differently, even with overwrite
        for out in [base.clone(), tmp.0.join("data/../base"), base.join(".")] {
            let e = err(&out, true);
            assert!(e.contains("it is the base model directory") && e.contains("base"), "{e}");
        }
        let e = err(&base.join("merged"), false);
        assert!(e.contains("is inside the base model directory"), "{e}");
        let e = err(&run.join("export"), false);
        assert!(e.contains("is inside the run directory"), "{e}");
        let e = err(&tmp.0.join("runs"), true);
        assert!(e.contains("contains the run directory"), "{e}");
        let e = err(&data, true);
        assert!(e.contains("the dataset directory (data.path)"), "{e}");
        #[cfg(unix)]
        {
            let link = tmp.0.join("link-to-base");
            std::os::unix::fs::symlink(&base, &link).unwrap();
            assert!(err(&link, true).contains("it is the base model directory"));
        }
        // a new directory is fine; an empty one too; a non-empty one only with overwrite
        let out = tmp.0.join("out");
        check_export_target(&out, &inputs, false).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        check_export_target(&out, &inputs, false).unwrap();
        std::fs::write(out.join("notes.txt"), b"mine").unwrap();
        let e = err(&out, false);
        assert!(
            e.contains("not empty") && e.contains("notes.txt") && e.contains("--overwrite"),
            "{e}"
        );
        check_export_target(&out, &inputs, true).unwrap();
        std::fs::write(out.join("model.safetensors.index.json"), b"{}").unwrap();
        assert!(err(&out, true).contains("sharded model"));
        let file = out.join("notes.txt");
        assert!(err(&file, true).contains("not a directory"));
    }
}
