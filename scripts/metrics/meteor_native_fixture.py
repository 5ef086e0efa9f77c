#!/usr/bin/env python3
"""Reference outputs of the METEOR 1.5 jar's internals for the `metrics` crate's native METEOR
(tests/meteor_native.rs). Needs scripts/metrics/rsicd_reference.py's fixture first.

Run by hand with the project's reference venv (pycocoevalcap installed, a JDK with javac on PATH):

    ~/.cache/paligemma-rs/torch-2.13.0/venv/bin/python scripts/metrics/meteor_native_fixture.py [--shared ../shared]

Compiles MeteorReference.java (next to this script) against pycocoevalcap's meteor-1.5.jar and writes
crates/metrics/tests/fixtures/meteor_native.json with:
* stems: the jar's Snowball English stem of every word of the normalized RSICD, UCM and Sydney captions;
* normalize: the jar's `-norm` normalization of hand-made edge cases (in full), and a SHA-256 digest of
  its normalization of every PTB-tokenized reference and hypothesis of the RSICD test corpus;
* stats: the jar's sufficient statistics for that corpus with the modules exact, stem and synonym (the
  native METEOR's modules; the official metric adds paraphrase), one line of 23 numbers per image.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import pycocoevalcap
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(REPO, "crates", "metrics", "tests", "fixtures")
METEOR_DIR = os.path.join(list(pycocoevalcap.__path__)[0], "meteor")
JAR = os.path.join(METEOR_DIR, "meteor-1.5.jar")

NORM_EDGE_CASES = [
    "it 's", "it's", "the boys' toys", "do n't", "don't", "'hello'", "1990's", "rock 'n' roll", "a - b", "a-b",
    "u.s.-based", "do n't u.s. a.m. 1,000 3.5 -lrb- parked -rrb-", "a,b,c 1,2 a, 2 1 ,b", "wait... and ....",
    "a . b", "mr. smith", "no. 5", "no. x", "inc. and", "etc.", "U.S.", "a.b.c", "x.", "end.", "e.g. this",
    "“quoted” ‘single’ ``latex'' `tick`", "a–b a--b a---b", "50 % & @ # $ + = *", "tab\tand\u00a0nbsp\u2003em",
    "café naïve façade Ç ĳ", "один два", "...", ".", "", "  ", "'", "''", "a''b", "x'", "'x", "3'", "3's", "o'clock",
]


def run(cls_dir, mode, lines, extra=()):
    out = subprocess.run(
        ["java", "-cp", JAR + os.pathsep + cls_dir, "MeteorReference", mode, *extra],
        input="\n".join(lines) + "\n", stdout=subprocess.PIPE, check=True, text=True, encoding="utf-8",
        cwd=METEOR_DIR,
    ).stdout.split("\n")
    assert out[-1] == "" and len(out) == len(lines) + 1, (mode, len(out), len(lines))
    return out[:-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=os.path.join(REPO, "..", "shared"))
    args = ap.parse_args()
    root = os.path.join(args.shared, "data", "remote-sensing")
    ref_fixture = json.load(open(os.path.join(FIXTURES, "rsicd_test_reference.json"), encoding="utf-8"))
    cls_dir = tempfile.mkdtemp()
    subprocess.run(["javac", "-cp", JAR, "-d", cls_dir, os.path.join(HERE, "MeteorReference.java")], check=True)

    # The corpus exactly as pycocoevalcap hands it to METEOR.
    data = json.load(open(os.path.join(root, ref_fixture["annotations"]), encoding="utf-8"))
    images = {im["filename"]: im for im in data["images"] if im["split"] == "test"}
    ids = [im["id"] for im in ref_fixture["images"]]
    gts = {i: [{"caption": s["raw"]} for s in images[i]["sentences"]] for i in ids}
    res = {im["id"]: [{"caption": im["hypothesis"]}] for im in ref_fixture["images"]}
    tok = PTBTokenizer()
    gts_t, res_t = tok.tokenize(gts), tok.tokenize(res)
    score_lines = []
    for i in ids:
        hyp = res_t[i][0].replace("|||", "").replace("  ", " ")
        score_lines.append(" ||| ".join(gts_t[i] + [hyp]))
    stats = run(cls_dir, "stats", score_lines, ["exact", "stem", "synonym"])

    segments = [s for i in ids for s in gts_t[i]] + [res_t[i][0] for i in ids]
    normalized = run(cls_dir, "norm", segments)
    norm_digest = hashlib.sha256("\n".join(normalized).encode()).hexdigest()
    edge = run(cls_dir, "norm", NORM_EDGE_CASES)

    # Vocabulary: every word of the normalized captions of the shared RSICD, UCM and Sydney annotations.
    caps = [s["raw"] for im in data["images"] for s in im["sentences"]]
    for rel in ["UCM/dataset_ucm.json", "Sydney/dataset_sydney_modified.json"]:
        caps += [s["raw"] for im in json.load(open(os.path.join(root, rel), encoding="utf-8"))["images"]
                 for s in im["sentences"]]
    words = sorted({w for line in run(cls_dir, "norm", caps) for w in line.split()})
    stems = run(cls_dir, "stem", words)

    out = {
        "generator": "scripts/metrics/meteor_native_fixture.py (MeteorReference.java against meteor-1.5.jar)",
        "jar_sha256": hashlib.sha256(open(JAR, "rb").read()).hexdigest(),
        "corpus": "rsicd_test_reference.json, PTB-tokenized as pycocoevalcap does",
        "stems": [[w, s] for w, s in zip(words, stems)],
        "normalize_edge_cases": [[a, b] for a, b in zip(NORM_EDGE_CASES, edge)],
        "normalize_corpus": {"segments": len(segments), "order": "all references image by image, then all hypotheses",
                             "sha256": norm_digest},
        "stats_modules": ["exact", "stem", "synonym"],
        "stats": stats,
    }
    with open(os.path.join(FIXTURES, "meteor_native.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, indent=0, ensure_ascii=False)
        f.write("\n")
    print(f"{len(words)} words, {len(segments)} segments, {len(stats)} stats lines", file=sys.stderr)


if __name__ == "__main__":
    main()
