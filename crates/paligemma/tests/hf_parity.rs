//! Numerical parity with transformers 5.23 on the tiny fixtures: vision features, image features, logits and loss
//! (f32: max abs 1e-4 / 1e-5), the processor's token layout, and greedy / beam-3 ids (exact), for multi-query,
//! grouped-query and multi-head attention, three image sizes, both checkpoint naming schemes and a sharded copy; for
//! PaliGemma 1 (`mqa`, `gqa`, `mha`) and PaliGemma 2 (`pg2-gqa`, `pg2-mqa`: soft-capping that saturates, a sliding
//! window shorter than every sequence, `query_pre_attn_scalar` != `head_dim`, default and explicit layer patterns).
mod common;

use common::{fixtures, max_abs, segments_from_hf, Reference};
use paligemma::{
    generate, load, DType, GenerationConfig, LoadOptions, LossReduction, Sequence, SequenceLayout,
};
use tch::{Device, Kind};

const LOGITS_TOL: f64 = 1e-4;
const LOSS_TOL: f64 = 1e-5;

fn opts(dtype: Option<DType>) -> LoadOptions {
    LoadOptions { dtype, device: Device::Cpu }
}

fn check_forward(dir: &str, reference: &str) {
    let r = Reference::load(reference);
    let m = load(&fixtures().join(dir), opts(None)).unwrap();
    let model = &m.model;
    assert_eq!(model.kind(), Kind::Float, "{dir}: the stored dtype is kept");
    tch::no_grad(|| {
        let px = r.t("pixel_values");
        let vis = model.vision_tower.forward(px);
        let e = max_abs(&vis, r.t("vision_last_hidden_state"));
        assert!(e < LOGITS_TOL, "{dir}: vision features differ by {e}");
        let feats = model.image_features(px);
        let e = max_abs(&feats, r.t("image_features"));
        assert!(e < LOGITS_TOL, "{dir}: image features differ by {e}");

        let ids = r.t("input_ids");
        let seg = segments_from_hf(
            ids,
            r.t("attention_mask"),
            r.t("token_type_ids"),
            model.config.image_token_index,
        );
        let logits = model.forward(ids, &seg, px, None);
        // Padding positions are garbage in both implementations; compare every real position.
        let valid = r.t("attention_mask").to_kind(Kind::Bool).unsqueeze(-1).expand_as(&logits);
        let e = max_abs(&logits.masked_select(&valid), &r.t("logits").masked_select(&valid));
        assert!(e < LOGITS_TOL, "{dir}: logits differ by {e}");
        eprintln!("{dir}: max abs logits error vs transformers {e:.2e}");

        let hidden = model.hidden_t(ids, &seg, px, None, false);
        let loss =
            model.loss_from_hidden(&hidden, r.t("labels"), LossReduction::TokenMean).unwrap();
        let want = r.json["loss"].as_f64().unwrap();
        let got = f64::try_from(&loss.loss).unwrap();
        assert!((got - want).abs() < LOSS_TOL, "{dir}: loss {got} vs HF {want}");
        eprintln!("{dir}: loss {got:.7} vs transformers {want:.7}");
    });
}

#[test]
fn mqa_matches_hf_in_every_naming_scheme() {
    for dir in ["mqa", "mqa-hub", "mqa-statedict", "mqa-sharded"] {
        check_forward(dir, "mqa");
    }
}

#[test]
fn gqa_with_wide_heads_matches_hf() {
    check_forward("gqa", "gqa");
    check_forward("gqa-hub", "gqa");
}

#[test]
fn mha_matches_hf() {
    check_forward("mha", "mha");
    check_forward("mha-hub", "mha");
}

#[test]
fn paligemma2_gqa_matches_hf() {
    for dir in ["pg2-gqa", "pg2-gqa-hub", "pg2-gqa-sharded"] {
        check_forward(dir, "pg2-gqa");
    }
}

#[test]
fn paligemma2_mqa_with_explicit_layer_types_matches_hf() {
    check_forward("pg2-mqa", "pg2-mqa");
    check_forward("pg2-mqa-hub", "pg2-mqa");
}

fn layout(m: &paligemma::Loaded) -> SequenceLayout {
    let t = &m.tokenizer;
    SequenceLayout::new(
        m.model.config.num_image_tokens() as usize,
        t.image_id,
        t.bos_id,
        t.eos_id,
        t.pad_id,
    )
}

fn build(m: &paligemma::Loaded, prefix: &str, suffix: Option<&str>) -> Sequence {
    let (p, sep) = m.tokenizer.encode_prompt(prefix).unwrap();
    let s = suffix.map(|s| m.tokenizer.encode(s).unwrap());
    layout(m).build(&p, &sep, s.as_deref()).unwrap()
}

#[test]
fn sequence_builder_matches_the_hf_processor() {
    for name in ["mqa", "gqa", "mha", "pg2-gqa", "pg2-mqa"] {
        let r = Reference::load(name);
        let m = load(&fixtures().join(name), opts(None)).unwrap();
        let (prefixes, suffixes) = (r.strings("prefixes"), r.strings("suffixes"));
        let (hf_ids, hf_labels) = (r.ids("per_sample_input_ids"), r.ids("per_sample_labels"));
        for i in 0..prefixes.len() {
            let s = build(&m, &prefixes[i], Some(&suffixes[i]));
            assert_eq!(s.ids, hf_ids[i], "{name} sample {i}: ids");
            assert_eq!(s.labels, hf_labels[i], "{name} sample {i}: labels");
        }
    }
}

fn check_generation(name: &str) {
    let r = Reference::load(name);
    let m = load(&fixtures().join(name), opts(None)).unwrap();
    let prompts: Vec<Sequence> =
        r.strings("gen_prefixes").iter().map(|p| build(&m, p, None)).collect();
    let max_new = r.json["max_new_tokens"].as_u64().unwrap() as usize;
    let px = r.t("gen_pixel_values");
    // our left-padded batch is the processor's
    let batch = paligemma::collate(&prompts, paligemma::PadSide::Left, 0);
    assert_eq!(
        Vec::<i64>::try_from(batch.ids.flatten(0, 1)).unwrap(),
        Vec::<i64>::try_from(r.t("gen_input_ids").flatten(0, 1)).unwrap()
    );
    for (key, beams) in [("greedy", 1), ("beam3", 3)] {
        let want: Vec<Vec<i64>> = serde_json::from_value(r.json["generated"][key].clone()).unwrap();
        for use_cache in [true, false] {
            let cfg = GenerationConfig {
                max_new_tokens: max_new,
                num_beams: beams,
                use_cache,
                ..Default::default()
            };
            let got = generate(&m.model, &prompts, px, None, &cfg);
            assert_eq!(got, want, "{name} {key} batched (cache: {use_cache})");
        }
        let cfg =
            GenerationConfig { max_new_tokens: max_new, num_beams: beams, ..Default::default() };
        for (i, p) in prompts.iter().enumerate() {
            let one =
                generate(&m.model, std::slice::from_ref(p), &px.narrow(0, i as i64, 1), None, &cfg);
            assert_eq!(one[0], want[i], "{name} {key} sample {i} alone");
        }
    }
}

#[test]
fn generation_matches_hf_mqa() {
    check_generation("mqa");
}

#[test]
fn generation_matches_hf_gqa() {
    check_generation("gqa");
}

#[test]
fn generation_matches_hf_mha_with_eos() {
    check_generation("mha");
}

#[test]
fn generation_matches_hf_paligemma2_gqa() {
    check_generation("pg2-gqa");
}

#[test]
fn generation_matches_hf_paligemma2_mqa() {
    check_generation("pg2-mqa");
}

/// bf16 drift: our bf16 logits may not be further from the f32 reference than transformers' own bf16 logits are,
/// give or take a factor 2 (rounding order differs: norms and softmax in f32 here, LayerNorm in bf16 there).
#[test]
fn bf16_stays_within_the_reference_drift() {
    for name in ["mqa", "gqa", "mha", "pg2-gqa", "pg2-mqa"] {
        let r = Reference::load(name);
        let m = load(&fixtures().join(name), opts(Some(DType::Bf16))).unwrap();
        assert_eq!(m.model.kind(), Kind::BFloat16);
        let ids = r.t("input_ids");
        let seg = segments_from_hf(
            ids,
            r.t("attention_mask"),
            r.t("token_type_ids"),
            m.model.config.image_token_index,
        );
        let logits = tch::no_grad(|| m.model.forward(ids, &seg, r.t("pixel_values"), None));
        let valid = r.t("attention_mask").to_kind(Kind::Bool).unsqueeze(-1).expand_as(&logits);
        let e = max_abs(&logits.masked_select(&valid), &r.t("logits").masked_select(&valid));
        let hf = r.json["bf16_logits_max_abs_err"].as_f64().unwrap();
        assert!(
            e <= 2.0 * hf + 1e-3,
            "{name}: bf16 logits drift {e}, transformers' own bf16 drift is {hf}"
        );
        eprintln!("{name}: bf16 logits drift {e:.4} (transformers' own: {hf:.4})");
        let hidden = tch::no_grad(|| m.model.hidden_t(ids, &seg, r.t("pixel_values"), None, false));
        let loss =
            m.model.loss_from_hidden(&hidden, r.t("labels"), LossReduction::TokenMean).unwrap();
        let (got, want) = (f64::try_from(&loss.loss).unwrap(), r.json["loss"].as_f64().unwrap());
        assert!((got - want).abs() < 0.05, "{name}: bf16 loss {got} vs f32 reference {want}");
    }
}
