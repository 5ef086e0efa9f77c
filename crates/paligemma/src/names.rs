//! Checkpoint key names. The hub layout (transformers 4.41) is the canonical one for our variables; transformers 5.x
//! names (in-memory `model.vision_tower.*` / `model.language_model.*` / `lm_head.*`, and what 5.x `save_pretrained`
//! writes: `vision_tower.*` without `vision_model`) are mapped onto it. All hub prefixes live in this module.
use weights::KeyMapping;

/// Where the vision tower, projector and language model live in our `VarStore` (hub names).
pub const VISION: [&str; 2] = ["vision_tower", "vision_model"];
pub const PROJECTOR: &str = "multi_modal_projector";
pub const LANGUAGE: [&str; 2] = ["language_model", "model"];

/// Maps any supported PaliGemma checkpoint key to our variable name, or marks it ignored: the tied head, and
/// non-persistent buffers that old exporters saved.
pub fn paligemma_key(key: &str) -> KeyMapping {
    if key.ends_with("position_ids") || key.ends_with("rotary_emb.inv_freq") {
        return KeyMapping::Ignore;
    }
    let key = match key.strip_prefix("model.") {
        Some(k)
            if k.starts_with("vision_tower.")
                || k.starts_with("language_model.")
                || k.starts_with("multi_modal_projector.") =>
        {
            k
        }
        _ => key,
    };
    if key == "lm_head.weight" || key == "language_model.lm_head.weight" {
        return KeyMapping::Ignore; // tied to the embeddings
    }
    if let Some(rest) = key.strip_prefix("vision_tower.") {
        let rest = rest.strip_prefix("vision_model.").unwrap_or(rest);
        return KeyMapping::Var(format!("vision_tower.vision_model.{rest}"));
    }
    if let Some(rest) = key.strip_prefix("language_model.") {
        let rest = rest.strip_prefix("model.").unwrap_or(rest);
        return KeyMapping::Var(format!("language_model.model.{rest}"));
    }
    KeyMapping::Var(key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(k: &str) -> KeyMapping {
        KeyMapping::Var(k.into())
    }

    #[test]
    fn all_naming_schemes_map_to_hub_names() {
        let hub = "vision_tower.vision_model.encoder.layers.3.mlp.fc1.weight";
        for k in [
            hub,
            "model.vision_tower.encoder.layers.3.mlp.fc1.weight",
            "vision_tower.encoder.layers.3.mlp.fc1.weight",
        ] {
            assert_eq!(paligemma_key(k), var(hub), "{k}");
        }
        let hub = "language_model.model.layers.0.self_attn.q_proj.weight";
        for k in [hub, "model.language_model.layers.0.self_attn.q_proj.weight"] {
            assert_eq!(paligemma_key(k), var(hub), "{k}");
        }
        for k in ["multi_modal_projector.linear.bias", "model.multi_modal_projector.linear.bias"] {
            assert_eq!(paligemma_key(k), var("multi_modal_projector.linear.bias"));
        }
        for k in [
            "lm_head.weight",
            "language_model.lm_head.weight",
            "vision_tower.vision_model.embeddings.position_ids",
        ] {
            assert_eq!(paligemma_key(k), KeyMapping::Ignore, "{k}");
        }
        assert_eq!(paligemma_key("something.else"), var("something.else"));
    }
}
