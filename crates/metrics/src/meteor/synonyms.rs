//! METEOR 1.5's WordNet synonym lookup (`SynonymDictionary`): a word's synsets are its own plus those of
//! its base form, found through WordNet's exception list or a small suffix-stripping `morph`.
//!
//! The data (`synonym/english.synsets`, `synonym/english.exceptions`, WordNet 3.0 derived) is read from
//! the METEOR jar at run time; it is not redistributed with this crate.

use std::collections::{HashMap, HashSet};

#[derive(Debug, Default)]
pub struct SynonymDictionary {
    word_to_bases: HashMap<String, Vec<String>>,
    word_to_synsets: HashMap<String, Vec<i32>>,
}

/// Noun, verb and adjective suffixes and their replacements, in the order `morph` tries them.
const SUFFIXES: [(&str, &str); 20] = [
    ("s", ""),
    ("ses", "s"),
    ("xes", "x"),
    ("zes", "z"),
    ("ches", "ch"),
    ("shes", "sh"),
    ("men", "man"),
    ("ies", "y"),
    ("s", ""),
    ("ies", "y"),
    ("es", "e"),
    ("es", ""),
    ("ed", "e"),
    ("ed", ""),
    ("ing", "e"),
    ("ing", ""),
    ("er", ""),
    ("est", ""),
    ("er", "e"),
    ("est", "e"),
];

impl SynonymDictionary {
    /// Parses the two files. `exceptions`: a base form line, then a line of its inflected forms.
    /// `synsets`: a word line, then a line of synset ids.
    pub fn parse(exceptions: &str, synsets: &str) -> Result<Self, String> {
        let mut d = SynonymDictionary::default();
        let mut lines = exceptions.lines();
        while let Some(base) = lines.next() {
            let forms = lines
                .next()
                .ok_or_else(|| format!("exceptions: base {base:?} has no forms line"))?;
            for form in forms.split_whitespace() {
                d.word_to_bases.entry(form.to_string()).or_default().push(base.to_string());
            }
        }
        let mut lines = synsets.lines();
        let mut n = 0;
        while let Some(word) = lines.next() {
            n += 2;
            let ids =
                lines.next().ok_or_else(|| format!("synsets: word {word:?} has no id line"))?;
            let ids: Vec<i32> = ids
                .split_whitespace()
                .map(|t| {
                    t.parse().map_err(|_| format!("synsets line {n}: {t:?} is not a synset id"))
                })
                .collect::<Result<_, _>>()?;
            d.word_to_synsets.insert(word.to_string(), ids);
        }
        Ok(d)
    }

    fn synsets(&self, word: &str) -> &[i32] {
        self.word_to_synsets.get(word).map(Vec::as_slice).unwrap_or(&[])
    }

    /// `getSynSets(w) ∪ getStemSynSets(w)`, what the synonym matcher compares.
    pub fn all_synsets(&self, word: &str) -> HashSet<i32> {
        let mut set: HashSet<i32> = self.synsets(word).iter().copied().collect();
        match self.word_to_bases.get(word) {
            Some(bases) => {
                for b in bases {
                    set.extend(self.synsets(b));
                }
            }
            None => set.extend(self.synsets(&self.morph(word))),
        }
        set
    }

    /// The jar's `morph`, quirks included: a word ending in "ful" finds nothing (the code meant to strip
    /// "ful" reassigns its working copy), words ending in "ss" or of at most two letters are their own
    /// base, and otherwise the first suffix rule that yields a known word wins.
    fn morph(&self, word: &str) -> String {
        let ful = word.ends_with("ful");
        if word.ends_with("ss") || word.chars().count() <= 2 {
            return word.to_string();
        }
        for (suffix, add) in SUFFIXES {
            if let Some(stem) = word.strip_suffix(suffix) {
                let candidate = format!("{stem}{add}");
                if self.word_to_synsets.contains_key(&candidate) {
                    return if ful { candidate + "ful" } else { candidate };
                }
            }
        }
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_and_morph() {
        let d =
            SynonymDictionary::parse("mouse\nmice\n", "mouse\n1 2\nhouse\n3\nbox\n4\n").unwrap();
        assert_eq!(d.all_synsets("mice"), HashSet::from([1, 2]));
        assert_eq!(d.all_synsets("houses"), HashSet::from([3]));
        assert_eq!(d.all_synsets("boxes"), HashSet::from([4]));
        assert!(d.all_synsets("careful").is_empty());
        assert!(SynonymDictionary::parse("", "word\nx\n").is_err());
    }
}
