#!/usr/bin/env python3
"""pycocoevalcap's scores for the real RSICD test split with synthetic hypotheses, for the `metrics`
crate's tests (tests/rsicd_reference.rs) and its benchmark.

Run by hand with the project's reference venv (pycocoevalcap installed, Java 17 on PATH):

    ~/.cache/paligemma-rs/torch-2.13.0/venv/bin/python scripts/metrics/rsicd_reference.py [--shared ../shared]

References: the 1,093 test images of shared/data/remote-sensing/RSICD/annotations/
dataset_rsicd_reconstructed.json (Karpathy format, raw captions, file order). Hypotheses, one per image,
deterministic (seed 4), cycling through five kinds:
  other_image   a reference caption of another test image of the same scene class
  shuffled      one of the image's own references with its words shuffled
  truncated     one of the image's own references cut after 1..n-1 words
  empty         ""
  own_reference one of the image's own references, verbatim (exercises perfect matches)
Hypotheses keep the raw casing and punctuation, so the PTB tokenizer is part of what is compared.

The full COCOEvalCap pipeline runs on them (PTBTokenizer, Bleu(4), Meteor, Rouge, Cider; SPICE is not
run): corpus scores and per-image scores go to crates/metrics/tests/fixtures/rsicd_test_reference.json.
"""
import argparse
import json
import os
import random
import sys

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(REPO, "crates", "metrics", "tests", "fixtures", "rsicd_test_reference.json")
ANNOTATIONS = "RSICD/annotations/dataset_rsicd_reconstructed.json"
KINDS = ["other_image", "shuffled", "truncated", "empty", "own_reference"]


def hypotheses(images, seed):
    rng = random.Random(seed)
    by_class = {}
    for im in images:
        by_class.setdefault(im["class"], []).append(im)
    out = []
    for i, im in enumerate(images):
        kind = KINDS[i % len(KINDS)]
        refs = [s["raw"] for s in im["sentences"]]
        if kind == "other_image":
            others = [o for o in by_class[im["class"]] if o is not im] or [o for o in images if o is not im]
            other = rng.choice(others)
            hyp = rng.choice(other["sentences"])["raw"]
        elif kind == "shuffled":
            words = rng.choice(refs).split()
            rng.shuffle(words)
            hyp = " ".join(words)
        elif kind == "truncated":
            words = rng.choice(refs).split()
            hyp = " ".join(words[: rng.randint(1, max(1, len(words) - 1))])
        elif kind == "empty":
            hyp = ""
        else:
            hyp = rng.choice(refs)
        out.append((kind, hyp))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=os.path.join(REPO, "..", "shared"))
    args = ap.parse_args()
    data = json.load(open(os.path.join(args.shared, "data", "remote-sensing", ANNOTATIONS), encoding="utf-8"))
    images = [im for im in data["images"] if im["split"] == "test"]
    hyps = hypotheses(images, seed=4)
    ids = [im["filename"] for im in images]
    gts = {im["filename"]: [{"caption": s["raw"]} for s in im["sentences"]] for im in images}
    res = {i: [{"caption": h}] for i, (_, h) in zip(ids, hyps)}
    tok = PTBTokenizer()
    gts_t = tok.tokenize(gts)
    res_t = tok.tokenize(res)
    corpus, per_image = {}, {}
    for scorer, names in [(Bleu(4), ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"]), (Meteor(), ["METEOR"]),
                          (Rouge(), ["ROUGE_L"]), (Cider(), ["CIDEr"])]:
        score, scores = scorer.compute_score(gts_t, res_t)
        if len(names) == 1:
            score, scores = [score], [scores]
        for n, s, ss in zip(names, score, scores):
            corpus[n] = float(s)
            per_image[n] = [float(x) for x in ss]
        print(names, score, file=sys.stderr)
    # pycocoevalcap scores images in dict order, which is the file order used here.
    assert list(gts_t.keys()) == ids
    out = {
        "generator": "scripts/metrics/rsicd_reference.py",
        "reference": "pycocoevalcap 1.2 COCOEvalCap pipeline: PTBTokenizer (stanford-corenlp-3.4.1.jar), "
                     "Bleu(4), Meteor (meteor-1.5.jar), Rouge, Cider; Java 17",
        "annotations": ANNOTATIONS,
        "split": "test",
        "seed": 4,
        "images": [{"id": i, "kind": k, "hypothesis": h} for i, (k, h) in zip(ids, hyps)],
        "corpus": corpus,
        "per_image": per_image,
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=0, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
