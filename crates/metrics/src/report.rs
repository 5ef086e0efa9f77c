//! The result of an evaluation: corpus and per-image scores under pycocoevalcap's metric names, plus
//! what was computed how (METEOR kind, CIDEr document frequencies, tokenization).

use serde_json::{json, Map, Value};

use crate::meteor::MeteorKind;
use crate::Tokenization;

/// Scores of one image or of the corpus: `(name, value)` in the order of [`crate::registry`]
/// (pycocoevalcap's), under pycocoevalcap's keys. A non-standard value carries its qualifier in the name
/// ("METEOR (approx)", "CIDEr (external df)"), so it can never pass for the standard one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scores(pub(crate) Vec<(String, f64)>);

impl Scores {
    /// The value under this exact name, e.g. `get("Bleu_4")`, `get("METEOR (approx)")`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.iter().find(|&(n, _)| n == name).map(|(_, v)| v)
    }

    /// `(name, value)` in registration order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.0.iter().map(|(n, v)| (n.as_str(), *v))
    }

    fn json(&self) -> Map<String, Value> {
        self.iter().map(|(n, v)| (n.to_string(), json!(v))).collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImageScores {
    pub image_id: String,
    pub scores: Scores,
}

/// Where CIDEr-D's document frequencies came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CiderDfKind {
    /// The evaluated references (standard).
    Corpus,
    /// An external reference corpus of this many images (non-standard).
    External { images: usize },
}

#[derive(Debug, Clone)]
pub struct Report {
    pub corpus: Scores,
    /// In evaluation order (image id order for [`crate::evaluate`]).
    pub per_image: Vec<ImageScores>,
    pub meteor: MeteorKind,
    pub cider_df: CiderDfKind,
    pub tokenization: Tokenization,
    /// Total hypothesis length and effective reference length in words (BLEU's brevity inputs).
    pub hypothesis_words: usize,
    pub reference_words: usize,
}

impl Report {
    /// `(name, value)` of every computed corpus metric, in pycocoevalcap order.
    pub fn corpus_metrics(&self) -> Vec<(&str, f64)> {
        self.corpus.iter().collect()
    }

    /// JSON with pycocoevalcap's keys: the corpus metrics at the top level (like `COCOEvalCap.eval`),
    /// `per_image` keyed by image id (like `imgToEval`), and `meta` describing how they were computed.
    /// `image_id` values are strings unless `numeric_ids` (then ids that parse as integers are numbers).
    pub fn to_json(&self, numeric_ids: bool) -> Value {
        let mut top = self.corpus.json();
        let mut per = Map::new();
        for img in &self.per_image {
            let mut m = Map::new();
            let id = match (numeric_ids, img.image_id.parse::<i64>()) {
                (true, Ok(n)) => json!(n),
                _ => json!(img.image_id),
            };
            m.insert("image_id".into(), id);
            m.extend(img.scores.json());
            per.insert(img.image_id.clone(), Value::Object(m));
        }
        top.insert("per_image".into(), Value::Object(per));
        top.insert(
            "meta".into(),
            json!({
                "images": self.per_image.len(),
                "tokenization": self.tokenization.describe(),
                "meteor": self.meteor.describe(),
                "cider_df": match self.cider_df {
                    CiderDfKind::Corpus => "evaluated references (standard)".to_string(),
                    CiderDfKind::External { images } => format!("external corpus of {images} images (non-standard)"),
                },
                "hypothesis_words": self.hypothesis_words,
                "reference_words": self.reference_words,
                "reference": "pycocoevalcap 1.2 (tylin/coco-caption); SPICE not computed",
            }),
        );
        Value::Object(top)
    }

    /// A plain-text table of the corpus scores (raw and ×100) with notes on non-standard values.
    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("{:<22} {:>10} {:>8}\n", "metric", "score", "x100"));
        for (name, v) in self.corpus.iter() {
            out.push_str(&format!("{name:<22} {v:>10.6} {:>8.2}\n", v * 100.0));
        }
        out.push_str(&format!(
            "images: {}   tokenization: {}\n",
            self.per_image.len(),
            self.tokenization.describe()
        ));
        out.push_str(&format!("METEOR: {}\n", self.meteor.describe()));
        if let CiderDfKind::External { images } = self.cider_df {
            out.push_str(&format!(
                "CIDEr: document frequencies from an external corpus of {images} images; not comparable with published CIDEr\n"
            ));
        }
        out
    }
}
