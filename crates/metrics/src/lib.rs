//! COCO-standard caption metrics, equal to pycocoevalcap 1.2: PTB tokenization, BLEU-1..4, METEOR 1.5,
//! ROUGE-L and CIDEr-D, per image and for the corpus. No libtorch, and no Java except for the exact
//! METEOR value.
//!
//! References: `caption-metrics.md` (§A.1-A.6) and the scorer sources of pycocoevalcap 1.2. Every metric
//! states in its module which reference behaviour it reproduces; `docs/metrics.md` lists the proofs.
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

/// Evaluates corpora with fixed options, keeping the METEOR jar process (several seconds to start) and
/// the native METEOR data loaded between calls. Safe to share between threads.
pub struct Evaluator {
    options: Options,
    meteor: meteor::MeteorEngine,
}

impl Evaluator {
    pub fn new(options: Options) -> Self {
        let meteor = meteor::MeteorEngine::new(options.meteor, options.meteor_jar.clone());
        Evaluator { options, meteor }
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
        score(samples, &self.options, &self.meteor)
    }
}

fn score(
    samples: &[Sample<'_>],
    options: &Options,
    meteor_engine: &meteor::MeteorEngine,
) -> Result<Report> {
    let prepared = corpus::prepare(samples, options.tokenization)?;
    if let DfSource::External(df) = &options.cider_df {
        if df.images() == 0 {
            return Err(MetricsError::EmptyDocumentFrequency);
        }
    }
    let bleu = bleu::bleu(&prepared.images);
    let rouge = rouge::rouge(&prepared.images);
    let cider = cider::cider(&prepared.images, &prepared.vocab, &options.cider_df);
    let meteor = meteor_engine.score(&prepared.refs, &prepared.hyps)?;
    let (meteor_corpus, meteor_per_image, meteor_kind) = match meteor {
        Some(m) => (Some(m.corpus), Some(m.per_image), m.kind),
        None => (None, None, MeteorKind::Skipped),
    };
    let per_image = prepared
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| ImageScores {
            image_id: id.clone(),
            scores: Scores {
                bleu: bleu.per_image[i],
                meteor: meteor_per_image.as_ref().map(|m| m[i]),
                rouge_l: rouge.per_image[i],
                cider: cider.per_image[i],
            },
        })
        .collect();
    Ok(Report {
        corpus: Scores {
            bleu: bleu.corpus,
            meteor: meteor_corpus,
            rouge_l: rouge.corpus,
            cider: cider.corpus,
        },
        per_image,
        meteor: meteor_kind,
        cider_df: match &options.cider_df {
            DfSource::Corpus => CiderDfKind::Corpus,
            DfSource::External(df) => CiderDfKind::External { images: df.images() },
        },
        tokenization: options.tokenization,
        hypothesis_words: bleu.totals.test_len,
        reference_words: bleu.totals.ref_len,
    })
}
