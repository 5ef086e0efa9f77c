//! A standalone `GemmaForCausalLM` checkpoint (equal to the `mqa` fixture's language model) loads and gives
//! transformers' logits, with a right-padded batch.
use gemma::GemmaForCausalLM;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

#[test]
fn causal_lm_matches_transformers() {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/fixtures/gemma-standalone");
    let r: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.join("reference.safetensors")).unwrap().into_iter().collect();
    let (_vs, lm) = GemmaForCausalLM::load(&dir, None, Device::Cpu).unwrap();
    let logits = tch::no_grad(|| lm.forward(&r["input_ids"], &r["attention_mask"]));
    let valid = r["attention_mask"].to_kind(Kind::Bool).unsqueeze(-1).expand_as(&logits);
    let err = f64::try_from(
        (logits.masked_select(&valid) - r["logits"].masked_select(&valid)).abs().max(),
    )
    .unwrap();
    assert!(err < 1e-4, "max abs error {err}");
}
