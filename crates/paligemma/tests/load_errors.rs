//! Every loading error case names what is wrong: missing key, unexpected key, wrong shape, non-float tensor, a
//! dtype request that does not exist, a truncated file, a config/weights resolution mismatch, a tokenizer that
//! does not belong to the model. Damaged copies of the `mqa` fixture are written to a temp dir.
mod common;

use common::fixtures;
use paligemma::{load, DType, LoadOptions};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

fn scratch(name: &str) -> PathBuf {
    let dir = common::temp_dir(&format!("pg-load-{name}"));
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(fixtures().join("mqa-hub").join(f), dir.join(f)).unwrap();
    }
    dir
}

fn weights() -> Vec<(String, Tensor)> {
    Tensor::read_safetensors(fixtures().join("mqa-hub/model.safetensors")).unwrap()
}

fn write(dir: &Path, tensors: &[(String, Tensor)]) {
    Tensor::write_safetensors(tensors, dir.join("model.safetensors")).unwrap();
}

fn err_of(dir: &Path, dtype: Option<DType>) -> String {
    match load(dir, LoadOptions { dtype, ..Default::default() }) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

const NORM: &str = "language_model.model.norm.weight";

#[test]
fn missing_key_is_named() {
    let dir = scratch("missing");
    let w: Vec<_> = weights().into_iter().filter(|(k, _)| k != NORM).collect();
    write(&dir, &w);
    let e = err_of(&dir, None);
    assert!(e.contains("missing key") && e.contains(NORM), "{e}");
}

#[test]
fn unexpected_key_is_named() {
    let dir = scratch("unexpected");
    let mut w = weights();
    w.push((
        "language_model.model.layers.9.mlp.gate_proj.weight".into(),
        Tensor::zeros([4, 4], (Kind::Float, tch::Device::Cpu)),
    ));
    write(&dir, &w);
    let e = err_of(&dir, None);
    assert!(
        e.contains("unexpected key `language_model.model.layers.9.mlp.gate_proj.weight`"),
        "{e}"
    );
}

#[test]
fn wrong_shape_is_named_with_both_shapes() {
    let dir = scratch("shape");
    let w: Vec<_> = weights()
        .into_iter()
        .map(|(k, t)| {
            if k == NORM {
                (k, Tensor::zeros([47], (Kind::Float, tch::Device::Cpu)))
            } else {
                (k, t)
            }
        })
        .collect();
    write(&dir, &w);
    let e = err_of(&dir, None);
    assert!(e.contains(NORM) && e.contains("[47]") && e.contains("[48]"), "{e}");
}

#[test]
fn integer_weights_are_refused() {
    let dir = scratch("int");
    let w: Vec<_> = weights()
        .into_iter()
        .map(|(k, t)| if k == NORM { (k, t.to_kind(Kind::Int64)) } else { (k, t) })
        .collect();
    write(&dir, &w);
    let e = err_of(&dir, Some(DType::F32));
    assert!(e.contains(NORM) && e.contains("expected a floating-point tensor"), "{e}");
}

#[test]
fn unknown_dtype_request_is_refused() {
    let e = DType::parse("int8").unwrap_err().to_string();
    assert!(e.contains("unsupported dtype `int8`") && e.contains("f32, bf16, f16"), "{e}");
    assert_eq!(DType::parse("bfloat16").unwrap(), DType::Bf16);
}

#[test]
fn truncated_file_is_reported_as_damaged() {
    let dir = scratch("truncated");
    let bytes = std::fs::read(fixtures().join("mqa-hub/model.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors"), &bytes[..bytes.len() - 100]).unwrap();
    let e = err_of(&dir, None);
    assert!(e.contains("model.safetensors") && e.contains("truncated or damaged"), "{e}");
}

#[test]
fn missing_shard_is_named() {
    let dir = scratch("shard");
    let src = fixtures().join("mqa-sharded");
    std::fs::copy(
        src.join("model.safetensors.index.json"),
        dir.join("model.safetensors.index.json"),
    )
    .unwrap();
    let e = err_of(&dir, None);
    assert!(e.contains("model-0000"), "{e}");
}

#[test]
fn resolution_mismatch_between_config_and_weights() {
    let dir = scratch("resolution");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    cfg["vision_config"]["image_size"] = 64.into(); // 64 px / patch 8 -> 64 tokens, the weights have 16
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    std::fs::copy(fixtures().join("mqa-hub/model.safetensors"), dir.join("model.safetensors"))
        .unwrap();
    let e = err_of(&dir, None);
    assert!(e.contains("16 image positions") && e.contains("64 image tokens"), "{e}");
}

#[test]
fn tokenizer_that_does_not_match_the_model() {
    let dir = scratch("tokenizer");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    cfg["image_token_index"] = 7.into();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    std::fs::copy(fixtures().join("mqa-hub/model.safetensors"), dir.join("model.safetensors"))
        .unwrap();
    let e = err_of(&dir, None);
    assert!(e.contains("`<image>` has id") && e.contains("config says 7"), "{e}");
}

#[test]
fn dtype_is_kept_or_cast_as_asked() {
    let dir = fixtures().join("mqa");
    for (want, kind) in
        [(None, Kind::Float), (Some(DType::Bf16), Kind::BFloat16), (Some(DType::F16), Kind::Half)]
    {
        let m = load(&dir, LoadOptions { dtype: want, ..Default::default() }).unwrap();
        assert_eq!(m.model.kind(), kind);
        assert!(m.vs.variables().values().all(|t| t.kind() == kind));
    }
}

/// The known trap of other tools: PaliGemma 2 weights under a PaliGemma 1 (`gemma`) config run without the Gemma-2
/// norms and soft-capping and emit empty captions. Strict loading names the first weight that has no place.
#[test]
fn paligemma2_weights_under_a_gemma1_config_are_refused() {
    let dir = common::temp_dir("pg-load-pg2-as-pg1");
    let mut cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("pg2-gqa-hub/config.json")).unwrap(),
    )
    .unwrap();
    let text = cfg["text_config"].as_object_mut().unwrap();
    text.insert("model_type".into(), "gemma".into());
    for k in [
        "query_pre_attn_scalar",
        "sliding_window",
        "layer_types",
        "final_logit_softcapping",
        "attn_logit_softcapping",
    ] {
        text.remove(k);
    }
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    std::fs::copy(fixtures().join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let w = Tensor::read_safetensors(fixtures().join("pg2-gqa-hub/model.safetensors")).unwrap();
    write(&dir, &w);
    let e = err_of(&dir, None);
    assert!(e.contains("unexpected key") && e.contains("feedforward_layernorm"), "{e}");
    // and a Gemma-2 field under `gemma` is refused by name before any weight is read
    cfg["text_config"]["final_logit_softcapping"] = 30.0.into();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let e = err_of(&dir, None);
    assert!(e.contains("final_logit_softcapping") && e.contains("gemma2"), "{e}");
}
