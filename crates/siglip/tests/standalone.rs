//! Standalone SigLIP checkpoints (a `SiglipModel` with text tower and pooling head, and a `SiglipVisionModel`) load
//! into the vision tower and give transformers' vision features for the `mqa` fixture's images.
use siglip::SiglipVisionModel;
use std::path::PathBuf;
use tch::{Device, Tensor};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/fixtures")
}

#[test]
fn standalone_checkpoints_give_the_reference_features() {
    let reference: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(fixtures().join("mqa/reference.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    for dir in ["siglip-standalone", "siglip-vision-standalone"] {
        let (_vs, model) =
            SiglipVisionModel::load(&fixtures().join(dir), None, Device::Cpu).unwrap();
        let got = tch::no_grad(|| model.forward(&reference["pixel_values"]));
        let err =
            f64::try_from((got - &reference["vision_last_hidden_state"]).abs().max()).unwrap();
        assert!(err < 1e-4, "{dir}: max abs error {err}");
        assert_eq!(model.config.num_patches(), 16);
    }
}

#[test]
fn text_tower_keys_are_not_silently_mixed_in() {
    // The text tower is ignored on purpose; a key that is neither vision nor text is still an error.
    use siglip::standalone_key;
    use weights::KeyMapping;
    assert_eq!(standalone_key("text_model.encoder.layers.0.mlp.fc1.weight"), KeyMapping::Ignore);
    assert_eq!(standalone_key("vision_model.head.probe"), KeyMapping::Ignore);
    assert_eq!(
        standalone_key("vision_model.post_layernorm.weight"),
        KeyMapping::Var("post_layernorm.weight".into())
    );
    assert_eq!(standalone_key("foo.bar"), KeyMapping::Var("foo.bar".into()));
}
