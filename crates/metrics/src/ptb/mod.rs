//! pycocoevalcap's tokenization step: Stanford PTBTokenizer 3.4.1 (`-preserveLines -lowerCase`), then
//! removal of the punctuation tokens pycocoevalcap lists.
//!
//! Reference: pycocoevalcap 1.2's `tokenizer/ptbtokenizer.py` and Stanford CoreNLP 3.4.1's `PTBLexer.flex`.
//! The lexer itself lives in `lexer.rs`; this module applies it to one caption the way the reference does:
//! newlines become spaces, every token is lowercased (Java `toLowerCase(Locale.ENGLISH)`), the line is split
//! on single spaces and the tokens in [`PUNCTUATION`] are dropped. Bracket tokens are lowercased before that
//! comparison, so `-lrb-` and friends survive, exactly as in the reference.

mod lexer;
mod pattern;

/// The tokens pycocoevalcap removes after tokenization (compared case-sensitively).
pub const PUNCTUATION: [&str; 17] = [
    "''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--",
    "...", ";",
];

/// How far past the end of a caption the lexer may need to look. The longest trailing context (an
/// acronym, any run of spaces and newlines, a sentence-initial word, one more space) fits easily unless
/// an SGML tag longer than this follows an acronym at the end of a line.
const LOOKAHEAD: usize = 256;

/// The characters the jar reads for `captions[i]` followed by the lines after it (up to [`LOOKAHEAD`]
/// characters), and where `captions[i]` ends. pycocoevalcap writes captions one per line with embedded
/// newlines made spaces, and no newline after the last one.
fn stream_text<S: AsRef<str>>(captions: &[S], i: usize) -> (Vec<char>, usize) {
    let push_line = |text: &mut Vec<char>, s: &str| {
        text.extend(s.chars().map(|c| if c == '\n' { ' ' } else { c }))
    };
    let mut text = Vec::new();
    push_line(&mut text, captions[i].as_ref());
    let limit = text.len();
    for next in &captions[i + 1..] {
        if text.len() - limit > LOOKAHEAD {
            break;
        }
        text.push('\n');
        push_line(&mut text, next.as_ref());
    }
    (text, limit)
}

/// The jar's tokens for `captions[i]`, lowercased, before punctuation removal, when `captions` are the
/// lines of the jar's input. The following lines matter only for abbreviation rules: `"farm b."` gives
/// `b` before a line starting "There …" and `b.` otherwise.
pub fn ptb_tokens_in_stream<S: AsRef<str>>(captions: &[S], i: usize) -> Vec<String> {
    let (text, limit) = stream_text(captions, i);
    let mut raw = Vec::new();
    lexer::Lexer::get().tokens(&text, limit, &mut raw);
    // Java's `toLowerCase(Locale.ENGLISH)` and Rust's `to_lowercase` agree (final sigma included).
    raw.into_iter().map(|t| t.to_lowercase()).collect()
}

/// The jar's tokens for a caption tokenized on its own, lowercased, before punctuation removal.
pub fn ptb_tokens(caption: &str) -> Vec<String> {
    ptb_tokens_in_stream(&[caption], 0)
}

/// pycocoevalcap's `line.rstrip().split(' ')` minus [`PUNCTUATION`], joined by single spaces.
pub fn remove_punctuation(tokens: &[String]) -> String {
    let joined = tokens.join(" ");
    let line = joined.trim_end_matches(crate::text::is_python_space);
    line.split(' ').filter(|w| !PUNCTUATION.contains(w)).collect::<Vec<_>>().join(" ")
}

/// A caption as pycocoevalcap's scorers see it when it is tokenized on its own: PTB tokens, lowercased,
/// punctuation removed, joined by single spaces.
pub fn tokenize_caption(caption: &str) -> String {
    remove_punctuation(&ptb_tokens(caption))
}

/// Captions tokenized as one pycocoevalcap `PTBTokenizer.tokenize` call tokenizes them: one jar input,
/// one caption per line, in this order (so each caption sees the start of the next one).
pub fn tokenize_captions<S: AsRef<str> + Sync>(captions: &[S]) -> Vec<String> {
    use rayon::prelude::*;
    (0..captions.len())
        .into_par_iter()
        .map(|i| remove_punctuation(&ptb_tokens_in_stream(captions, i)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jar_examples() {
        // The jar's output, as pycocoevalcap runs it; tests/fixtures/ptb_edge_cases.json has 1,060 more lines.
        let cases = [
            ("Don't", "do n't"),
            ("it's", "it 's"),
            ("cannot", "can not"),
            ("gonna gotta", "gon na got ta"),
            ("u.s. mr. st. i.e.", "u.s. mr. st. i.e."),
            ("A bare land.", "a bare land"),
            ("3.5 and 1,000 and 50%", "3.5 and 1,000 and 50 %"),
            ("tennis-court 4-lane pond/lake e-mail", "tennis-court 4-lane pond/lake e-mail"),
            ("\"quoted\" \u{201C}curly\u{201D} -- \u{2014} \u{2013} ...", "quoted curly"),
            ("& @ # $ + = *", "& @ # $ + = *"),
            ("\u{3002}", "\u{3002}"),
            ("colour centre grey", "colour centre grey"),
            ("tab\tand   spaces", "tab and spaces"),
            ("", ""),
            (
                "Baseball diamond, near some cars (parked).",
                "baseball diamond near some cars -lrb- parked -rrb-",
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(tokenize_caption(raw), want, "caption {raw:?}");
        }
    }

    #[test]
    fn fast_path_agrees() {
        // The plain-word shortcut must not change any token: compare it with the full rule set on
        // hand-made lines and on every line of the jar edge-case fixture (abbreviations, clitics, URLs, ...).
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/ptb_edge_cases.json");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
        let mut lines: Vec<String> = v["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["input"].as_str().unwrap().to_string())
            .collect();
        lines.extend(
            [
                "Many green trees are around a large white building.",
                "cannot gonna Wanna lemme gimme gotta CANNOT",
                "a b c x y z I A",
                "there is a U.S. flag etc. and Inc. Co.",
            ]
            .map(String::from),
        );
        for i in 0..lines.len() {
            let (text, limit) = stream_text(&lines, i);
            let mut fast = Vec::new();
            lexer::Lexer::get().tokens(&text, limit, &mut fast);
            assert_eq!(fast, lexer::tokens_without_fast_path(&text, limit), "{:?}", lines[i]);
        }
    }

    #[test]
    fn the_next_line_decides_single_letter_abbreviations() {
        // Observed with the jar: the ACRONYM rule treats "b." as sentence-final before "There ".
        assert_eq!(tokenize_captions(&["near farm b.", "There is a farm."])[0], "near farm b");
        assert_eq!(tokenize_captions(&["near farm b.", "there is a farm."])[0], "near farm b.");
        assert_eq!(tokenize_caption("near farm b."), "near farm b.");
        // Empty lines in between do not stop the look-ahead.
        assert_eq!(ptb_tokens_in_stream(&["the u.s.", "", "The end"], 0), ["the", "u.s.", "."]);
        assert_eq!(ptb_tokens_in_stream(&["covers I.", "Many", "x"], 0), ["covers", "i", "."]);
    }
}
