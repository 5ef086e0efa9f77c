//! Builds the model a config asks for and decides what trains: the trainable mask over base weights (globs,
//! presets), LoRA adapters on matching linear layers, the soft prompt. Trainable tensors are f32 whatever the base
//! dtype (master copies for base weights); everything else is frozen (`requires_grad = false`), so backward never
//! computes, nor allocates, gradients for it.
use crate::config::{ExperimentConfig, ModelSource, ProjectorKind};
use crate::what_trains::WhatTrains;
use crate::{glob, scratch, TrainError};
use layers::{Activation, LoraConfig};
use paligemma::{names, PaliGemma, PaliGemmaConfig, PaliGemmaTokenizer, SequenceLayout};
use projector::{Projector, ProjectorConfig};
use sha2::Digest;
use soft_prompt::{SoftPrompt, SoftPromptInit};
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};
use weights::{Checkpoint, DType, KeyMapping, ParamInit};

pub struct Built {
    /// The (mostly frozen) base model's variables.
    pub base_vs: nn::VarStore,
    /// LoRA adapters and the soft prompt (f32, all trainable).
    pub adapter_vs: nn::VarStore,
    pub model: PaliGemma,
    pub tokenizer: PaliGemmaTokenizer,
    pub layout: SequenceLayout,
    pub soft: Option<SoftPrompt>,
    /// Every trainable tensor by a unique name, sorted (base names, adapter names, `soft_prompt.weight`).
    pub trainables: Vec<(String, Tensor)>,
    /// Whether anything in the vision tower or projector trains (else image features are computed without grad).
    pub vision_trainable: bool,
    pub lora: Option<LoraConfig>,
    /// Identity of the base weights (checkpoint fingerprint, or the scratch config + seed).
    pub base_hash: String,
    pub device: Device,
    pub base_dtype: DType,
}

/// Builds the model and trainables. `train_texts` feed the scratch tokenizer; `work_dir` receives files the run
/// needs to be self-contained (a built tokenizer).
pub fn build(
    cfg: &ExperimentConfig,
    train_texts: &[&str],
    work_dir: &Path,
) -> Result<Built, TrainError> {
    let device = cfg.model.device.resolve()?;
    let base_dtype = cfg.model.dtype;
    crate::device::check_dtype(device, base_dtype)?;
    let mut base_vs = nn::VarStore::new(device);
    base_vs.set_kind(base_dtype.kind());
    tch::manual_seed(cfg.seed as i64);
    let (mut model, tokenizer, base_hash) = match cfg.model.source {
        ModelSource::Hf => load_hf(cfg, &base_vs)?,
        ModelSource::Scratch => build_scratch(cfg, &base_vs, train_texts, work_dir)?,
        ModelSource::Custom => build_custom(cfg, &base_vs)?,
    };
    let what = WhatTrains::of(cfg);
    let mut trainables = mark_trainable(&base_vs, &what)?;
    let adapter_vs = nn::VarStore::new(device);
    if let Some((lc, targets)) = &what.lora {
        attach_lora(&mut model, &adapter_vs, lc, targets)?;
    }
    let mut layout = SequenceLayout::for_model(&model.config, &tokenizer);
    layout.max_len = cfg.data.max_len;
    let soft = match &what.soft_prompt {
        Some(sp) => Some(soft_prompt(sp, &model, &tokenizer, &adapter_vs, &mut layout)?),
        None => None,
    };
    let mut adapters: Vec<(String, Tensor)> = adapter_vs.variables().into_iter().collect();
    trainables.append(&mut adapters);
    trainables.sort_by(|a, b| a.0.cmp(&b.0));
    if trainables.is_empty() {
        return Err(TrainError::Config(format!(
            "strategy `{}` leaves nothing to train (no preset, trainable glob, adapter or soft prompt)",
            cfg.strategy.name()
        )));
    }
    let vision_trainable = trainables.iter().any(|(n, _)| WhatTrains::is_vision(n));
    Ok(Built {
        base_vs,
        adapter_vs,
        model,
        tokenizer,
        layout,
        soft,
        trainables,
        vision_trainable,
        lora: what.lora.map(|(c, _)| c),
        base_hash,
        device,
        base_dtype,
    })
}

/// A model directory as configs and `--model` name it: a local directory, or a Hugging Face hub id
/// (`google/paligemma-3b-pt-224`, optionally `@revision`) resolved through the standard HF cache, so what Python
/// downloaded is reused, downloading only what the cache lacks (crates/hub, docs/hub.md).
pub fn model_dir(spec: &Path) -> Result<PathBuf, TrainError> {
    if spec.is_dir() {
        return Ok(spec.to_path_buf());
    }
    let Some(id) = spec.to_str().filter(|s| hub::is_repo_id(s)) else {
        return Err(TrainError::Config(format!(
            "{}: no such model directory (nor a Hugging Face hub id such as google/paligemma-3b-pt-224)",
            spec.display()
        )));
    };
    let mut opts = hub::Options::from_env();
    opts.should_stop = Some(|| interrupt::requested().is_some());
    Ok(hub::resolve_model(id, &opts)?)
}

fn load_hf(
    cfg: &ExperimentConfig,
    vs: &nn::VarStore,
) -> Result<(PaliGemma, PaliGemmaTokenizer, String), TrainError> {
    let dir = &model_dir(cfg.model.path.as_ref().expect("validated"))?;
    let pcfg = PaliGemmaConfig::from_file(&dir.join("config.json"))?;
    let tokenizer = PaliGemmaTokenizer::from_file(&dir.join("tokenizer.json"), &pcfg)?;
    let ckpt = Checkpoint::open(dir).map_err(paligemma::PaliGemmaError::from)?;
    let model = PaliGemma::new(vs.root(), &pcfg, ParamInit::Empty)?;
    weights::load_into(vs, &ckpt, names::paligemma_key).map_err(paligemma::PaliGemmaError::from)?;
    Ok((model, tokenizer, ckpt.fingerprint()))
}

fn build_scratch(
    cfg: &ExperimentConfig,
    vs: &nn::VarStore,
    train_texts: &[&str],
    work_dir: &Path,
) -> Result<(PaliGemma, PaliGemmaTokenizer, String), TrainError> {
    let s = cfg.model.scratch.as_ref().expect("validated");
    let tok_path = match &s.tokenizer {
        Some(p) => p.clone(),
        None => {
            // Built once per run from its training captions; a resumed or evaluated run reuses its own.
            let p = work_dir.join("tokenizer.json");
            if !p.exists() {
                if train_texts.is_empty() {
                    return Err(TrainError::Config(format!(
                        "{} has no tokenizer.json and there are no captions to build one from",
                        work_dir.display()
                    )));
                }
                scratch::write_word_tokenizer(train_texts, &p)?;
            }
            p
        }
    };
    let vocab = tokenizers::Tokenizer::from_file(&tok_path)
        .map_err(|e| TrainError::Config(format!("{}: {e}", tok_path.display())))?
        .get_vocab_size(true) as i64;
    let pcfg = scratch::paligemma_config(s, vocab);
    let tokenizer = PaliGemmaTokenizer::from_file(&tok_path, &pcfg)?;
    let model = PaliGemma::new(vs.root(), &pcfg, ParamInit::Normal { std: s.init_std })?;
    let hash = hex(&sha2::Sha256::digest(format!(
        "scratch {} {}",
        serde_json::to_string(s).unwrap_or_default(),
        cfg.seed
    )));
    Ok((model, tokenizer, hash))
}

/// Marks the base weights `what` trains (f32 master copies inside a reduced-precision model) and freezes the rest,
/// so backward never computes, nor allocates, gradients for them.
fn mark_trainable(
    vs: &nn::VarStore,
    what: &WhatTrains,
) -> Result<Vec<(String, Tensor)>, TrainError> {
    let vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    if let Some(g) = what.base.iter().find(|g| !names.iter().any(|n| glob::matches(g, n))) {
        return Err(TrainError::Config(format!(
            "trainable glob `{g}` matches no parameter (names look like `{}`)",
            names.iter().find(|n| n.contains("layers.0.")).map_or("", |s| s.as_str())
        )));
    }
    let mut trainables = Vec::new();
    tch::no_grad(|| {
        for name in names {
            let mut t = vars[name].shallow_clone();
            let trains = what.trains_base(name);
            if trains && t.kind() != Kind::Float {
                t.set_data(&t.to_kind(Kind::Float));
            }
            let _ = t.requires_grad_(trains);
            if trains {
                trainables.push((name.clone(), t));
            }
        }
    });
    Ok(trainables)
}

/// LoRA adapters (f32, in `adapter_vs` under the module's own name) on every linear layer a target glob matches;
/// a glob that matches nothing is an error.
fn attach_lora(
    model: &mut PaliGemma,
    adapter_vs: &nn::VarStore,
    lc: &LoraConfig,
    targets: &[String],
) -> Result<(), TrainError> {
    let mut hits = vec![0usize; targets.len()];
    for (name, linear) in model.linears_mut() {
        let matched: Vec<usize> =
            (0..targets.len()).filter(|&i| glob::matches(&targets[i], &name)).collect();
        if matched.is_empty() {
            continue;
        }
        matched.iter().for_each(|&i| hits[i] += 1);
        let path = name.split('.').fold(adapter_vs.root(), |p, part| p.sub(part));
        linear.add_lora(path, lc)?;
    }
    match hits.iter().position(|&h| h == 0) {
        Some(i) => Err(TrainError::Config(format!(
            "lora.targets glob `{}` matches no linear layer (they look like `language_model.model.layers.0.self_attn.q_proj`)",
            targets[i]
        ))),
        None => Ok(()),
    }
}

fn soft_prompt(
    sp: &soft_prompt::SoftPromptConfig,
    model: &PaliGemma,
    tokenizer: &PaliGemmaTokenizer,
    adapter_vs: &nn::VarStore,
    layout: &mut SequenceLayout,
) -> Result<SoftPrompt, TrainError> {
    let text_ids = match &sp.init {
        SoftPromptInit::Text { text } => Some(tokenizer.encode(text)?),
        _ => None,
    };
    let max_id = tokenizer.inner().get_vocab_size(true) as i64;
    let s = SoftPrompt::new(adapter_vs.root(), sp, model, text_ids.as_deref(), max_id)
        .map_err(|e| TrainError::Config(e.to_string()))?;
    layout.soft_prompt = Some((sp.length, sp.placement));
    Ok(s)
}

/// Standalone SigLIP + standalone Gemma + a new projector, under the hub names so the result saves and reloads
/// like any PaliGemma.
fn build_custom(
    cfg: &ExperimentConfig,
    vs: &nn::VarStore,
) -> Result<(PaliGemma, PaliGemmaTokenizer, String), TrainError> {
    let c = cfg.model.custom.as_ref().expect("validated");
    let vision_cfg = siglip::SiglipConfig::vision_from_file(&c.siglip.join("config.json"))?;
    let text_cfg = gemma::GemmaConfig::from_file(&c.gemma.join("config.json"))?;
    let mut pcfg = PaliGemmaConfig::paligemma_3b_pt_224();
    pcfg.vision_config = vision_cfg.clone();
    pcfg.vision_config.projection_dim = Some(text_cfg.hidden_size);
    pcfg.vision_config.vision_use_head = false;
    pcfg.text_config = text_cfg.clone();
    pcfg.projection_dim = text_cfg.hidden_size;
    pcfg.hidden_size = text_cfg.hidden_size;
    pcfg.pad_token_id = text_cfg.pad_token_id.unwrap_or(0);
    pcfg.bos_token_id = text_cfg.bos_token_id.unwrap_or(2);
    pcfg.eos_token_id = text_cfg.eos_token_id.unwrap_or(1);
    // Image slots are found by segment id; their placeholder id is <pad> (Gemma's tokenizer has no <image>).
    pcfg.image_token_index = pcfg.pad_token_id;
    pcfg.validate()?;
    let root = vs.root();
    let vision = siglip::SiglipVisionModel::new(
        root.sub(names::VISION[0]).sub(names::VISION[1]),
        &pcfg.vision_config,
        ParamInit::Empty,
    )?;
    let proj_cfg = match c.projector {
        ProjectorKind::Linear => ProjectorConfig::Linear {
            in_dim: vision_cfg.hidden_size,
            out_dim: text_cfg.hidden_size,
        },
        ProjectorKind::Mlp => ProjectorConfig::Mlp {
            in_dim: vision_cfg.hidden_size,
            hidden_dim: c.projector_hidden.unwrap_or(text_cfg.hidden_size),
            out_dim: text_cfg.hidden_size,
            act: Activation::GeluTanh,
        },
    };
    let proj = Projector::new(
        root.sub(names::PROJECTOR),
        &proj_cfg,
        ParamInit::Normal { std: text_cfg.initializer_range },
    );
    let lm = gemma::Gemma::new(
        root.sub(names::LANGUAGE[0]).sub(names::LANGUAGE[1]),
        &text_cfg,
        ParamInit::Empty,
    )?;
    let sckpt = Checkpoint::open(&c.siglip).map_err(paligemma::PaliGemmaError::from)?;
    let [vt, vm] = names::VISION;
    weights::load_into_scope(vs, &format!("{vt}."), &sckpt, |k| match siglip::standalone_key(k) {
        KeyMapping::Var(v) => KeyMapping::Var(format!("{vt}.{vm}.{v}")),
        KeyMapping::Ignore => KeyMapping::Ignore,
    })
    .map_err(paligemma::PaliGemmaError::from)?;
    let gckpt = Checkpoint::open(&c.gemma).map_err(paligemma::PaliGemmaError::from)?;
    let [lt, lm_inner] = names::LANGUAGE;
    weights::load_into_scope(vs, &format!("{lt}."), &gckpt, |k| match gemma::causal_lm_key(k) {
        KeyMapping::Var(v) => KeyMapping::Var(format!("{lt}.{lm_inner}.{v}")),
        KeyMapping::Ignore => KeyMapping::Ignore,
    })
    .map_err(paligemma::PaliGemmaError::from)?;
    let tok_path = c.tokenizer.clone().unwrap_or_else(|| c.gemma.join("tokenizer.json"));
    let tokenizer = PaliGemmaTokenizer::from_file_with(&tok_path, &pcfg, false)?;
    let model = PaliGemma::from_parts(vision, proj, lm, pcfg);
    let hash =
        hex(&sha2::Sha256::digest(format!("{} {}", sckpt.fingerprint(), gckpt.fingerprint())));
    Ok((model, tokenizer, hash))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
