//! Dataset splits, with the spellings real annotation files use normalized (`val`/`valid`/`validation`/`dev`).
use std::fmt;

#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(into = "String", from = "String")]
pub enum Split {
    Train,
    Val,
    Test,
    /// Anything else, kept verbatim (e.g. Karpathy's `restval`); validation reports it as an unknown split.
    Other(String),
}

impl Split {
    pub fn parse(s: &str) -> Split {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" | "training" | "trn" => Split::Train,
            "val" | "valid" | "validation" | "dev" | "eval" => Split::Val,
            "test" | "testing" | "tst" => Split::Test,
            _ => Split::Other(s.trim().to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
            Split::Other(s) => s,
        }
    }

    pub fn is_known(&self) -> bool {
        !matches!(self, Split::Other(_))
    }

    /// Guesses a split from a file name such as `captions_val2017.json` or `valid-00000-of-00001.parquet`.
    pub fn from_file_name(name: &str) -> Option<Split> {
        let lower = name.to_ascii_lowercase();
        let words: Vec<&str> = lower.split(|c: char| !c.is_ascii_alphabetic()).collect();
        [Split::Train, Split::Val, Split::Test]
            .into_iter()
            .find(|s| words.iter().any(|w| !w.is_empty() && Split::parse(w) == *s))
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Split> for String {
    fn from(s: Split) -> String {
        s.as_str().to_string()
    }
}

impl From<String> for Split {
    fn from(s: String) -> Split {
        Split::parse(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_normalize() {
        for s in ["val", "VALID", "validation", " dev "] {
            assert_eq!(Split::parse(s), Split::Val);
        }
        assert_eq!(Split::parse("Train"), Split::Train);
        assert_eq!(Split::parse("restval"), Split::Other("restval".into()));
        assert_eq!(Split::from_file_name("captions_val2017.json"), Some(Split::Val));
        assert_eq!(Split::from_file_name("data/valid-00000-of-00001.parquet"), Some(Split::Val));
        assert_eq!(Split::from_file_name("textaug_train_rsicd.jsonl"), Some(Split::Train));
        assert_eq!(Split::from_file_name("dataset_rsicd.json"), None);
    }
}
