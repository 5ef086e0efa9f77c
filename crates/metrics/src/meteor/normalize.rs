//! METEOR 1.5's `-norm` text normalization for English (`edu.cmu.meteor.util.Normalizer.normalizeLine`
//! with punctuation kept, then lowercasing, as `MeteorScorer` applies it to every segment).
//!
//! Each step is one of the jar's regular-expression passes, reproduced with Java's `replaceAll` semantics
//! (left to right, non-overlapping). Checked against the jar's own normalizer on captions
//! (`tests/meteor_native.rs`).

use std::collections::HashMap;

/// When a word ending in a period keeps it (`nonbreaking/english.prefixes` in the jar).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nonbreaking {
    Any,
    NumericOnly,
}

/// Parses a `*.prefixes` file: one prefix per line, `#` comments, `#NUMERIC_ONLY#` as second token.
pub fn parse_prefixes(text: &str) -> HashMap<String, Nonbreaking> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let mut tok = line.split([' ', '\t', '\n', '\r', '\u{c}']).filter(|t| !t.is_empty());
        let Some(pre) = tok.next() else { continue };
        if pre.starts_with('#') {
            continue;
        }
        let kind = if tok.next() == Some("#NUMERIC_ONLY#") {
            Nonbreaking::NumericOnly
        } else {
            Nonbreaking::Any
        };
        out.insert(pre.to_string(), kind);
    }
    out
}

/// The jar's `alpha` character list (Latin, Latin-1/Extended-A letters, Cyrillic ranges).
fn is_alpha(c: char) -> bool {
    matches!(c,
        'A'..='Z' | 'a'..='z' | '\u{160}' | '\u{17D}' | '\u{161}' | '\u{17E}' | '\u{178}'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{17E}' | '\u{400}'..='\u{4FF}'
        | '\u{500}'..='\u{527}' | '\u{A640}'..='\u{A66E}' | '\u{A67E}'..='\u{A697}' | '\u{1D00}'..='\u{1D7F}')
}

fn is_alnum(c: char) -> bool {
    c.is_ascii_digit() || is_alpha(c)
}

/// Java's `\p{Digit}` (ASCII digits without the UNICODE_CHARACTER_CLASS flag).
fn is_digit(c: char) -> bool {
    c.is_ascii_digit()
}

/// Java's `\s`.
fn is_java_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{b}' | '\u{c}' | '\r')
}

/// `java.util.StringTokenizer`'s default delimiters.
fn is_tokenizer_delim(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{c}')
}

/// `replaceAll` of a three-character pattern `(left)mid(right)` with `$1 <text> $2`-style output.
fn replace_triples(
    s: &str,
    left: impl Fn(char) -> bool,
    mid: impl Fn(char) -> bool,
    right: impl Fn(char) -> bool,
    repl: impl Fn(char, char, char) -> String,
) -> String {
    let c: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 8);
    let mut i = 0;
    while i < c.len() {
        if i + 2 < c.len() && left(c[i]) && mid(c[i + 1]) && right(c[i + 2]) {
            out.push_str(&repl(c[i], c[i + 1], c[i + 2]));
            i += 3;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// `Normalizer.normalizeLine(line, English, keepPunctuation = true)` followed by `toLowerCase()`.
pub fn normalize(line: &str, prefixes: &HashMap<String, Nonbreaking>) -> String {
    // Separate every character that is not alphanumeric, whitespace or one of . ' ` , - ‘ ’.
    let mut w = String::with_capacity(line.len() + 16);
    w.push(' ');
    for c in line.chars() {
        if is_alnum(c) || is_java_space(c) || ".'`,-\u{2018}\u{2019}".contains(c) {
            w.push(c);
        } else {
            w.push(' ');
            w.push(c);
            w.push(' ');
        }
    }
    w.push(' ');
    let mut w = escape_multi_dots(&w);
    // Commas, except between digits.
    let comma = |l: char, _: char, r: char| format!("{l} , {r}");
    w = replace_triples(&w, |c| !is_digit(c), |c| c == ',', |c| !is_digit(c), comma);
    w = replace_triples(&w, is_digit, |c| c == ',', |c| !is_digit(c), comma);
    w = replace_triples(&w, |c| !is_digit(c), |c| c == ',', is_digit, comma);
    // Quotes and dashes.
    w = w.replace(['`', '\u{2018}', '\u{2019}'], "'");
    w = replace_double_quotes(&w);
    w = w.replace('\u{2013}', "-").replace("--", "-");
    w = replace_triples(
        &w,
        |c| is_alnum(c) || c == '.',
        |c| c == '-',
        is_alnum,
        |l, _, r| format!("{l} {r}"),
    );
    // English contractions split to the right.
    let spaced = |l: char, _: char, r: char| format!("{l} ' {r}");
    let apos = |c: char| c == '\'';
    w = replace_triples(&w, |c| !is_alpha(c), apos, |c| !is_alpha(c), spaced);
    w = replace_triples(&w, |c| !is_alpha(c) && !is_digit(c), apos, is_alpha, spaced);
    w = replace_triples(&w, is_alpha, apos, |c| !is_alpha(c), spaced);
    w = replace_triples(&w, is_alpha, apos, is_alpha, |l, _, r| format!("{l} '{r}"));
    w = replace_triples(&w, is_digit, apos, |c| c == 's', |l, _, r| format!("{l} '{r}"));
    // Periods: split unless the word is a nonbreaking prefix or dotted (U.S. -> US).
    let words: Vec<&str> = w.split(is_tokenizer_delim).filter(|t| !t.is_empty()).collect();
    let mut sb = String::with_capacity(w.len());
    for (i, word) in words.iter().enumerate() {
        if word.chars().count() > 1 && word.ends_with('.') {
            let pre = &word[..word.len() - 1];
            let kind = prefixes.get(pre).copied();
            let next = words.get(i + 1);
            let next_starts = |f: fn(&char) -> bool| {
                next.is_some_and(|n| n.chars().next().as_ref().is_some_and(f))
            };
            // Kept: always-nonbreaking prefixes, any word before a lowercase word (catches unlisted
            // abbreviations), numeric-only prefixes before a number.
            let keep = kind == Some(Nonbreaking::Any)
                || next_starts(char::is_ascii_lowercase)
                || (kind == Some(Nonbreaking::NumericOnly) && next_starts(char::is_ascii_digit));
            if pre.contains('.') && pre.chars().any(is_alpha) {
                sb.push_str(&word.replace('.', ""));
            } else if keep {
                sb.push_str(word);
            } else {
                sb.push_str(pre);
                sb.push_str(" .");
            }
        } else {
            sb.push_str(word);
        }
        sb.push(' ');
    }
    let mut w = sb;
    while w.contains("DOTDOTMULTI") {
        w = w.replace("DOTDOTMULTI", "DOTMULTI.");
    }
    w = w.replace("DOTMULTI", ".");
    // Whitespace runs become one space; Java's trim() drops characters up to U+0020 at both ends.
    let mut out = String::with_capacity(w.len());
    let mut in_space = false;
    for c in w.chars() {
        if matches!(
            c,
            ' ' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' | '\u{A0}'
        ) {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    out.trim_matches(|c: char| c <= ' ').to_lowercase()
}

/// `\.([\.]+)` → ` DOTMULTI$1`, then `DOTMULTI\.([^\.])` → `DOTDOTMULTI $1` and `DOTMULTI.` →
/// `DOTDOTMULTI` until no `DOTMULTI.` is left.
fn escape_multi_dots(s: &str) -> String {
    let c: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < c.len() {
        if c[i] == '.' && i + 1 < c.len() && c[i + 1] == '.' {
            let mut j = i + 1;
            while j < c.len() && c[j] == '.' {
                j += 1;
            }
            out.push_str(" DOTMULTI");
            out.extend(&c[i + 1..j]);
            i = j;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    let mut w = out;
    while w.contains("DOTMULTI.") {
        let c: Vec<char> = w.chars().collect();
        let pat: Vec<char> = "DOTMULTI.".chars().collect();
        let mut next = String::with_capacity(w.len());
        let mut i = 0;
        while i < c.len() {
            if c[i..].starts_with(&pat) && i + pat.len() < c.len() && c[i + pat.len()] != '.' {
                next.push_str("DOTDOTMULTI ");
                next.push(c[i + pat.len()]);
                i += pat.len() + 1;
            } else {
                next.push(c[i]);
                i += 1;
            }
        }
        w = next.replace("DOTMULTI.", "DOTDOTMULTI");
    }
    w
}

/// `([“”]|'')` → ` " `.
fn replace_double_quotes(s: &str) -> String {
    let c: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < c.len() {
        if c[i] == '\u{201C}' || c[i] == '\u{201D}' {
            out.push_str(" \" ");
            i += 1;
        } else if c[i] == '\'' && i + 1 < c.len() && c[i + 1] == '\'' {
            out.push_str(" \" ");
            i += 2;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jar_examples() {
        // Outputs of the jar's Normalizer (scripts/metrics/MeteorReference.java norm).
        let p = HashMap::new();
        let cases = [
            ("it 's", "it ' s"),
            ("it's", "it 's"),
            ("the boys' toys", "the boys ' toys"),
            ("do n't", "do n 't"),
            ("'hello'", "' hello '"),
            ("1990's", "1990 's"),
            ("rock 'n' roll", "rock ' n ' roll"),
            ("a - b", "a - b"),
            ("a-b", "a b"),
            ("u.s.-based", "us based"),
            (
                "do n't u.s. a.m. 1,000 3.5 -lrb- parked -rrb-",
                "do n 't us am 1,000 3.5 -lrb- parked -rrb-",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input, &p), want, "{input:?}");
        }
    }
}
