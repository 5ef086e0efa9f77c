#!/usr/bin/env python3
"""Reference output of pycocoevalcap's tokenization step (Stanford PTBTokenizer 3.4.1, the jar that ships
in pycocoevalcap) for the `metrics` crate's equality tests.

Run by hand with the project's reference venv (pycocoevalcap installed, Java 17 on PATH):

    ~/.cache/paligemma-rs/torch-2.13.0/venv/bin/python scripts/metrics/ptb_fixture.py [--shared ../shared]

Writes, under crates/metrics/tests/fixtures/:

* ptb_annotations.json - for every caption of every annotation file of RSICD, UCM, Sydney (and RSITMD) in
  the shared data: the captions of the file, in file order, are one jar input (one caption per line, as
  pycocoevalcap writes them); the jar's output lines (raw tokens) and pycocoevalcap's punctuation-filtered
  lines are hashed with SHA-256 in chunks of 1,000 lines. The Rust test rebuilds the same streams from
  the shared data and compares digests chunk by chunk (the outputs themselves would be ~10 MB).
* ptb_edge_cases.json - hand-made edge cases and 1,000 random lines built from caption words and tricky
  pieces (abbreviations, clitics, quotes, brackets, URLs, numbers, entities, ...), with the jar's raw
  output for each line, stored in full.

Reference behaviour: pycocoevalcap/tokenizer/ptbtokenizer.py (pycocoevalcap 1.2).
"""
import argparse
import glob
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile

import pycocoevalcap

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, "crates", "metrics", "tests", "fixtures")
JAR = os.path.join(list(pycocoevalcap.__path__)[0], "tokenizer", "stanford-corenlp-3.4.1.jar")
PUNCTUATIONS = ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
CHUNK = 1000

# (path relative to shared/data/remote-sensing, format). The Rust test reads the same list from the fixture.
FILES = [
    ("RSICD/annotations/dataset_rsicd_reconstructed.json", "karpathy"),
    ("RSICD/rsicd_sample_captions.json", "karpathy"),
    ("RSICD/annotations/jwdevx_coco_format/captions_val2017.json", "coco"),
    ("RSICD/annotations/jwdevx_coco_format/captions_test2017.json", "coco"),
    ("RSICD/annotations/arampacha_textaug/textaug_train_rsicd.jsonl", "jsonl_captions"),
    ("RSICD/annotations/arampacha_textaug/textaug_valid_rsicd.jsonl", "jsonl_captions"),
    ("RSICD/annotations/arampacha_textaug/textaug_test_rsicd.jsonl", "jsonl_captions"),
    ("RSICD/annotations/AMFMN_rsicd_precomp/train_caps.txt", "lines"),
    ("RSICD/annotations/AMFMN_rsicd_precomp/test_caps.txt", "lines"),
    ("UCM/dataset_ucm.json", "karpathy"),
    ("UCM/ucm_sample_captions.json", "karpathy"),
    ("Sydney/dataset_sydney_modified.json", "karpathy"),
    ("Sydney/sydney_sample_captions.json", "karpathy"),
    ("RSITMD/annotations/AMFMN_rsitmd_precomp/train_caps.txt", "lines"),
    ("RSITMD/annotations/AMFMN_rsitmd_precomp/test_caps.txt", "lines"),
]


def captions(path, fmt):
    """Every caption of a file, in file order."""
    if fmt == "karpathy":
        return [s["raw"] for im in json.load(open(path, encoding="utf-8"))["images"] for s in im["sentences"]]
    if fmt == "coco":
        return [a["caption"] for a in json.load(open(path, encoding="utf-8"))["annotations"]]
    if fmt == "jsonl_captions":
        return [c for line in open(path, encoding="utf-8") if line.strip() for c in json.loads(line)["captions"]]
    if fmt == "lines":
        text = open(path, encoding="utf-8").read()
        lines = text.split("\n")
        if text.endswith("\n"):
            lines.pop()
        return lines
    raise ValueError(fmt)


def run_jar(lines):
    """The jar's output lines for `lines`, written exactly as ptbtokenizer.py writes its temporary file."""
    text = "\n".join(l.replace("\n", " ") for l in lines)
    with tempfile.NamedTemporaryFile("wb", delete=False, suffix=".txt") as f:
        f.write(text.encode())
        name = f.name
    try:
        out = subprocess.run(
            ["java", "-cp", JAR, "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase", name],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True,
        ).stdout.decode()
    finally:
        os.remove(name)
    out_lines = out.split("\n")
    # The jar ends its output with a newline only when the input ends with an empty line.
    if len(out_lines) == len(lines) + 1 and out_lines[-1] == "":
        out_lines.pop()
    assert len(out_lines) == len(lines), (len(out_lines), len(lines))
    return out_lines


def filtered(line):
    return " ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS)


def digests(lines):
    return [hashlib.sha256("\n".join(lines[i:i + CHUNK]).encode()).hexdigest() for i in range(0, len(lines), CHUNK)]


EDGE_CASES = [
    "Don't do it. It's a cat's toy, isn't it? They're here; we've gone! I'll go. He'd say I'm fine.",
    "DON'T WON'T CAN'T can't won't cannot Cannot gonna gotta wanna lemme gimme 'tis 'twas",
    "u.s. U.S. mr. Mr. st. St. i.e. e.g. etc. vs. no. a.m. p.m. Dr. Inc. Co. Jr. Mt. ft. km. approx. fig.",
    "The U.S. is big. I live in the U.S.",
    "3.5 1,000 50% 1/2 $5 #1 +3 2=2 3*4 a&b x@y 2nd 3rd 1990s '90s 10:30 -5 5-6 100m 20km2",
    "tennis-court 4-lane pond/lake e-mail co-operate self-  -ish  well--known a--b a - b",
    "\"quoted\" 'single' \u2018curly single\u2019 \u201ccurly double\u201d it\u2019s don\u2019t rock'n'roll o'clock",
    "(parked) [box] {brace} <angle> a(b)c f(x)",
    "wait... and so\u2026 yes\u2014no 2\u20133 a -- b",
    "colour centre grey organise aluminium",
    "\u3002 \uff0c \uff01 \uff1f \u3001",
    "tab\tseparated    spaces",
    "a . b , c ; d : e ! f ? g",
    "end with period.",
    "end with abbreviation etc.",
    "end with question?",
    "ends with ...",
    "houses'. the boys' toys. james' car. 's",
    "color`s building`s the ``quote'' here",
    "Mr.Smith a.b.c. A.B.C x.y",
    "3.  4. 5.5.",
    "#hashtag @user http://example.com www.example.com foo@bar.com",
    "&amp; &lt; AT&T R&D",
    "na\u00efve caf\u00e9 r\u00e9sum\u00e9 fa\u00e7ade \u00c7",
    "ABC's NASA's CEO's 1960's",
    "'em y'all ma'am",
    "can't've shouldn't've",
    "ain't",
    "a-b-c-d 1-2-3",
    "_underscore_ a_b",
    "...leading dots",
    "--dash start",
    "!!! ??? !? ?!",
    "the. the",
    "a.",
    "I.",
    "no.1",
    "e.t.c",
    "There is a house near farm b.",
    "There is a park.",
    "many green trees are around square s.",
    "",
    "the U.S.",
    "",
    "The end.",
    "covers I.",
    "Many",
    "fig. 3 shows no. 5 and ca. 1990",
    "Pty. Ltd and co. lim",
    "\u00bd \u00bc \u00be \u2153 \u2154 \u00a2 \u00a3 \u20ac \u00a5",
    "\u2070\u00b9\u00b2\u00b3 x\u2082 10\u207b\u00b3",
    ":) :-( ;) =D <3 ^_^ (^_^) o_O",
    "c++ C# F# c#",
    "-LRB- -RRB- -LSB- pro- anti- S&P-500",
    "555-123-4567 (555) 123-4567 +1 555 123 4567 12.34.56.789",
    "<b>bold</b> <br/> <a href='x'> <!DOCTYPE html>",
    "x.jpg file.txt archive.tar.gz index.html",
    "soft\u00adhyphen co\u00adoperate",
    "\u00a0nbsp\u00a0inside\u2003em space",
    "zero\u200bwidth \ufeffbom",
]


def fuzz_lines(words, n, seed):
    pieces = ["etc.", "U.S.", "u.s.", "Mr.", "Inc.", "Co.", "no.", "No.", "fig.", "a.", "I.", "b.", "St.", "Mt.",
              "vs.", "can't", "won't", "it's", "I'm", "they're", "we've", "he'd", "you'll", "cannot", "gonna",
              "gotta", "wanna", "'tis", "'twas", "y'all", "o'clock", "rock'n'roll", "'90s", "1960's", "ma'am",
              "'em", "don\u2019t", "it\u2019s", "\"", "'", "`", "``", "''", "\u201c", "\u201d", "\u2018", "\u2019",
              "(", ")", "[", "]", "{", "}", "<", ">", "<b>", "</b>", "<br/>", "...", "\u2026", ". . .", "--",
              "---", "-", "\u2014", "\u2013", "_", "__", "*", "**", "#", "#tag", "@user", "@", "&", "&amp;",
              "&lt;", "3.5", "1,000", "50%", "1/2", "5 1/2", "\u00bd", "$5", "US$", "\u00a33", "\u20ac", "+3",
              "-5", "10:30", "12/25/2020", "2nd", "100m", "555-123-4567", "(555) 123-4567", "http://a.b/c",
              "www.x.com", "foo@bar.com", "file.txt", "x.jpg", "AT&T", "S&P-500", "a-b", "self-", "-ish",
              "pond/lake", "and/or", "a_b", ":)", ":-(", ";)", "^_^", "(^_^)", "c++", "C#", "-LRB-", ",", ";",
              ":", "!", "?", "?!", "!!", ".", "=", "/", "\\", "|", "~", "^", "%", "\u00b0", "\u00d7", "\u3002",
              "\u3001", "\uff0c", "\u00e7", "na\u00efve", "Ph.D.", "a.k.a.", "e.g.", "i.e.", "Jan.", "Calif.",
              "Mass.", "mass.", "pty. ltd", "co. ltd", "Dept.", "Jr.", "Bros.", "There", "The", "A", "In", "It",
              "He", "She", "This", "They", "We", "You", "About", "But", "Many"]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        line = ""
        for k in range(rng.randint(0, 12)):
            t = rng.choice(words) if rng.random() < 0.45 else rng.choice(pieces)
            line += (rng.choice([" ", " ", " ", " ", "", "  ", "\t"]) if k else "") + t
        if rng.random() < 0.3:
            line = line.capitalize()
        if rng.random() < 0.5:
            line += rng.choice([".", " .", "!", "?", ".", "..."])
        out.append(line)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=os.path.join(REPO, "..", "shared"))
    args = ap.parse_args()
    root = os.path.join(args.shared, "data", "remote-sensing")
    jar_sha = hashlib.sha256(open(JAR, "rb").read()).hexdigest()
    files = []
    words = []
    for rel, fmt in FILES:
        caps = captions(os.path.join(root, rel), fmt)
        if rel.startswith("RSICD/annotations/dataset_rsicd"):
            words = sorted({w for c in caps for w in c.split()})
        raw = run_jar(caps)
        filt = [filtered(l) for l in raw]
        changed = sum(1 for c, f in zip(caps, filt) if f != " ".join(c.lower().split()))
        files.append({
            "path": rel, "format": fmt, "captions": len(caps), "chunk": CHUNK,
            "raw_sha256": digests(raw), "filtered_sha256": digests(filt),
            "differ_from_lowercase_split": changed,
        })
        print(f"{rel}: {len(caps)} captions, {changed} change beyond lowercasing", file=sys.stderr)
    meta = {
        "generator": "scripts/metrics/ptb_fixture.py",
        "jar": "pycocoevalcap/tokenizer/stanford-corenlp-3.4.1.jar", "jar_sha256": jar_sha,
        "command": "java -cp stanford-corenlp-3.4.1.jar edu.stanford.nlp.process.PTBTokenizer -preserveLines -lowerCase <file>",
        "punctuation_removed": PUNCTUATIONS,
    }
    os.makedirs(FIXTURES, exist_ok=True)
    with open(os.path.join(FIXTURES, "ptb_annotations.json"), "w", encoding="utf-8") as f:
        json.dump({**meta, "files": files}, f, indent=1)
        f.write("\n")
    lines = EDGE_CASES + fuzz_lines(words, 1000, seed=2024)
    raw = run_jar(lines)
    with open(os.path.join(FIXTURES, "ptb_edge_cases.json"), "w", encoding="utf-8") as f:
        json.dump({**meta, "note": "one jar input, one line per case, in this order",
                   "cases": [{"input": a, "jar": b} for a, b in zip(lines, raw)]}, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
