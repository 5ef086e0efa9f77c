//! PEFT interoperability: an adapter written by HF PEFT 0.21.2 (`scripts/fixtures/gen_peft_fixture.py`) loads here
//! and gives PEFT's logits, merged and unmerged; an adapter exported here has PEFT's layout and key names.
mod common;

use common::{config, fixtures, temp};
use std::collections::{BTreeSet, HashMap};
use tch::{Device, Kind, Tensor};

fn reference(dir: &str) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(fixtures().join(dir).join("reference.safetensors"))
        .unwrap()
        .into_iter()
        .collect()
}

fn hf_segments(r: &HashMap<String, Tensor>, image_id: i64) -> Tensor {
    let seg = Tensor::full_like(&r["input_ids"], paligemma::Segment::Prefix.id());
    let seg =
        seg.where_self(&r["token_type_ids"].eq(0), &Tensor::from(paligemma::Segment::Suffix.id()));
    let seg =
        seg.where_self(&r["input_ids"].ne(image_id), &Tensor::from(paligemma::Segment::Image.id()));
    seg.where_self(&r["attention_mask"].ne(0), &Tensor::from(paligemma::Segment::Pad.id()))
}

fn max_err(logits: &Tensor, want: &Tensor, mask: &Tensor) -> f64 {
    let valid = mask.to_kind(Kind::Bool).unsqueeze(-1).expand_as(logits);
    f64::try_from((logits.masked_select(&valid) - want.masked_select(&valid)).abs().max()).unwrap()
}

#[test]
fn peft_adapter_loads_with_equal_logits_merged_and_unmerged() {
    check_peft_adapter("mqa", 2);
}

#[test]
fn peft_adapter_on_paligemma2_loads_with_equal_logits_merged_and_unmerged() {
    check_peft_adapter("pg2-gqa", 3);
}

fn check_peft_adapter(model: &str, layers: usize) {
    let adapter = format!("{model}-peft-lora");
    let inputs = reference(model);
    let want = reference(&adapter);
    let mut loaded = paligemma::load(&fixtures().join(model), Default::default()).unwrap();
    let adapters = tch::nn::VarStore::new(Device::Cpu);
    let lc = trainer::peft::load_adapter(&fixtures().join(&adapter), &mut loaded.model, &adapters)
        .unwrap();
    assert_eq!((lc.r, lc.lora_alpha), (4, 8.0));
    assert_eq!(adapters.variables().len(), 8 * layers, "q/k/v/o x {layers} layers x (A, B)");
    let seg = hf_segments(&inputs, loaded.model.config.image_token_index);
    let logits = tch::no_grad(|| {
        loaded.model.forward(&inputs["input_ids"], &seg, &inputs["pixel_values"], None)
    });
    let base_err = max_err(&logits, &inputs["logits"], &inputs["attention_mask"]);
    assert!(base_err > 1e-2, "the adapter changes the logits ({base_err})");
    let err = max_err(&logits, &want["logits"], &inputs["attention_mask"]);
    assert!(err < 1e-4, "{model}: PEFT logits differ by {err}");
    // merge and export as an HF directory, reload: PEFT's merge_and_unload logits
    let out = temp(&format!("peft-merged-{model}"));
    trainer::peft::export_merged(
        &mut loaded.model,
        &loaded.vs,
        &fixtures().join("tokenizer.json"),
        &out,
    )
    .unwrap();
    assert!(!out.join("adapter_config.json").exists(), "a merged export holds no adapter files");
    let merged = paligemma::load(&out, Default::default()).unwrap();
    let logits = tch::no_grad(|| {
        merged.model.forward(&inputs["input_ids"], &seg, &inputs["pixel_values"], None)
    });
    let err = max_err(&logits, &want["merged_logits"], &inputs["attention_mask"]);
    assert!(err < 1e-4, "{model}: merged logits differ by {err}");
}

/// Trained here on PaliGemma 2, an adapter has the keys PEFT writes for it and loads back with the logits it had.
#[test]
fn adapters_exported_here_on_paligemma2_have_peft_layout() {
    let sets = ["train.steps=2", "eval.test_subset=2"];
    let cfg = common::config_on("pg2-gqa", "lora", "[lora]\nr = 4\nalpha = 8.0", &sets);
    let s = trainer::train(
        &cfg,
        &trainer::TrainOptions {
            runs_dir: temp("peft-export-pg2"),
            quiet: true,
            ..Default::default()
        },
    )
    .unwrap();
    let dir = s.run_dir.join("adapter");
    let keys = |p: &std::path::Path| -> BTreeSet<String> {
        Tensor::read_safetensors(p).unwrap().into_iter().map(|(k, _)| k).collect()
    };
    assert_eq!(
        keys(&dir.join("adapter_model.safetensors")),
        keys(&fixtures().join("pg2-gqa-peft-lora/adapter_model.safetensors")),
        "same keys as PEFT writes for the same targets"
    );
    let inputs = reference("pg2-gqa");
    let mut loaded = paligemma::load(&fixtures().join("pg2-gqa"), Default::default()).unwrap();
    let vs = tch::nn::VarStore::new(Device::Cpu);
    trainer::peft::load_adapter(&dir, &mut loaded.model, &vs).unwrap();
    let seg = hf_segments(&inputs, loaded.model.config.image_token_index);
    let logits = tch::no_grad(|| {
        loaded.model.forward(&inputs["input_ids"], &seg, &inputs["pixel_values"], None)
    });
    let moved = max_err(&logits, &inputs["logits"], &inputs["attention_mask"]);
    assert!(moved > 1e-5, "two steps of training moved the adapted logits ({moved})");
}

#[test]
fn adapters_exported_here_have_peft_layout() {
    let runs = temp("peft-export");
    let cfg =
        config("lora", "[lora]\nr = 4\nalpha = 8.0", &["train.steps=1", "eval.test_subset=2"]);
    let s = trainer::train(
        &cfg,
        &trainer::TrainOptions { runs_dir: runs, quiet: true, ..Default::default() },
    )
    .unwrap();
    let dir = s.run_dir.join("adapter");
    let ours: BTreeSet<String> = Tensor::read_safetensors(dir.join("adapter_model.safetensors"))
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let peft: BTreeSet<String> =
        Tensor::read_safetensors(fixtures().join("mqa-peft-lora/adapter_model.safetensors"))
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
    assert_eq!(ours, peft, "same keys as PEFT writes for the same targets");
    let c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(c["peft_type"], "LORA");
    assert_eq!((c["r"].as_i64(), c["lora_alpha"].as_f64()), (Some(4), Some(8.0)));
    // and it loads back here onto a fresh model
    let mut loaded = paligemma::load(&fixtures().join("mqa"), Default::default()).unwrap();
    let vs = tch::nn::VarStore::new(Device::Cpu);
    trainer::peft::load_adapter(&dir, &mut loaded.model, &vs).unwrap();
    // a wrong adapter is refused with its reason
    std::fs::write(dir.join("adapter_config.json"), c.to_string().replace("\"LORA\"", "\"IA3\""))
        .unwrap();
    let mut again = paligemma::load(&fixtures().join("mqa"), Default::default()).unwrap();
    let e =
        trainer::peft::load_adapter(&dir, &mut again.model, &tch::nn::VarStore::new(Device::Cpu))
            .unwrap_err();
    assert!(e.to_string().contains("LoRA only"), "{e}");
}
