//! The PTB tokenizer equals the Stanford PTBTokenizer 3.4.1 jar that pycocoevalcap runs:
//! - on every caption of every RSICD, UCM, Sydney and RSITMD annotation file in the shared data
//!   (217,340 captions; the jar's output is stored as SHA-256 digests of 1,000-line chunks, raw tokens
//!   and punctuation-filtered lines, by `scripts/metrics/ptb_fixture.py`);
//! - on hand-made edge cases and 1,000 random lines of tricky pieces, whose jar output is stored in full.
//!
//! Each file's captions form one jar input in file order, as pycocoevalcap writes them, because the jar's
//! abbreviation rules look into the following line.

mod common;

use std::path::Path;

use metrics::ptb::{ptb_tokens_in_stream, remove_punctuation};
use rayon::prelude::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn fixture(name: &str) -> Value {
    common::read_json(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name))
}

fn raw_tokens(lines: &[String]) -> Vec<String> {
    (0..lines.len()).into_par_iter().map(|i| ptb_tokens_in_stream(lines, i).join(" ")).collect()
}

#[test]
fn edge_cases_and_random_lines_equal_the_jar() {
    let f = fixture("ptb_edge_cases.json");
    let cases = f["cases"].as_array().unwrap();
    let inputs: Vec<String> =
        cases.iter().map(|c| c["input"].as_str().unwrap().to_string()).collect();
    let got = raw_tokens(&inputs);
    let mut bad = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        if got[i] != c["jar"].as_str().unwrap() {
            bad.push(format!("{:?}\n   jar : {:?}\n   rust: {:?}", inputs[i], c["jar"], got[i]));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} lines differ from the jar:\n{}",
        bad.len(),
        cases.len(),
        bad.join("\n")
    );
    // The filtered form is what the scorers see.
    let filtered = metrics::ptb::tokenize_captions(&inputs);
    for (i, c) in cases.iter().enumerate() {
        let jar: Vec<String> = c["jar"].as_str().unwrap().split(' ').map(str::to_owned).collect();
        assert_eq!(filtered[i], remove_punctuation(&jar), "{:?}", inputs[i]);
    }
}

/// Every caption of an annotation file, in file order (the generator script's `captions`).
fn captions(path: &Path, format: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let strs = |v: &Value| v.as_str().unwrap().to_string();
    match format {
        "karpathy" => {
            let v: Value = serde_json::from_str(&text).unwrap();
            v["images"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|im| im["sentences"].as_array().unwrap().iter().map(|s| strs(&s["raw"])))
                .collect()
        }
        "coco" => {
            let v: Value = serde_json::from_str(&text).unwrap();
            v["annotations"].as_array().unwrap().iter().map(|a| strs(&a["caption"])).collect()
        }
        "jsonl_captions" => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .flat_map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                v["captions"].as_array().unwrap().iter().map(strs).collect::<Vec<_>>()
            })
            .collect(),
        "lines" => {
            let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
            if text.ends_with('\n') {
                lines.pop();
            }
            lines
        }
        other => panic!("unknown format {other}"),
    }
}

fn chunk_digests(lines: &[String], chunk: usize) -> Vec<String> {
    lines
        .chunks(chunk)
        .map(|c| {
            Sha256::digest(c.join("\n").as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
        })
        .collect()
}

#[test]
fn every_shared_annotation_caption_equals_the_jar() {
    let Some(shared) = common::shared_dir("every_shared_annotation_caption_equals_the_jar") else {
        return;
    };
    let f = fixture("ptb_annotations.json");
    let root = shared.join("data/remote-sensing");
    let mut total = 0;
    let mut failures = Vec::new();
    for file in f["files"].as_array().unwrap() {
        let rel = file["path"].as_str().unwrap();
        let caps = captions(&root.join(rel), file["format"].as_str().unwrap());
        assert_eq!(caps.len() as u64, file["captions"].as_u64().unwrap(), "{rel}: caption count");
        let chunk = file["chunk"].as_u64().unwrap() as usize;
        let raw = raw_tokens(&caps);
        let filtered: Vec<String> = raw
            .iter()
            .map(|l| remove_punctuation(&l.split(' ').map(str::to_owned).collect::<Vec<_>>()))
            .collect();
        for (kind, lines) in [("raw_sha256", &raw), ("filtered_sha256", &filtered)] {
            let want: Vec<&str> =
                file[kind].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
            for (i, (got, want)) in chunk_digests(lines, chunk).iter().zip(&want).enumerate() {
                if got != want {
                    let dump = std::env::temp_dir()
                        .join(format!("ptb-mismatch-{}-{i}.txt", rel.replace('/', "_")));
                    std::fs::write(
                        &dump,
                        lines[i * chunk..((i + 1) * chunk).min(lines.len())].join("\n"),
                    )
                    .unwrap();
                    failures.push(format!(
                        "{rel}: {kind} chunk {i} (captions {}..{}) differs; our output is in {} (diff it against \
                         the jar's with scripts/metrics/ptb_fixture.py's run_jar)",
                        i * chunk,
                        ((i + 1) * chunk).min(lines.len()),
                        dump.display()
                    ));
                }
            }
        }
        total += caps.len();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("PTB tokenizer equals the Stanford jar on all {total} captions of the shared annotation files");
}
