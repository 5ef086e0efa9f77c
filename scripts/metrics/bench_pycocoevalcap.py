#!/usr/bin/env python3
"""Times pycocoevalcap on a corpus for `cargo xtask bench metrics`, which runs it with the project's
reference venv and compares against the Rust `metrics` crate in the same run.

    python bench_pycocoevalcap.py INPUT.json [--repeats N] [--meteor]

INPUT.json: {"ids": [...], "refs": {id: [captions]}, "hyps": {id: caption}}; images are scored in `ids`
order, as COCOEvalCap does. Prints one JSON object: per-stage wall times in seconds for every repeat
(tokenize = the two PTBTokenizer jar calls, bleu/rouge/cider = compute_score on the tokenized corpus,
meteor = one Meteor() construction plus compute_score, run once) and the corpus scores.
"""
import argparse
import json
import sys
import time

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--meteor", action="store_true")
    args = ap.parse_args()
    data = json.load(open(args.input, encoding="utf-8"))
    gts = {i: [{"caption": c} for c in data["refs"][i]] for i in data["ids"]}
    res = {i: [{"caption": data["hyps"][i]}] for i in data["ids"]}
    times = {"tokenize": [], "bleu": [], "rouge": [], "cider": []}
    scores = {}
    for _ in range(args.repeats):
        t = time.perf_counter()
        tok = PTBTokenizer()
        gts_t, res_t = tok.tokenize(gts), tok.tokenize(res)
        times["tokenize"].append(time.perf_counter() - t)
        for name, scorer in [("bleu", Bleu(4)), ("rouge", Rouge()), ("cider", Cider())]:
            t = time.perf_counter()
            score, _ = scorer.compute_score(gts_t, res_t, **({"verbose": 0} if name == "bleu" else {}))
            times[name].append(time.perf_counter() - t)
            if name == "bleu":
                for n in range(4):
                    scores[f"Bleu_{n + 1}"] = float(score[n])
            else:
                scores["ROUGE_L" if name == "rouge" else "CIDEr"] = float(score)
    if args.meteor:
        from pycocoevalcap.meteor.meteor import Meteor
        t = time.perf_counter()
        m = Meteor()
        score, _ = m.compute_score(gts_t, res_t)
        times["meteor"] = [time.perf_counter() - t]
        scores["METEOR"] = float(score)
    json.dump({"times": times, "scores": scores, "python": sys.version.split()[0]}, sys.stdout)


if __name__ == "__main__":
    main()
