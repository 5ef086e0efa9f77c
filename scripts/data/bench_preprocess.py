#!/usr/bin/env python3
"""Reference timing for `cargo xtask bench data`: PIL decode + the HF SiglipImageProcessor, one image at a time.

Called by xtask (never needed by the library or its tests):

    python scripts/data/bench_preprocess.py <seconds-per-group> <group>=<path>[,<path>...] ...

For each group it times, single-threaded (torch threads = 1), `Image.open(path)` + processor(images=img,
return_tensors="np") at size 224, bicubic, mean = std = 0.5, for both HF backends: `SiglipImageProcessorPil`
(PIL resize) and `SiglipImageProcessor` (torchvision, the transformers 5 default). Prints one JSON object:
{"<group>": {"pil": images_per_second, "torchvision": images_per_second}, "versions": {...}}.
"""
import json
import sys
import time

import torch
import transformers
from PIL import Image
from transformers import SiglipImageProcessor, SiglipImageProcessorPil


def rate(proc, paths, seconds):
    for p in paths:  # warm-up
        proc(images=Image.open(p), return_tensors="np")
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for p in paths:
            proc(images=Image.open(p), return_tensors="np")
            n += 1
    return n / (time.perf_counter() - t0)


def main():
    torch.set_num_threads(1)
    seconds = float(sys.argv[1])
    kw = dict(size={"height": 224, "width": 224}, resample=3, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    procs = {"pil": SiglipImageProcessorPil(**kw), "torchvision": SiglipImageProcessor(**kw)}
    out = {"versions": {"transformers": transformers.__version__, "pillow": Image.__version__,
                        "torch": torch.__version__}}
    for arg in sys.argv[2:]:
        group, paths = arg.split("=", 1)
        paths = paths.split(",")
        out[group] = {name: rate(proc, paths, seconds) for name, proc in procs.items()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
