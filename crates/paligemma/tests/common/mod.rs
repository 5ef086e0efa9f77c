//! Helpers for the parity tests: fixture paths and the reference tensors written by
//! `scripts/fixtures/gen_paligemma_fixtures.py` (transformers 5.23).
#![allow(dead_code)]
use paligemma::{Segment, Sequence};
use std::collections::HashMap;
use std::path::PathBuf;
use tch::{Kind, Tensor};

#[path = "../../../trainer/tests/common/temp_dirs.rs"]
mod temp_dirs;
#[allow(unused_imports)]
pub use temp_dirs::temp_dir;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/fixtures")
}

pub struct Reference {
    pub tensors: HashMap<String, Tensor>,
    pub json: serde_json::Value,
}

impl Reference {
    pub fn load(model: &str) -> Self {
        let dir = fixtures().join(model);
        let tensors = Tensor::read_safetensors(dir.join("reference.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
        let json =
            serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
                .unwrap();
        Self { tensors, json }
    }

    pub fn t(&self, name: &str) -> &Tensor {
        &self.tensors[name]
    }

    pub fn ids(&self, key: &str) -> Vec<Vec<i64>> {
        serde_json::from_value(self.json[key].clone()).unwrap()
    }

    pub fn strings(&self, key: &str) -> Vec<String> {
        serde_json::from_value(self.json[key].clone()).unwrap()
    }
}

/// Segment ids from what the HF processor returns: padding where `attention_mask` is 0, image slots where the id is
/// `<image>`, suffix where `token_type_ids` is 1, prefix elsewhere.
pub fn segments_from_hf(
    ids: &Tensor,
    attention_mask: &Tensor,
    token_type_ids: &Tensor,
    image_id: i64,
) -> Tensor {
    let pad = attention_mask.eq(0);
    let image = ids.eq(image_id);
    let suffix = token_type_ids.eq(1);
    let seg = Tensor::full_like(ids, Segment::Prefix.id());
    let seg = seg.where_self(&suffix.logical_not(), &Tensor::from(Segment::Suffix.id()));
    let seg = seg.where_self(&image.logical_not(), &Tensor::from(Segment::Image.id()));
    seg.where_self(&pad.logical_not(), &Tensor::from(Segment::Pad.id())).to_kind(Kind::Int64)
}

pub fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from((a.to_kind(Kind::Float) - b.to_kind(Kind::Float)).abs().max()).unwrap()
}

pub fn seq_ids(s: &Sequence) -> Vec<i64> {
    s.ids.clone()
}
