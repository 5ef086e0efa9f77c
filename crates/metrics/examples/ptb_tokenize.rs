//! Tokenizes stdin the way one pycocoevalcap `PTBTokenizer.tokenize` call tokenizes a file of captions
//! (PTB 3.4.1 + punctuation removal), one output line per input line. With `--raw`, prints the
//! jar-equivalent tokens before punctuation removal. Used to diff this crate against the Stanford jar on
//! whole annotation files.

use std::io::{Read, Write};

fn main() {
    let raw = std::env::args().any(|a| a == "--raw");
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).expect("stdin is UTF-8 text");
    // Lines exactly as the jar reads them: a final newline ends the last line rather than adding one.
    let mut lines: Vec<&str> = input.split('\n').collect();
    if input.ends_with('\n') {
        lines.pop();
    }
    let out: Vec<String> = if raw {
        (0..lines.len()).map(|i| metrics::ptb::ptb_tokens_in_stream(&lines, i).join(" ")).collect()
    } else {
        metrics::ptb::tokenize_captions(&lines)
    };
    let mut w = std::io::BufWriter::new(std::io::stdout().lock());
    for t in out {
        writeln!(w, "{t}").unwrap();
    }
}
