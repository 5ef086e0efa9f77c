//! METEOR 1.5: exact through the official jar when Java and the jar are available, otherwise a native
//! approximation that is always labelled "METEOR (approx)".
//!
//! Reference: caption-metrics.md §A.6. See [`jar`] for the exact path, [`stats`] for the score formula
//! shared by both paths.

pub mod jar;
pub mod stats;

use std::path::PathBuf;

use crate::error::{MetricsError, Result};

/// How to compute METEOR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MeteorMode {
    /// The jar when it and Java are available, else the labelled approximation.
    #[default]
    Auto,
    /// The jar or an error.
    Exact,
    /// The native approximation even when the jar is available.
    Approximate,
    /// No METEOR.
    Skip,
}

/// Which METEOR a report holds.
#[derive(Debug, Clone, PartialEq)]
pub enum MeteorKind {
    /// The official jar; equal to pycocoevalcap.
    Exact {
        jar: PathBuf,
    },
    /// The native approximation: the modules it used and why the jar was not used.
    Approximate {
        modules: Vec<&'static str>,
        reason: String,
    },
    Skipped,
}

impl MeteorKind {
    /// The metric's name in tables and JSON: "METEOR" only for the exact value.
    pub fn label(&self) -> &'static str {
        match self {
            MeteorKind::Exact { .. } => "METEOR",
            MeteorKind::Approximate { .. } => "METEOR (approx)",
            MeteorKind::Skipped => "METEOR (skipped)",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            MeteorKind::Exact { jar } => format!("exact, official jar {}", jar.display()),
            MeteorKind::Approximate { modules, reason } => {
                format!("native approximation ({} modules; {reason})", modules.join("+"))
            }
            MeteorKind::Skipped => "not computed".into(),
        }
    }
}

/// Per-image and corpus METEOR.
#[derive(Debug, Clone)]
pub struct MeteorScores {
    pub corpus: f64,
    pub per_image: Vec<f64>,
    pub kind: MeteorKind,
}

/// Where to find the jar and Java.
#[derive(Debug, Clone, Default)]
pub struct JarConfig {
    /// `meteor-1.5.jar`; else `$METEOR_JAR`, else the reference venv's pycocoevalcap.
    pub jar: Option<PathBuf>,
    /// Java executable; else `$JAVA`, else `java`.
    pub java: Option<PathBuf>,
}

pub(crate) fn compute(
    refs: &[Vec<String>],
    hyps: &[String],
    mode: MeteorMode,
    cfg: &JarConfig,
) -> Result<Option<MeteorScores>> {
    match mode {
        MeteorMode::Skip => Ok(None),
        MeteorMode::Exact => exact(refs, hyps, cfg).map(Some),
        MeteorMode::Approximate => Err(MetricsError::MeteorJarNotFound {
            reason: "the native approximation is not available in this build".into(),
        }),
        MeteorMode::Auto => match exact(refs, hyps, cfg) {
            Ok(s) => Ok(Some(s)),
            Err(MetricsError::MeteorJarNotFound { .. } | MetricsError::JavaNotStarted { .. }) => {
                Ok(None)
            }
            Err(e) => Err(e),
        },
    }
}

fn exact(refs: &[Vec<String>], hyps: &[String], cfg: &JarConfig) -> Result<MeteorScores> {
    let jar = jar::locate_jar(cfg.jar.as_deref())?;
    let java = jar::java_command(cfg.java.as_deref());
    let mut process = jar::MeteorJar::start(&java, &jar)?;
    let (per_image, corpus, _) = process.score_corpus(refs, hyps)?;
    Ok(MeteorScores { corpus, per_image, kind: MeteorKind::Exact { jar } })
}
