//! Builds the model a config asks for and decides what trains: the trainable mask over base weights (globs,
//! presets), LoRA adapters on matching linear layers, the soft prompt. Trainable tensors are f32 whatever the base
//! dtype (master copies for base weights); everything else is frozen (`requires_grad = false`), so backward never
//! computes, nor allocates, gradients for it.
use crate::config::{ExperimentConfig, ModelSource, ProjectorKind, Strategy};
use crate::{glob, scratch, TrainError};
use lora::{Activation, LoraConfig};
use paligemma::{names, PaliGemma, PaliGemmaConfig, PaliGemmaTokenizer, SequenceLayout};
use projector::{Projector, ProjectorConfig};
use sha2::Digest;
use soft_prompt::{SoftPrompt, SoftPromptInit};
use std::path::Path;
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

pub fn parse_device(s: &str) -> Result<Device, TrainError> {
    let d = match s {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        _ => match s.strip_prefix("cuda:").and_then(|i| i.parse().ok()) {
            Some(i) => Device::Cuda(i),
            None => {
                return Err(TrainError::Config(format!(
                    "model.device `{s}`: expected cpu, cuda or cuda:N"
                )))
            }
        },
    };
    if d.is_cuda() && !tch::Cuda::is_available() {
        return Err(TrainError::Config(
            "model.device asks for CUDA but libtorch sees no usable GPU; `cargo xtask doctor` says why".into(),
        ));
    }
    Ok(d)
}

/// Builds the model and trainables. `train_texts` feed the scratch tokenizer; `work_dir` receives files the run
/// needs to be self-contained (a built tokenizer).
pub fn build(
    cfg: &ExperimentConfig,
    train_texts: &[&str],
    work_dir: &Path,
) -> Result<Built, TrainError> {
    let device = parse_device(&cfg.model.device)?;
    let base_dtype =
        DType::parse(&cfg.model.dtype).map_err(|e| TrainError::Config(e.to_string()))?;
    crate::device::check_dtype(device, base_dtype)?;
    let mut base_vs = nn::VarStore::new(device);
    base_vs.set_kind(base_dtype.kind());
    tch::manual_seed(cfg.seed as i64);

    let (mut model, tokenizer, base_hash) = match cfg.model.source {
        ModelSource::Hf => {
            let dir = cfg.model.path.as_ref().expect("validated");
            let pcfg = PaliGemmaConfig::from_file(&dir.join("config.json"))?;
            let tokenizer = PaliGemmaTokenizer::from_file(&dir.join("tokenizer.json"), &pcfg)?;
            let ckpt = Checkpoint::open(dir).map_err(paligemma::PaliGemmaError::from)?;
            let model = PaliGemma::new(base_vs.root(), &pcfg, ParamInit::Empty)?;
            weights::load_into(&base_vs, &ckpt, names::paligemma_key)
                .map_err(paligemma::PaliGemmaError::from)?;
            (model, tokenizer, ckpt.fingerprint())
        }
        ModelSource::Scratch => {
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
            let model =
                PaliGemma::new(base_vs.root(), &pcfg, ParamInit::Normal { std: s.init_std })?;
            let hash = hex(&sha2::Sha256::digest(format!(
                "scratch {} {}",
                serde_json::to_string(s).unwrap_or_default(),
                cfg.seed
            )));
            (model, tokenizer, hash)
        }
        ModelSource::Custom => build_custom(cfg, &base_vs)?,
    };

    // What trains among the base weights.
    let mut globs: Vec<String> = cfg.train.trainable.clone();
    if let Some(p) = cfg.train.preset {
        globs.extend(p.globs().iter().map(|s| s.to_string()));
    }
    if cfg.strategy == Strategy::Custom {
        globs.push(format!("{}.**", names::PROJECTOR));
    }
    let vars = base_vs.variables();
    let mut base_names: Vec<&String> = vars.keys().collect();
    base_names.sort();
    for g in &globs {
        if !base_names.iter().any(|n| glob::matches(g, n)) {
            return Err(TrainError::Config(format!(
                "trainable glob `{g}` matches no parameter (names look like `{}`)",
                base_names.iter().find(|n| n.contains("layers.0.")).map_or("", |s| s.as_str())
            )));
        }
    }
    let mut trainables: Vec<(String, Tensor)> = Vec::new();
    tch::no_grad(|| {
        for name in &base_names {
            let mut t = vars[*name].shallow_clone();
            if globs.iter().any(|g| glob::matches(g, name)) {
                if t.kind() != Kind::Float {
                    // f32 master copy of a trainable weight inside a reduced-precision model
                    t.set_data(&t.to_kind(Kind::Float));
                }
                let _ = t.requires_grad_(true);
                trainables.push(((*name).clone(), t));
            } else {
                let _ = t.requires_grad_(false);
            }
        }
    });

    // Adapters.
    let adapter_vs = nn::VarStore::new(device);
    let mut lora_cfg = None;
    if let Some(l) = &cfg.lora {
        if cfg.strategy == Strategy::Lora || cfg.strategy == Strategy::Custom {
            let lc = LoraConfig {
                r: l.r,
                lora_alpha: l.alpha,
                lora_dropout: l.dropout,
                use_rslora: l.use_rslora,
            };
            let mut hits = vec![0usize; l.targets.len()];
            for (name, linear) in model.linears_mut() {
                let matched: Vec<usize> = l
                    .targets
                    .iter()
                    .enumerate()
                    .filter(|(_, g)| glob::matches(g, &name))
                    .map(|(i, _)| i)
                    .collect();
                if matched.is_empty() {
                    continue;
                }
                for i in matched {
                    hits[i] += 1;
                }
                let mut path = adapter_vs.root();
                for part in name.split('.') {
                    path = path.sub(part);
                }
                linear.add_lora(path, &lc)?;
            }
            if let Some(i) = hits.iter().position(|&h| h == 0) {
                return Err(TrainError::Config(format!(
                    "lora.targets glob `{}` matches no linear layer (they look like `language_model.model.layers.0.self_attn.q_proj`)",
                    l.targets[i]
                )));
            }
            lora_cfg = Some(lc);
        }
    }
    let mut layout = SequenceLayout::new(
        model.config.num_image_tokens() as usize,
        tokenizer.image_id,
        tokenizer.bos_id,
        tokenizer.eos_id,
        tokenizer.pad_id,
    );
    layout.max_len = cfg.data.max_len;
    let mut soft = None;
    if let (Some(sp), true) =
        (&cfg.soft_prompt, matches!(cfg.strategy, Strategy::SoftPrompt | Strategy::Hybrid))
    {
        let text_ids = match &sp.init {
            SoftPromptInit::Text { text } => Some(tokenizer.encode(text)?),
            _ => None,
        };
        let max_id = tokenizer.inner().get_vocab_size(true) as i64;
        let s = SoftPrompt::new(adapter_vs.root(), sp, &model, text_ids.as_deref(), max_id)
            .map_err(|e| TrainError::Config(e.to_string()))?;
        layout.soft_prompt = Some((sp.length, sp.placement));
        soft = Some(s);
    }
    let mut adapters: Vec<(String, Tensor)> = adapter_vs.variables().into_iter().collect();
    adapters.sort_by(|a, b| a.0.cmp(&b.0));
    trainables.extend(adapters);
    trainables.sort_by(|a, b| a.0.cmp(&b.0));
    if trainables.is_empty() {
        return Err(TrainError::Config(format!(
            "strategy `{}` leaves nothing to train (no preset, trainable glob, adapter or soft prompt)",
            cfg.strategy.name()
        )));
    }
    let vision_trainable = trainables.iter().any(|(n, _)| {
        n.starts_with(&format!("{}.", names::VISION[0]))
            || n.starts_with(&format!("{}.", names::PROJECTOR))
    });
    Ok(Built {
        base_vs,
        adapter_vs,
        model,
        tokenizer,
        layout,
        soft,
        trainables,
        vision_trainable,
        lora: lora_cfg,
        base_hash,
        device,
        base_dtype,
    })
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
    weights::load_into_scope(vs, "vision_tower.", &sckpt, |k| match siglip::standalone_key(k) {
        KeyMapping::Var(v) => KeyMapping::Var(format!("vision_tower.vision_model.{v}")),
        KeyMapping::Ignore => KeyMapping::Ignore,
    })
    .map_err(paligemma::PaliGemmaError::from)?;
    let gckpt = Checkpoint::open(&c.gemma).map_err(paligemma::PaliGemmaError::from)?;
    weights::load_into_scope(vs, "language_model.", &gckpt, |k| match gemma::causal_lm_key(k) {
        KeyMapping::Var(v) => KeyMapping::Var(format!("language_model.model.{v}")),
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
