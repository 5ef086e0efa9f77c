//! The analytic plan (from the config alone, as `pgrs plan` makes it for models not on this machine) counts exactly
//! what a built model has, for every strategy's tiny variant.
mod common;

use common::{config, config_on, temp};
use trainer::memory;

#[test]
fn analytic_sizes_equal_the_built_model() {
    let cases = [
        config("lora", "[lora]\nr = 4\ntargets = [\"language_model.model.layers.*.self_attn.{q,k,v,o}_proj\", \"vision_tower.vision_model.encoder.layers.*.mlp.fc1\"]", &[]),
        config("hard_prompt", "", &["train.preset=\"attention\"", "model.dtype=\"bf16\""]),
        config("hybrid", "[soft_prompt]\nlength = 3\nplacement = \"after_prefix\"", &["train.trainable=[\"multi_modal_projector.**\"]"]),
        config_on("pg2-gqa", "lora", "[lora]\nr = 4", &[]),
        config_on("pg2-gqa", "hard_prompt", "", &["train.preset=\"attention\"", "model.dtype=\"bf16\""]),
    ];
    for cfg in cases {
        let built = trainer::strategy::build(&cfg, &[], &temp("plan")).unwrap();
        let base: Vec<(String, tch::Tensor)> = built.base_vs.variables().into_iter().collect();
        let (bp, bb, tr, ex) = memory::sizes_from_tensors(&base, &built.trainables);
        let (abp, abb, atr, aex, avis) =
            memory::analytic_sizes(&cfg, &built.model.config, built.base_dtype.kind());
        assert_eq!((bp, tr, ex), (abp, atr, aex), "{}", cfg.name);
        assert_eq!(bb, abb, "{}: bytes", cfg.name);
        assert_eq!(avis, built.vision_trainable, "{}", cfg.name);
    }
}
