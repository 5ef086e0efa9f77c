//! Properties of the prefix-LM attention that any correct implementation has:
//! suffix tokens never see the future, prefix tokens see the whole prefix in both directions, padding changes
//! nothing, and the loss only counts suffix + `<eos>`. Run on the tiny `mqa` fixture.
mod common;

use common::{fixtures, max_abs};
use paligemma::{collate, load, LoadOptions, LossReduction, PadSide, Sequence, SequenceLayout};
use tch::{Kind, Tensor};

fn setup() -> (paligemma::Loaded, SequenceLayout, Tensor) {
    let m = load(&fixtures().join("mqa"), LoadOptions::default()).unwrap();
    let t = &m.tokenizer;
    let layout = SequenceLayout::new(
        m.model.config.num_image_tokens() as usize,
        t.image_id,
        t.bos_id,
        t.eos_id,
        t.pad_id,
    );
    tch::manual_seed(0);
    let px = Tensor::rand([1, 3, 32, 32], (Kind::Float, tch::Device::Cpu)) * 2.0 - 1.0;
    (m, layout, px)
}

fn seq(m: &paligemma::Loaded, layout: &SequenceLayout, prefix: &str, suffix: &str) -> Sequence {
    let (p, sep) = m.tokenizer.encode_prompt(prefix).unwrap();
    layout.build(&p, &sep, Some(&m.tokenizer.encode(suffix).unwrap())).unwrap()
}

fn logits(m: &paligemma::Loaded, seqs: &[Sequence], side: PadSide, px: &Tensor) -> Tensor {
    let b = collate(seqs, side, 0);
    let px = px.expand([seqs.len() as i64, -1, -1, -1], false);
    tch::no_grad(|| m.model.forward(&b.ids, &b.segments, &px, None))
}

#[test]
fn changing_a_later_suffix_token_never_changes_earlier_logits() {
    let (m, layout, px) = setup();
    let a = seq(&m, &layout, "caption en", "many buildings are near a river");
    let mut b = a.clone();
    let n = a.len();
    b.ids[n - 3] = (b.ids[n - 3] + 7) % 150 + 4; // a different ordinary token, two before <eos>
    let (la, lb) = (logits(&m, &[a], PadSide::Right, &px), logits(&m, &[b], PadSide::Right, &px));
    let before = (n - 3) as i64;
    assert_eq!(
        max_abs(&la.narrow(1, 0, before), &lb.narrow(1, 0, before)),
        0.0,
        "no position before it may change"
    );
    assert!(
        max_abs(&la.narrow(1, before, 3), &lb.narrow(1, before, 3)) > 1e-3,
        "it and later positions do change"
    );
}

#[test]
fn changing_a_prefix_token_changes_logits_before_it() {
    let (m, layout, px) = setup();
    let a = seq(&m, &layout, "caption en", "a river");
    let b = seq(&m, &layout, "caption es", "a river");
    assert_eq!(a.len(), b.len());
    let pos = a.ids.iter().zip(&b.ids).position(|(x, y)| x != y).unwrap() as i64;
    let (la, lb) = (logits(&m, &[a], PadSide::Right, &px), logits(&m, &[b], PadSide::Right, &px));
    // image positions and <bos> come before the changed token and must see it (bidirectional prefix)
    assert!(max_abs(&la.narrow(1, 0, pos), &lb.narrow(1, 0, pos)) > 1e-3);
    assert!(
        max_abs(&la.narrow(1, 0, 1), &lb.narrow(1, 0, 1)) > 1e-4,
        "even the first image token sees the prefix"
    );
}

#[test]
fn padding_changes_nothing_on_either_side() {
    let (m, layout, px) = setup();
    let short = seq(&m, &layout, "caption en", "a river");
    let long = seq(
        &m,
        &layout,
        "describe the image",
        "many buildings and green trees are around a stadium",
    );
    let alone = logits(&m, std::slice::from_ref(&short), PadSide::Right, &px);
    let n = short.len() as i64;
    let px2 = Tensor::cat(&[&px, &(&px * 0.5)], 0);
    let right = logits(&m, &[short.clone(), long.clone()], PadSide::Right, &px2);
    assert!(max_abs(&alone, &right.narrow(0, 0, 1).narrow(1, 0, n)) < 1e-5);
    let left = logits(&m, &[short.clone(), long.clone()], PadSide::Left, &px2);
    let pad = left.size()[1] - n;
    assert!(max_abs(&alone, &left.narrow(0, 0, 1).narrow(1, pad, n)) < 1e-5);
    // and the loss of a padded batch row equals its loss alone
    let b1 = collate(std::slice::from_ref(&short), PadSide::Right, 0);
    let b2 = collate(&[short.clone(), short], PadSide::Right, 0);
    let l1 = m.model.loss(&b1, &px, None, LossReduction::TokenMean, false).unwrap();
    let l2 =
        m.model.loss(&b2, &px.repeat([2, 1, 1, 1]), None, LossReduction::TokenMean, false).unwrap();
    assert!((f64::try_from(&l1.loss).unwrap() - f64::try_from(&l2.loss).unwrap()).abs() < 1e-5);
}

#[test]
fn loss_counts_exactly_suffix_and_eos_and_equals_full_logits_loss() {
    let (m, layout, px) = setup();
    let s = seq(&m, &layout, "caption en", "two planes are parked");
    let suffix_len = m.tokenizer.encode("two planes are parked").unwrap().len() as i64;
    let batch = collate(std::slice::from_ref(&s), PadSide::Right, 0);
    let out = m.model.loss(&batch, &px, None, LossReduction::TokenMean, false).unwrap();
    assert_eq!(out.tokens, suffix_len + 1, "suffix tokens + <eos>");
    // against the loss over full logits computed by hand
    let full = logits(&m, std::slice::from_ref(&s), PadSide::Right, &px)
        .squeeze_dim(0)
        .to_kind(Kind::Float);
    let l = full.size()[0];
    let targets = batch.labels.squeeze_dim(0).narrow(0, 1, l - 1);
    let by_hand = full.narrow(0, 0, l - 1).cross_entropy_loss::<Tensor>(
        &targets,
        None,
        tch::Reduction::Mean,
        -100,
        0.0,
    );
    assert!(max_abs(&out.loss, &by_hand) < 1e-5);
    // a prompt-only batch has nothing to learn from: a clear error, never loss 0 or NaN
    let (p, sep) = m.tokenizer.encode_prompt("caption en").unwrap();
    let prompt = layout.build(&p, &sep, None).unwrap();
    let err = m
        .model
        .loss(&collate(&[prompt], PadSide::Right, 0), &px, None, LossReduction::TokenMean, false)
        .unwrap_err();
    assert!(err.to_string().contains("no supervised token"), "{err}");
}

#[test]
fn example_mean_weights_examples_equally() {
    let (m, layout, px) = setup();
    let a = seq(&m, &layout, "caption en", "a river");
    let b =
        seq(&m, &layout, "caption en", "many buildings and green trees are around a playground");
    let px2 = px.repeat([2, 1, 1, 1]);
    let la = m
        .model
        .loss(
            &collate(std::slice::from_ref(&a), PadSide::Right, 0),
            &px,
            None,
            LossReduction::TokenMean,
            false,
        )
        .unwrap();
    let lb = m
        .model
        .loss(
            &collate(std::slice::from_ref(&b), PadSide::Right, 0),
            &px,
            None,
            LossReduction::TokenMean,
            false,
        )
        .unwrap();
    let both = m
        .model
        .loss(&collate(&[a, b], PadSide::Right, 0), &px2, None, LossReduction::ExampleMean, false)
        .unwrap();
    let want = (f64::try_from(&la.loss).unwrap() + f64::try_from(&lb.loss).unwrap()) / 2.0;
    assert!((f64::try_from(&both.loss).unwrap() - want).abs() < 1e-5);
}

#[test]
fn cached_generation_equals_uncached_with_a_soft_prompt() {
    let (m, mut layout, px) = setup();
    layout.soft_prompt = Some((3, paligemma::SoftPromptPlacement::AfterImage));
    let (p, sep) = m.tokenizer.encode_prompt("caption en").unwrap();
    let prompt = layout.build(&p, &sep, None).unwrap();
    tch::manual_seed(1);
    let soft = Tensor::randn([3, 48], (Kind::Float, tch::Device::Cpu)) * 3.0;
    let other = Tensor::randn([3, 48], (Kind::Float, tch::Device::Cpu)) * 3.0;
    for beams in [1, 3] {
        let mut cfg = paligemma::GenerationConfig {
            max_new_tokens: 8,
            num_beams: beams,
            ..Default::default()
        };
        let cached =
            paligemma::generate(&m.model, std::slice::from_ref(&prompt), &px, Some(&soft), &cfg);
        cfg.use_cache = false;
        let uncached =
            paligemma::generate(&m.model, std::slice::from_ref(&prompt), &px, Some(&soft), &cfg);
        assert_eq!(cached, uncached, "beams {beams}");
    }
    // ... and the soft prompt is really injected: other vectors, other next-token logits
    let b = collate(std::slice::from_ref(&prompt), PadSide::Left, 0);
    let la = tch::no_grad(|| m.model.forward(&b.ids, &b.segments, &px, Some(&soft)));
    let lb = tch::no_grad(|| m.model.forward(&b.ids, &b.segments, &px, Some(&other)));
    assert!(max_abs(&la.select(1, -1), &lb.select(1, -1)) > 1e-3);
}
