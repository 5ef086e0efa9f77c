//! COCO-standard caption metrics, equal to pycocoevalcap 1.2: PTB tokenization, BLEU-1..4, METEOR 1.5,
//! ROUGE-L and CIDEr-D, per image and for the corpus. No libtorch, and no Java except for the exact
//! METEOR value.
//!
//! Reference: pycocoevalcap 1.2 (<https://github.com/salaniz/pycocoevalcap>, the Python 3 port of
//! tylin/coco-caption; scorer paths below are in that repository) and the metrics' papers, cited in each
//! scorer's module with the behaviour it reproduces; `docs/metrics.md` lists the proofs. Each metric
//! implements [`Metric`] and is listed in [`registry`].
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! let mut refs = BTreeMap::new();
//! refs.insert("img1".to_string(), vec!["A bare land.".to_string(), "It is a piece of bare land.".to_string()]);
//! let mut hyps = BTreeMap::new();
//! hyps.insert("img1".to_string(), "a bare land".to_string());
//! let report = metrics::evaluate(&refs, &hyps, &metrics::Options::default())?;
//! println!("{}", report.table());
//! # Ok::<(), metrics::MetricsError>(())
//! ```
//!
//! SPICE is out of scope: it needs Stanford CoreNLP 3.6.0 models that the package registries do not carry.

pub mod bleu;
pub mod cider;
pub mod corpus;
pub mod error;
pub mod mean;
pub mod meteor;
pub mod ngram;
pub mod ptb;
pub mod report;
pub mod rouge;
pub mod text;

use std::collections::BTreeMap;

pub use cider::{DfSource, DocumentFrequency};
pub use corpus::Sample;
pub use error::{MetricsError, Result};
pub use meteor::{JarConfig, MeteorKind, MeteorMode};
pub use ptb::tokenize_caption;
pub use report::{CiderDfKind, ImageScores, Report, Scores};

/// How captions are turned into tokens before scoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tokenization {
    /// pycocoevalcap's PTBTokenizer step (the standard): lowercase, split clitics, drop punctuation.
    #[default]
    Ptb,
    /// Captions are already tokenized; words are separated by whitespace.
    Pretokenized,
}

impl Tokenization {
    pub fn describe(&self) -> &'static str {
        match self {
            Tokenization::Ptb => {
                "PTB (Stanford PTBTokenizer 3.4.1 rules, pycocoevalcap punctuation removal)"
            }
            Tokenization::Pretokenized => "pre-tokenized input (no PTB step)",
        }
    }
}

/// Evaluation options. The default is the standard COCO evaluation.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub tokenization: Tokenization,
    pub meteor: MeteorMode,
    pub meteor_jar: JarConfig,
    pub cider_df: DfSource,
}

/// Scores hypotheses against references: `refs` and `hyps` must have the same image ids; each image needs
/// at least one reference. Images are evaluated in id order. For repeated evaluations (every epoch of a
/// training run) keep an [`Evaluator`], which reuses the METEOR jar process.
pub fn evaluate(
    refs: &BTreeMap<String, Vec<String>>,
    hyps: &BTreeMap<String, String>,
    options: &Options,
) -> Result<Report> {
    Evaluator::new(options.clone()).evaluate(refs, hyps)
}

/// Scores a corpus given in an explicit order: pycocoevalcap's order (the images of a COCO annotation
/// file, in file order) reproduces its tokenization, and its sums to the last bit.
pub fn evaluate_samples(samples: &[Sample<'_>], options: &Options) -> Result<Report> {
    Evaluator::new(options.clone()).evaluate_samples(samples)
}

/// A caption metric. Its module implements this trait, and [`registry`] lists it.
pub trait Metric: Send + Sync {
    /// pycocoevalcap's keys for its values, in order (BLEU has four: `Bleu_1`..`Bleu_4`).
    fn names(&self) -> &'static [&'static str];
    /// Scores a validated, tokenized corpus; `Ok(None)` when it is not computed (METEOR skipped). It may
    /// note in `report` how it computed its values (`meteor`, the word counts).
    fn compute(&self, corpus: &corpus::Prepared, report: &mut Report) -> Result<Option<Scored>>;
}

/// A metric's values on a corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// `None` for the standard metric; else appended to every name ("(approx)", "(external df)"), so
    /// that a non-standard value can never pass for a standard one.
    pub qualifier: Option<&'static str>,
    /// For each name: the corpus value and the values per image, in evaluation order.
    pub values: Vec<(f64, Vec<f64>)>,
}

/// The metrics of a report, in pycocoevalcap's order. A new metric is registered here.
pub fn registry(options: &Options) -> Vec<Box<dyn Metric>> {
    vec![
        Box::new(bleu::Bleu),
        Box::new(meteor::MeteorEngine::new(options.meteor, options.meteor_jar.clone())),
        Box::new(rouge::RougeL),
        Box::new(cider::CiderD(options.cider_df.clone())),
    ]
}

/// Evaluates corpora with fixed options, keeping the METEOR jar process (several seconds to start) and
/// the native METEOR data loaded between calls. Safe to share between threads.
pub struct Evaluator {
    options: Options,
    metrics: Vec<Box<dyn Metric>>,
}

impl Evaluator {
    pub fn new(options: Options) -> Self {
        Evaluator { metrics: registry(&options), options }
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// See [`evaluate`].
    pub fn evaluate(
        &self,
        refs: &BTreeMap<String, Vec<String>>,
        hyps: &BTreeMap<String, String>,
    ) -> Result<Report> {
        let samples = corpus::pair(refs, hyps)?;
        self.evaluate_samples(&samples)
    }

    /// See [`evaluate_samples`].
    pub fn evaluate_samples(&self, samples: &[Sample<'_>]) -> Result<Report> {
        let prepared = corpus::prepare(samples, self.options.tokenization)?;
        let cider_df = match &self.options.cider_df {
            DfSource::Corpus => CiderDfKind::Corpus,
            DfSource::External(df) if df.images() == 0 => {
                return Err(MetricsError::EmptyDocumentFrequency)
            }
            DfSource::External(df) => CiderDfKind::External { images: df.images() },
        };
        let scores = |id: &String| ImageScores { image_id: id.clone(), scores: Scores::default() };
        let mut report = Report {
            corpus: Scores::default(),
            per_image: prepared.ids.iter().map(scores).collect(),
            meteor: MeteorKind::Skipped,
            cider_df,
            tokenization: self.options.tokenization,
            hypothesis_words: 0,
            reference_words: 0,
        };
        for metric in &self.metrics {
            let Some(scored) = metric.compute(&prepared, &mut report)? else { continue };
            assert_eq!(scored.values.len(), metric.names().len(), "one value per name");
            for (name, (corpus, per_image)) in metric.names().iter().zip(scored.values) {
                let name = scored.qualifier.map_or(name.to_string(), |q| format!("{name} {q}"));
                assert_eq!(per_image.len(), report.per_image.len(), "{name}: one value per image");
                for (img, v) in report.per_image.iter_mut().zip(per_image) {
                    img.scores.0.push((name.clone(), v));
                }
                report.corpus.0.push((name, corpus));
            }
        }
        Ok(report)
    }
}
