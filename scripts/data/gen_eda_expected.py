#!/usr/bin/env python3
"""Independent EDA numbers for the real RSICD, UCM and Sydney annotations (crates/rsicd-data/tests/eda.rs).

Run by hand from the repository root with any Python 3 (standard library + numpy):

    ~/.cache/paligemma-rs/torch-2.13.0/venv/bin/python scripts/data/gen_eda_expected.py

Reads ../shared/data/remote-sensing (or $PALIGEMMA_SHARED/data/remote-sensing) with the json module and writes
crates/rsicd-data/tests/fixtures/eda_expected.json. Definitions, as documented in crates/rsicd-data/src/eda.rs:
a word is a maximal run of alphanumeric characters of the lowercased caption (regex [^\\W_]+); a caption's normal
form is its words joined by spaces; distinct-n = distinct word n-grams / all n-grams; percentiles are numpy's
linear interpolation. The stop-word list is the one in eda.rs (a definition, repeated here on purpose).
"""
import json
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("PALIGEMMA_SHARED", REPO.parent / "shared")) / "data" / "remote-sensing"
OUT = REPO / "crates" / "rsicd-data" / "tests" / "fixtures" / "eda_expected.json"

STOP = set("""a about above after again against all also am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have having he her
here hers him his how i if in into is it its itself just may me might more most must my no nor not now of off on
once only or other our ours out over own same she should so some such than that the their theirs them then there
these they this those through to too under until up very was we were what when where which while who whom why
will with would you your""".split())

FILES = {
    "rsicd": "RSICD/annotations/dataset_rsicd_reconstructed.json",
    "ucm": "UCM/dataset_ucm.json",
    "sydney": "Sydney/dataset_sydney_modified.json",
}

SPLIT = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def words(s):
    return re.findall(r"[^\W_]+", s.lower())


def stats(path):
    images = json.loads(path.read_text())["images"]
    per_split, per_class = Counter(), Counter()
    split_caps = Counter()
    caps = []
    distinct_per_image = Counter()
    all_identical = 0
    for im in images:
        split = SPLIT.get(im["split"].lower(), im["split"])
        per_split[split] += 1
        raws = [s["raw"] for s in im["sentences"]]
        split_caps[split] += len(raws)
        if im.get("class") is not None:
            per_class[im["class"]] += 1
        normal = [" ".join(words(r)) for r in raws]
        caps.extend(raws)
        distinct_per_image[len(set(normal))] += 1
        if len(raws) > 1 and len(set(normal)) == 1:
            all_identical += 1
    toks = [words(c) for c in caps]
    lens = np.array([len(t) for t in toks], dtype=float)
    wc = Counter(w for t in toks for w in t)
    rank = lambda items: sorted(items, key=lambda kv: (-kv[1], kv[0]))
    grams = []
    for n in range(1, 5):
        allg = [tuple(t[i:i + n]) for t in toks for i in range(len(t) - n + 1)]
        grams.append({"n": n, "distinct": len(set(allg)), "total": len(allg)})
    return {
        "images": len(images),
        "captions": len(caps),
        "per_split": {k: {"images": per_split[k], "captions": split_caps[k]} for k in sorted(per_split)},
        "per_class": dict(sorted(per_class.items())),
        "words": {"min": lens.min(), "max": lens.max(), "mean": lens.mean(), "median": float(np.median(lens)),
                  "p95": float(np.percentile(lens, 95)), "p99": float(np.percentile(lens, 99))},
        "vocabulary_size": len(wc),
        "top_words": rank(wc.items())[:10],
        "top_content_words": rank([kv for kv in wc.items() if kv[0] not in STOP])[:10],
        "unique_captions": len(set(" ".join(t) for t in toks)),
        "distinct_per_image": {str(k): v for k, v in sorted(distinct_per_image.items())},
        "images_all_identical": all_identical,
        "ngrams": grams,
    }


def main():
    out = {"generator": "scripts/data/gen_eda_expected.py"}
    for name, rel in FILES.items():
        out[name] = stats(SHARED / rel)
        print(name, out[name]["images"], out[name]["captions"], out[name]["vocabulary_size"])
    OUT.write_text(json.dumps(out, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
