//! Errors of the metrics crate: every variant names the image, file or key at fault and what was expected.

use std::path::PathBuf;

/// Why a corpus could not be scored.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("nothing to score: the corpus has no images")]
    EmptyCorpus,

    #[error(
        "{count} image(s) have references but no hypothesis (first: {}); every evaluated image needs exactly one \
         hypothesis, as in pycocoevalcap (score only the predicted images by restricting the references)",
        preview(.ids)
    )]
    MissingHypotheses { count: usize, ids: Vec<String> },

    #[error(
        "{count} hypothesis image id(s) have no references (first: {}); pycocoevalcap rejects results for images \
         that are not in the reference set",
        preview(.ids)
    )]
    UnknownImages { count: usize, ids: Vec<String> },

    #[error(
        "image {image_id:?} has an empty reference list; every image needs at least one reference"
    )]
    NoReferences { image_id: String },

    #[error("image id {image_id:?} appears more than once in the corpus; ids must be unique")]
    DuplicateImage { image_id: String },

    #[error(
        "the external CIDEr document-frequency corpus is empty; build it from at least one image's references"
    )]
    EmptyDocumentFrequency,

    #[error("METEOR jar not found: {reason}. Set METEOR_JAR=/path/to/meteor-1.5.jar or `pip install pycocoevalcap` \
             into the reference venv, or choose the labelled native approximation")]
    MeteorJarNotFound { reason: String },

    #[error("could not start Java for METEOR ({}): {error}. Install a JRE (java on PATH) or set JAVA", java.display())]
    JavaNotStarted { java: PathBuf, error: std::io::Error },

    #[error("METEOR jar {jar} failed: {message}")]
    MeteorJar { jar: PathBuf, message: String },

    #[error("could not read the WordNet synonym data from {path}: {message}")]
    SynonymData { path: PathBuf, message: String },
}

fn preview(ids: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut out: Vec<String> = ids.iter().take(SHOWN).map(|id| format!("{id:?}")).collect();
    if ids.len() > SHOWN {
        out.push("…".to_string());
    }
    out.join(", ")
}

pub type Result<T> = std::result::Result<T, MetricsError>;
