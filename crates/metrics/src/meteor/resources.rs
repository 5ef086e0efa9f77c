//! Data the native METEOR needs: function words, nonbreaking prefixes and (optionally) WordNet synonyms,
//! read from the METEOR jar, which is a zip file, when one is available.
//!
//! Without a jar the native METEOR still runs, with exact and stem matching only and this crate's own
//! list of English function words. That list is written for this crate (articles, pronouns,
//! prepositions, conjunctions, auxiliaries and common determiners) and is not the jar's list, so scores
//! differ a little more from the official values; reports name which resources were used.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{MetricsError, Result};

use super::normalize::{parse_prefixes, Nonbreaking};
use super::synonyms::SynonymDictionary;

pub struct Resources {
    pub function_words: HashSet<String>,
    pub prefixes: HashMap<String, Nonbreaking>,
    pub synonyms: Option<SynonymDictionary>,
    /// The jar the data came from, if any.
    pub source: Option<PathBuf>,
}

/// English function words used when no METEOR jar is available.
const BUILTIN_FUNCTION_WORDS: &str = "a about above across after against all along also although am among an and \
    another any are around as at be because been before behind being below beside besides between beyond both but \
    by can could did do does doing down during each either every few for from had has have having he her here hers \
    herself him himself his how i if in inside into is it its itself many may me might more most much must my \
    myself near neither no nor not of off on once one only onto or other our ours ourselves out outside over own \
    per same shall she should since so some such than that the their theirs them themselves then there these they \
    this those though through throughout to toward towards under underneath unless until up upon us very was we \
    were what whatever when where whether which while who whom whose why will with within without would yet you \
    your yours yourself yourselves";

fn read_entry(zip: &mut zip::ZipArchive<std::fs::File>, jar: &Path, name: &str) -> Result<String> {
    let err = |message: String| MetricsError::SynonymData { path: jar.to_path_buf(), message };
    let mut f = zip.by_name(name).map_err(|e| err(format!("entry {name}: {e}")))?;
    let mut s = String::new();
    f.read_to_string(&mut s).map_err(|e| err(format!("reading {name}: {e}")))?;
    Ok(s)
}

impl Resources {
    /// Function words, prefixes and synonyms from `meteor-1.5.jar`.
    pub fn from_jar(jar: &Path) -> Result<Self> {
        let err = |message: String| MetricsError::SynonymData { path: jar.to_path_buf(), message };
        let file = std::fs::File::open(jar).map_err(|e| err(e.to_string()))?;
        let mut zip =
            zip::ZipArchive::new(file).map_err(|e| err(format!("not a jar/zip file: {e}")))?;
        let function_words = read_entry(&mut zip, jar, "function/english.words")?
            .lines()
            .map(str::to_owned)
            .collect();
        let prefixes = parse_prefixes(&read_entry(&mut zip, jar, "nonbreaking/english.prefixes")?);
        let exceptions = read_entry(&mut zip, jar, "synonym/english.exceptions")?;
        let synsets = read_entry(&mut zip, jar, "synonym/english.synsets")?;
        let synonyms = SynonymDictionary::parse(&exceptions, &synsets).map_err(err)?;
        Ok(Resources {
            function_words,
            prefixes,
            synonyms: Some(synonyms),
            source: Some(jar.to_path_buf()),
        })
    }

    /// The built-in fallback: this crate's function words, no prefixes, no synonyms.
    pub fn builtin() -> Self {
        Resources {
            function_words: BUILTIN_FUNCTION_WORDS.split_whitespace().map(str::to_owned).collect(),
            prefixes: HashMap::new(),
            synonyms: None,
            source: None,
        }
    }
}
