//! METEOR 1.5: exact through the official jar when Java and the jar are available, otherwise a native
//! approximation that is always labelled "METEOR (approx)".
//!
//! Reference: pycocoevalcap 1.2's `meteor/meteor.py` (how it drives the jar) and METEOR 1.5
//! (Denkowski and Lavie, "Meteor Universal", WMT 2014; <https://github.com/cmu-mtlab/meteor>). See [`jar`]
//! for the exact path, [`stats`] for the score formula shared by both paths.

pub mod aligner;
pub mod jar;
pub mod native;
pub mod normalize;
pub mod resources;
pub mod stats;
pub mod stemmer;
pub mod synonyms;

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use crate::corpus::Prepared;
use crate::error::{MetricsError, Result};
use crate::{Metric, Report, Scored};

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

/// The native approximation, with the jar's function words, prefixes and synonyms when the jar exists.
pub fn native_meteor(cfg: &JarConfig) -> Result<native::NativeMeteor> {
    let resources = match jar::locate_jar(cfg.jar.as_deref()) {
        Ok(jar) => resources::Resources::from_jar(&jar)?,
        Err(_) => resources::Resources::builtin(),
    };
    Ok(native::NativeMeteor::new(resources))
}

/// Computes METEOR for successive corpora, keeping the jar process (whose start loads a 61 MB
/// paraphrase table, several seconds) and the native resources alive between calls.
pub struct MeteorEngine {
    mode: MeteorMode,
    cfg: JarConfig,
    jar: Mutex<Option<jar::MeteorJar>>,
    /// Why the jar cannot be used (in `Auto` mode the approximation is used from then on).
    jar_unavailable: Mutex<Option<String>>,
    native: OnceLock<native::NativeMeteor>,
}

/// METEOR in [`crate::registry`]; the report notes which METEOR it holds.
impl Metric for MeteorEngine {
    fn names(&self) -> &'static [&'static str] {
        &["METEOR"]
    }

    fn compute(&self, corpus: &Prepared, report: &mut Report) -> Result<Option<Scored>> {
        let Some(m) = self.score(&corpus.refs, &corpus.hyps)? else { return Ok(None) };
        let qualifier = m.kind.label().strip_prefix("METEOR "); // "(approx)" or none
        report.meteor = m.kind;
        Ok(Some(Scored { qualifier, values: vec![(m.corpus, m.per_image)] }))
    }
}

impl MeteorEngine {
    pub fn new(mode: MeteorMode, cfg: JarConfig) -> Self {
        MeteorEngine {
            mode,
            cfg,
            jar: Mutex::new(None),
            jar_unavailable: Mutex::new(None),
            native: OnceLock::new(),
        }
    }

    /// METEOR of one corpus (tokenized references and hypotheses), or `None` when skipped.
    pub fn score(&self, refs: &[Vec<String>], hyps: &[String]) -> Result<Option<MeteorScores>> {
        match self.mode {
            MeteorMode::Skip => Ok(None),
            MeteorMode::Exact => self.exact(refs, hyps).map(Some),
            MeteorMode::Approximate => self.approximate(refs, hyps, "requested".into()).map(Some),
            MeteorMode::Auto => {
                if let Some(why) = self.jar_unavailable.lock().unwrap().clone() {
                    return self.approximate(refs, hyps, why).map(Some);
                }
                match self.exact(refs, hyps) {
                    Ok(s) => Ok(Some(s)),
                    Err(
                        e @ (MetricsError::MeteorJarNotFound { .. }
                        | MetricsError::JavaNotStarted { .. }),
                    ) => {
                        let why = format!("exact METEOR unavailable: {e}");
                        *self.jar_unavailable.lock().unwrap() = Some(why.clone());
                        self.approximate(refs, hyps, why).map(Some)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    fn exact(&self, refs: &[Vec<String>], hyps: &[String]) -> Result<MeteorScores> {
        let mut guard = self.jar.lock().unwrap();
        if guard.is_none() {
            let jar = jar::locate_jar(self.cfg.jar.as_deref())?;
            let java = jar::java_command(self.cfg.java.as_deref());
            *guard = Some(jar::MeteorJar::start(&java, &jar)?);
        }
        let process = guard.as_mut().expect("started above");
        match process.score_corpus(refs, hyps) {
            Ok((per_image, corpus, _)) => Ok(MeteorScores {
                corpus,
                per_image,
                kind: MeteorKind::Exact { jar: process.jar().to_path_buf() },
            }),
            Err(e) => {
                // A failed process is not reused; the next call starts a fresh one.
                *guard = None;
                Err(e)
            }
        }
    }

    fn native(&self) -> Result<&native::NativeMeteor> {
        if let Some(n) = self.native.get() {
            return Ok(n);
        }
        let n = native_meteor(&self.cfg)?;
        Ok(self.native.get_or_init(|| n))
    }

    fn approximate(
        &self,
        refs: &[Vec<String>],
        hyps: &[String],
        why: String,
    ) -> Result<MeteorScores> {
        let native = self.native()?;
        let (per_image, corpus, _) = native.score_corpus(refs, hyps);
        let data = match &native.resources().source {
            Some(jar) => format!("function words and WordNet from {}", jar.display()),
            None => "built-in function words, no synonym data (no METEOR jar found)".into(),
        };
        Ok(MeteorScores {
            corpus,
            per_image,
            kind: MeteorKind::Approximate {
                modules: native.modules(),
                reason: format!("{why}; {data}"),
            },
        })
    }
}
