//! Evaluation: caption a fixed set of images (greedy or beam, KV cache), score with the metrics crate against all
//! references, and measure output diversity (distinct captions / images; a collapsed model says the same thing for
//! every image).
use crate::config::EvalConfig;
use crate::data::{pixels, Prompt};
use crate::parallel;
use crate::TrainError;
use paligemma::{generate, GenerationConfig, PaliGemma, PaliGemmaTokenizer, SequenceLayout};
use rsicd_data::{Dataset, EvalSet, ImagePreprocessor, Item, Split};
use std::collections::{BTreeMap, BTreeSet};
use tch::{Device, Tensor};

pub struct EvalOutput {
    /// `(metric name, value)` as the metrics crate names them (`METEOR (approx)` when approximated).
    pub metrics: Vec<(String, f64)>,
    pub diversity: f64,
    /// `(image_id, caption)` in evaluation order.
    pub predictions: Vec<(String, String)>,
    pub references: BTreeMap<String, Vec<String>>,
}

pub fn metrics_options(cfg: &EvalConfig) -> metrics::Options {
    metrics::Options { meteor: cfg.meteor, ..Default::default() }
}

pub struct Evaluation<'a> {
    pub model: &'a PaliGemma,
    pub tokenizer: &'a PaliGemmaTokenizer,
    pub layout: &'a SequenceLayout,
    pub prompt: &'a Prompt,
    pub soft: Option<&'a Tensor>,
    pub pre: &'a ImagePreprocessor,
    pub device: Device,
    pub cfg: &'a EvalConfig,
    pub evaluator: &'a metrics::Evaluator,
    /// Data-parallel training: the batches are shared out between the ranks (`crate::parallel`), rank 0 scores.
    pub group: Option<&'a distributed::ProcessGroup>,
}

impl Evaluation<'_> {
    /// Captions only (no scoring), in item order (on every rank, when the batches were shared out).
    pub fn captions(
        &self,
        ds: &Dataset,
        items: &[usize],
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<Vec<String>, TrainError> {
        let gen = GenerationConfig {
            max_new_tokens: self.cfg.max_new_tokens,
            num_beams: self.cfg.num_beams.max(1),
            ..Default::default()
        };
        let prompt = self.prompt.sequence(self.layout, None)?;
        let batches: Vec<&[usize]> = items.chunks(self.cfg.batch_size.max(1)).collect();
        let world = self.group.map_or(1, |g| g.world_size());
        let mut mine = Vec::new();
        for (k, chunk) in batches.iter().enumerate() {
            if !parallel::owns_batch(self.group, k) {
                continue;
            }
            let its: Vec<&Item> = chunk.iter().map(|&i| &ds.items[i]).collect();
            let px = pixels(&its, self.pre, self.device)?;
            let prompts = vec![prompt.clone(); chunk.len()];
            let mut out = Vec::with_capacity(chunk.len());
            for ids in generate(self.model, &prompts, &px, self.soft, &gen) {
                out.push(self.tokenizer.decode(&ids, true)?.trim().to_string());
            }
            mine.push((k, out));
            if let Some(p) = progress {
                // The other ranks caption their batches meanwhile.
                p.inc((chunk.len() * world) as u64);
            }
        }
        match self.group {
            Some(g) => parallel::gather_captions(g, mine, batches.len()),
            None => Ok(mine.into_iter().flat_map(|(_, c)| c).collect()),
        }
    }

    fn is_main(&self) -> bool {
        self.group.is_none_or(|g| g.is_main())
    }

    /// Captions and scores the split's evaluation set (`limit`: an evenly spaced fixed subset). Ranks other than 0
    /// of a data-parallel run caption their share and return no scores.
    pub fn run(
        &self,
        ds: &Dataset,
        split: &str,
        limit: Option<usize>,
    ) -> Result<EvalOutput, TrainError> {
        let set = EvalSet::new(ds, &Split::parse(split), limit);
        if set.items.is_empty() {
            return Err(TrainError::Config(format!(
                "no `{split}` images with captions to evaluate on"
            )));
        }
        let bar = indicatif::ProgressBar::new(set.items.len() as u64).with_style(
            indicatif::ProgressStyle::with_template(
                "  eval {msg} {bar:30} {pos}/{len} images {eta}",
            )
            .expect("template"),
        );
        bar.set_message(split.to_string());
        if !self.is_main() {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let captions = self.captions(ds, &set.items, Some(&bar))?;
        bar.finish_and_clear();
        if !self.is_main() {
            let references = Default::default();
            return Ok(EvalOutput {
                metrics: vec![],
                diversity: 0.0,
                predictions: vec![],
                references,
            });
        }
        score(ds, &set, captions, self.evaluator)
    }
}

/// Scores captions for an evaluation set.
pub fn score(
    ds: &Dataset,
    set: &EvalSet,
    captions: Vec<String>,
    evaluator: &metrics::Evaluator,
) -> Result<EvalOutput, TrainError> {
    let mut refs = BTreeMap::new();
    let mut hyps = BTreeMap::new();
    let mut predictions = Vec::new();
    for ((item, references), caption) in set.references(ds).zip(captions) {
        let id = ds.items[item].filename.clone();
        refs.insert(id.clone(), references.to_vec());
        hyps.insert(id.clone(), caption.clone());
        predictions.push((id, caption));
    }
    let report = evaluator.evaluate(&refs, &hyps)?;
    let distinct: BTreeSet<&String> = hyps.values().collect();
    Ok(EvalOutput {
        metrics: report.corpus_metrics().into_iter().map(|(n, v)| (n.to_string(), v)).collect(),
        diversity: distinct.len() as f64 / hyps.len() as f64,
        predictions,
        references: refs,
    })
}

/// The blind baseline: the most frequent training caption, predicted for every image.
pub fn most_frequent_caption(ds: &Dataset, split: &str) -> Option<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for item in ds.split(&Split::parse(split)) {
        for c in &item.captions {
            *counts.entry(c.as_str()).or_default() += 1;
        }
    }
    counts.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0))).map(|(c, _)| c.to_string())
}
