//! Python's string splitting, as the pycocoevalcap scorers apply it to tokenized captions.
//!
//! BLEU and CIDEr-D use `str.split()` (runs of whitespace, no empty tokens); ROUGE-L uses `str.split(" ")`
//! (single spaces, so `""` becomes one empty token and scores 0). Both are reproduced exactly because the
//! difference is visible on empty hypotheses and on pre-tokenized input with irregular spacing.

/// Python's `str.isspace()` for one character: Rust's Unicode `White_Space` plus the ASCII information
/// separators U+001C..U+001F, which Python also treats as whitespace.
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `s.split()` in Python.
pub fn split_whitespace(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_python_space).filter(|t| !t.is_empty())
}

/// `s.split(" ")` in Python.
pub fn split_space(s: &str) -> impl Iterator<Item = &str> {
    s.split(' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_split_matches_python() {
        let v: Vec<_> = split_whitespace("  a\tb \u{1f}c\u{a0}d  ").collect();
        assert_eq!(v, ["a", "b", "c", "d"]);
        assert_eq!(split_whitespace("").count(), 0);
    }

    #[test]
    fn space_split_keeps_empty_tokens() {
        assert_eq!(split_space("").collect::<Vec<_>>(), [""]);
        assert_eq!(split_space("a  b").collect::<Vec<_>>(), ["a", "", "b"]);
    }
}
