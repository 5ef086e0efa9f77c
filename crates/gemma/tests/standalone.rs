//! Standalone `GemmaForCausalLM` and `Gemma2ForCausalLM` checkpoints (equal to the `mqa` and `pg2-gqa` fixtures'
//! language models) load and give transformers' logits, with a right-padded batch (for Gemma 2, longer than the
//! sliding window, with soft-capping that bites).
use gemma::{Architecture, GemmaForCausalLM};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

#[test]
fn causal_lm_matches_transformers() {
    check_causal_lm("gemma-standalone", Architecture::Gemma1);
}

#[test]
fn gemma2_causal_lm_matches_transformers() {
    check_causal_lm("gemma2-standalone", Architecture::Gemma2);
}

fn check_causal_lm(name: &str, arch: Architecture) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/fixtures").join(name);
    let r: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.join("reference.safetensors")).unwrap().into_iter().collect();
    let (_vs, lm) = GemmaForCausalLM::load(&dir, None, Device::Cpu).unwrap();
    assert_eq!(lm.model.config.architecture(), arch);
    let logits = tch::no_grad(|| lm.forward(&r["input_ids"], &r["attention_mask"]));
    let valid = r["attention_mask"].to_kind(Kind::Bool).unsqueeze(-1).expand_as(&logits);
    let err = f64::try_from(
        (logits.masked_select(&valid) - r["logits"].masked_select(&valid)).abs().max(),
    )
    .unwrap();
    assert!(err < 1e-4, "{name}: max abs error {err}");
}

/// The decoding head is the same product as the plain head, equal to rounding with the same argmax and shape
/// `[rows, V]`, with Gemma 2's final soft-capping too: through crates/smallmm at 1-8 rows, and at 40 rows (over
/// `smallmm::MAX_ROWS`) through the libtorch fallback, `(E h^T)^T`.
#[test]
fn decoding_head_equals_the_plain_head() {
    for name in ["gemma-standalone", "gemma2-standalone"] {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/fixtures").join(name);
        let (_vs, lm) = GemmaForCausalLM::load(&dir, None, Device::Cpu).unwrap();
        check_decoding_head(&lm);
    }
}

fn check_decoding_head(lm: &GemmaForCausalLM) {
    tch::manual_seed(3);
    let d = lm.model.embed_tokens.size()[1];
    for rows in [1i64, 2, 3, 8, 40] {
        let h = Tensor::randn([rows, d], (Kind::Float, Device::Cpu));
        let (a, b) = tch::no_grad(|| (lm.model.logits(&h), lm.model.logits_decode(&h)));
        assert_eq!(a.size(), b.size());
        let err = f64::try_from((&a - &b).abs().max()).unwrap();
        let scale = f64::try_from(a.abs().max()).unwrap();
        assert!(err <= 1e-5 * scale.max(1.0), "{rows} rows: max abs error {err}");
        assert_eq!(a.argmax(-1, false), b.argmax(-1, false));
    }
}
