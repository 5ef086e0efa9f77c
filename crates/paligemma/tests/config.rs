//! Configs from real `config.json` files: a hub PaliGemma config (pt-448 base, as quoted verbatim in transformers'
//! `convert_colpali_weights_to_hf.py`), the transformers 5.x configs of the fixtures, and the named constructors.
mod common;

use common::fixtures;
use paligemma::PaliGemmaConfig;
use std::path::PathBuf;

#[test]
fn hub_config_gives_the_real_architecture() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/paligemma-3b-pt-448.config.json");
    let cfg = PaliGemmaConfig::from_file(&path).unwrap();
    // Fields the hub file omits take transformers' sub-config defaults (head_dim 256, rope 10000, eps 1e-6, tanh GELU).
    let want = PaliGemmaConfig::paligemma_3b_pt_448();
    assert_eq!(cfg.num_image_tokens(), 1024);
    assert_eq!(cfg.vision_config.intermediate_size, want.vision_config.intermediate_size);
    assert_eq!(cfg.vision_config.hidden_size, want.vision_config.hidden_size);
    assert_eq!(cfg.vision_config.layer_norm_eps, 1e-6);
    assert_eq!(cfg.vision_config.hidden_act, want.vision_config.hidden_act);
    let (t, w) = (&cfg.text_config, &want.text_config);
    assert_eq!(
        (t.vocab_size, t.hidden_size, t.intermediate_size),
        (w.vocab_size, w.hidden_size, w.intermediate_size)
    );
    assert_eq!((t.num_attention_heads, t.num_key_value_heads, t.head_dim), (8, 1, 256));
    assert_eq!(t.rope_theta(), 10000.0);
    assert_eq!(t.rms_norm_eps, 1e-6);
    assert_eq!(t.activation(), w.activation());
    assert_eq!(cfg.image_token_index, 257152);
    assert_eq!(cfg.projector_dim(), 2048);
}

#[test]
fn named_constructors() {
    for (cfg, n) in [
        (PaliGemmaConfig::paligemma_3b_pt_224(), 256),
        (PaliGemmaConfig::paligemma_3b_pt_448(), 1024),
        (PaliGemmaConfig::paligemma_3b_pt_896(), 4096),
    ] {
        cfg.validate().unwrap();
        assert_eq!(cfg.num_image_tokens(), n);
        assert_eq!(
            cfg.vision_config.intermediate_size, 4304,
            "not transformers' wrong default 4096"
        );
        assert_eq!(cfg.image_token_index, 257152, "not transformers' wrong default 256000");
    }
    PaliGemmaConfig::tiny(256, 255).validate().unwrap();
}

#[test]
fn transformers_5_configs_parse() {
    for name in ["mqa", "gqa", "mha"] {
        let cfg = PaliGemmaConfig::from_file(&fixtures().join(name).join("config.json")).unwrap();
        assert_eq!(cfg.text_config.rope_theta(), 10000.0, "rope_parameters.rope_theta");
        assert_eq!(cfg.num_image_tokens(), if name == "gqa" { 25 } else { 16 });
    }
}

#[test]
fn bad_configs_name_the_problem() {
    let dir = common::temp_dir("pg-config");
    let path = dir.join("config.json");
    let cases = [
        (
            r#"{"model_type": "paligemma", "text_config": {"num_attention_heads": 8, "num_key_value_heads": 3}}"#,
            "not a multiple of num_key_value_heads",
        ),
        (
            r#"{"model_type": "paligemma", "vision_config": {"image_size": 225, "patch_size": 14}}"#,
            "not a multiple of patch_size",
        ),
        (r#"{"model_type": "paligemma2"}"#, "model_type is `paligemma2`"),
        (
            r#"{"model_type": "paligemma", "text_config": {"final_logit_softcapping": 30.0}}"#,
            "Gemma-2",
        ),
        (
            r#"{"model_type": "paligemma", "text_config": {"num_hidden_layers": "eighteen"}}"#,
            "key `text_config.num_hidden_layers`",
        ),
        (r#"{"model_type": "paligemma", "image_token_index": 300000}"#, "outside the vocabulary"),
    ];
    for (json, want) in cases {
        std::fs::write(&path, json).unwrap();
        let e = PaliGemmaConfig::from_file(&path).unwrap_err().to_string();
        assert!(e.contains(want) && e.contains("config.json"), "{json}: {e}");
    }
}

#[test]
fn parameter_shapes_equal_the_built_model_and_the_published_count() {
    for name in ["mqa", "gqa", "mha"] {
        let cfg = PaliGemmaConfig::from_file(&fixtures().join(name).join("config.json")).unwrap();
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let _m = paligemma::PaliGemma::new(vs.root(), &cfg, weights::ParamInit::Empty).unwrap();
        let mut built: Vec<(String, Vec<i64>)> =
            vs.variables().into_iter().map(|(n, t)| (n, t.size())).collect();
        built.sort();
        let mut planned = cfg.parameter_shapes();
        planned.sort();
        assert_eq!(built, planned, "{name}");
    }
    // google/paligemma-3b-pt-224 on the hub: 2,923,466,480 parameters with HF's 257,216-row vocabulary
    assert_eq!(PaliGemmaConfig::paligemma_3b_pt_224().num_parameters(), 2_923_466_480);
}
