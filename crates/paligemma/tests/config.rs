//! Configs from real `config.json` files: a hub PaliGemma config (pt-448 base, as quoted verbatim in transformers'
//! `convert_colpali_weights_to_hf.py`), transformers' own serialisation of paligemma2-3b-pt-224, the transformers 5.x
//! configs of the fixtures, and the named constructors, whose parameter counts equal transformers'.
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
            r#"{"model_type": "paligemma", "text_config": {"model_type": "gemma3_text"}}"#,
            "model_type `gemma3_text` is not supported",
        ),
        (
            r#"{"model_type": "paligemma", "text_config": {"model_type": "gemma2", "rope_local_base_freq": 1e4}}"#,
            "key `rope_local_base_freq`: not supported",
        ),
        (
            r#"{"model_type": "paligemma", "text_config": {"model_type": "gemma2", "num_hidden_layers": 3, "layer_types": ["full_attention"]}}"#,
            "layer_types has 1 entries for 3 layers",
        ),
        (
            r#"{"model_type": "paligemma", "text_config": {"model_type": "gemma2", "layer_types": ["chunked_attention"]}}"#,
            "chunked_attention",
        ),
        (
            r#"{"model_type": "paligemma", "text_config": {"model_type": "gemma2", "sliding_window": 0}}"#,
            "sliding_window must be positive",
        ),
        (
            r#"{"model_type": "paligemma", "text_config": {"model_type": "gemma2", "attn_logit_softcapping": -50.0}}"#,
            "attn_logit_softcapping must be positive",
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
    for name in ["mqa", "gqa", "mha", "pg2-gqa", "pg2-mqa"] {
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

/// Every released shape: our count from shapes alone equals transformers' `num_parameters()` of the same model
/// (built on the meta device by scripts/fixtures/gen_paligemma2_fixtures.py).
#[test]
fn num_parameters_equal_transformers_for_every_released_config() {
    let counts: std::collections::BTreeMap<String, i64> = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("num_parameters.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(counts.len(), 12);
    for (id, want) in counts {
        for id in [id.clone(), id.replace("-pt-", "-mix-")] {
            let cfg = PaliGemmaConfig::named(&id).unwrap_or_else(|| panic!("{id} has no config"));
            cfg.validate().unwrap();
            assert_eq!(cfg.num_parameters(), want, "{id}");
        }
    }
    for bad in ["paligemma2-7b-pt-224", "paligemma-3b-pt-300", "paligemma2-3b-ft-224", "gemma-2b"] {
        assert!(PaliGemmaConfig::named(bad).is_none(), "{bad}");
    }
}

#[test]
fn paligemma2_configs_parse_with_gemma2_defaults() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/paligemma2-3b-pt-224.config.json");
    let cfg = PaliGemmaConfig::from_file(&path).unwrap();
    let want = PaliGemmaConfig::named("google/paligemma2-3b-pt-224").unwrap();
    assert_eq!(cfg.parameter_shapes(), want.parameter_shapes());
    let t = &cfg.text_config;
    assert_eq!(t.architecture(), gemma::Architecture::Gemma2);
    assert_eq!(cfg.generation(), "PaliGemma 2");
    assert_eq!((t.attn_logit_softcapping, t.final_logit_softcapping), (Some(50.0), Some(30.0)));
    assert_eq!(t.attention_scale(), 1.0 / 16.0);
    assert_eq!(
        (0..4).map(|i| t.layer_window(i)).collect::<Vec<_>>(),
        [Some(4096), None, Some(4096), None]
    );
    // A Gemma-2 text config that omits fields means Gemma2Config's defaults (Gemma-2 2B), as in transformers.
    let dir = common::temp_dir("pg2-config");
    let path = dir.join("config.json");
    std::fs::write(
        &path,
        r#"{"model_type": "paligemma", "projection_dim": 2304, "hidden_size": 2304, "image_token_index": 255999,
            "vision_config": {"projection_dim": 2304}, "text_config": {"model_type": "gemma2"}}"#,
    )
    .unwrap();
    let t = PaliGemmaConfig::from_file(&path).unwrap().text_config;
    assert_eq!((t.hidden_size, t.num_hidden_layers, t.num_key_value_heads), (2304, 26, 4));
    assert_eq!((t.sliding_window, t.query_pre_attn_scalar), (Some(4096), Some(256.0)));
    assert_eq!((t.attn_logit_softcapping, t.final_logit_softcapping), (Some(50.0), Some(30.0)));
    // the 28B's attention scale is hidden / heads, not head_dim
    let t28 = PaliGemmaConfig::named("paligemma2-28b-pt-448").unwrap().text_config;
    assert_eq!((t28.head_dim, t28.query_pre_attn_scalar), (128, Some(144.0)));
}
