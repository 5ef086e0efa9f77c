#!/usr/bin/env python3
"""Golden values for `rsicd_data::ImagePreprocessor` (crates/rsicd-data/tests/preprocess_golden.rs).

Run by hand, from the repository root, with the project's reference venv (never a runtime dependency):

    ~/.cache/paligemma-rs/torch-2.13.0/venv/bin/python scripts/data/gen_preprocess_golden.py

Needs transformers 5.x, Pillow, torch and torchvision (pip install pillow torchvision). Reads real images from
../shared/data/remote-sensing (or $PALIGEMMA_SHARED/data/remote-sensing) and writes:

* crates/rsicd-data/tests/fixtures/images/*  small synthetic images covering every pixel layout the loader must
  accept (RGBA, LA, palette with and without transparency, grayscale, 16-bit gray PNG, 16-bit RGB TIFF, a small
  JPEG that has to be upsampled). Deterministic.
* crates/rsicd-data/tests/fixtures/preprocess_golden.json  for every (image, size): what the HF processors output.

Reference for `bicubic`: `SiglipImageProcessorPil` (PIL backend, PaliGemma's preprocessor_config: bicubic,
rescale 1/255, mean = std = 0.5). Its output is exactly u8/127.5 - 1 of PIL's resized uint8 image, so we store that
uint8 image's full statistics: sha256 of the HWC bytes, per-channel sum and sum of squares, the mean of every cell
of a 16x16 grid, and 4 full rows and 4 full columns (base64 of HWC u8). For information we also record the
largest difference between the default torchvision backend (`SiglipImageProcessor`) and the PIL backend.
Reference for `bilinear-antialias`: torch `F.interpolate(mode="bilinear", antialias=True)` on the same decoded
pixels in float (the PIL-derived kernel TF's `resize(antialias=True)` also uses), on the real images at 224:
per-channel sums and 4 full rows stored as round(v*100) u16.

16-bit inputs: PIL's `I;16 -> RGB` conversion saturates at 255, so HF cannot serve as the reference there; the
reference is the HF PIL processor applied to round(v*255/65535) (our documented conversion) computed with numpy.
"""
import base64
import hashlib
import json
import os
import struct
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import SiglipImageProcessor, SiglipImageProcessorPil

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("PALIGEMMA_SHARED", REPO.parent / "shared")) / "data" / "remote-sensing"
FIX = REPO / "crates" / "rsicd-data" / "tests" / "fixtures"
IMG = FIX / "images"

REAL = [
    ("RSICD/images/00001.jpg", [224]),
    ("RSICD/images/pond_229.jpg", [224]),
    ("RSICD/images/stadium_209.jpg", [224, 64]),
    ("UCM/images/Jbarata98/1.tif", [224]),
    ("UCM/images/xiaoyuan1996/3.tif", [224]),
    ("Sydney/images/1.tif", [224, 64]),
    ("Sydney/images/5.tif", [224]),
]


def smooth_noise(rng, h, w, c):
    """Aerial-ish texture: gradients plus blurred noise, so resizing has real work to do."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack([128 + 90 * np.sin(xx / (5 + k) + yy / (7 + 2 * k) + k) for k in range(c)], axis=-1)
    noise = rng.normal(0, 40, (h, w, c))
    return np.clip(base + noise, 0, 255)


def write_tiff_rgb16(path, arr):
    """Minimal baseline little-endian TIFF, uncompressed, RGB 16 bits per sample (PIL cannot write this)."""
    h, w, _ = arr.shape
    data = arr.astype("<u2").tobytes()
    entries = []
    # tag, type, count, value: types 3 = SHORT, 4 = LONG
    n_tags = 10
    ifd_offset = 8
    ifd_size = 2 + n_tags * 12 + 4
    bps_offset = ifd_offset + ifd_size
    data_offset = bps_offset + 6
    entries = [
        (256, 4, 1, w), (257, 4, 1, h), (258, 3, 3, bps_offset), (259, 3, 1, 1), (262, 3, 1, 2),
        (273, 4, 1, data_offset), (277, 3, 1, 3), (278, 4, 1, h), (279, 4, 1, len(data)), (284, 3, 1, 1),
    ]
    out = bytearray(b"II*\x00" + struct.pack("<I", ifd_offset))
    out += struct.pack("<H", n_tags)
    for tag, typ, count, value in entries:
        if typ == 3 and count == 1:
            out += struct.pack("<HHIHH", tag, typ, count, value, 0)
        else:
            out += struct.pack("<HHII", tag, typ, count, value)
    out += struct.pack("<I", 0)
    out += struct.pack("<HHH", 16, 16, 16)
    out += data
    path.write_bytes(bytes(out))


def make_fixtures():
    IMG.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20240607)
    made = {}
    rgba = smooth_noise(rng, 60, 80, 4).astype(np.uint8)
    rgba[:, :8, 3] = 0  # fully transparent strip: must become white
    rgba[:, 8:16, 3] = 255
    Image.fromarray(rgba, "RGBA").save(IMG / "rgba_80x60.png")
    la = smooth_noise(rng, 50, 50, 2).astype(np.uint8)
    Image.fromarray(la, "LA").save(IMG / "la_50x50.png")
    pal = (smooth_noise(rng, 50, 70, 1)[..., 0] / 16).astype(np.uint8)  # 16 palette entries
    p = Image.fromarray(pal, "L").convert("P")
    p.putpalette(sum(([i * 16, 255 - i * 16, (i * 97) % 256] for i in range(16)), []) + [0] * (3 * 240))
    p.save(IMG / "palette_70x50.png")
    pt = p.crop((0, 0, 40, 30))
    pt.save(IMG / "palette_trns_40x30.png", transparency=3)
    gray = smooth_noise(rng, 64, 90, 1)[..., 0].astype(np.uint8)
    Image.fromarray(gray, "L").save(IMG / "gray_90x64.png")
    small = smooth_noise(rng, 24, 32, 3).astype(np.uint8)
    Image.fromarray(small, "RGB").save(IMG / "small_32x24.jpg", quality=90)
    g16 = (smooth_noise(rng, 48, 64, 1)[..., 0] * 257).astype(np.uint16)
    Image.fromarray(g16).save(IMG / "gray16_64x48.png")
    rgb16 = (smooth_noise(rng, 40, 48, 3) * 257).astype(np.uint16)
    write_tiff_rgb16(IMG / "rgb16_48x40.tif", rgb16)
    made["gray16_64x48.png"] = np.repeat(g16[..., None], 3, axis=-1)
    made["rgb16_48x40.tif"] = rgb16
    return made


def to_u8_from_16(arr16):
    return np.floor(arr16.astype(np.float64) * 255.0 / 65535.0 + 0.5).astype(np.uint8)


def hf_u8(proc, pil_img):
    """Run an HF processor and recover the uint8 HWC image it resized (exact for the PIL backend)."""
    pv = proc(images=pil_img, return_tensors="np")["pixel_values"][0]  # CHW float32
    return pv, np.clip(np.round((pv.astype(np.float64) + 1.0) * 127.5), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def sample_idx(s):
    return sorted(set([0, s // 3, 2 * s // 3, s - 1]))


def b64(a):
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()


def grid_means(hwc):
    s = hwc.shape[0]
    g = 16
    edges = [round(i * s / g) for i in range(g + 1)]
    out = []
    for gy in range(g):
        for gx in range(g):
            cell = hwc[edges[gy]:edges[gy + 1], edges[gx]:edges[gx + 1]].astype(np.float64)
            out.extend(round(float(v), 2) for v in cell.reshape(-1, 3).mean(0))
    return out


def u8_record(hwc):
    s = hwc.shape[0]
    idx = sample_idx(s)
    f = hwc.astype(np.float64)
    return {
        "sha256": hashlib.sha256(np.ascontiguousarray(hwc).tobytes()).hexdigest(),
        "sum": [float(v) for v in f.reshape(-1, 3).sum(0)],
        "sumsq": [float(v) for v in (f * f).reshape(-1, 3).sum(0)],
        "grid16_mean": grid_means(hwc),
        "rows": b64(hwc[idx]),
        "cols": b64(hwc[:, idx].transpose(1, 0, 2)),
    }


def main():
    if not SHARED.is_dir():
        sys.exit(f"shared data not found at {SHARED}")
    made = make_fixtures()
    entries = []
    jobs = [(SHARED / rel, f"shared:{rel}", sizes) for rel, sizes in REAL]
    for f in sorted(IMG.iterdir()):
        jobs.append((f, f"fixture:{f.name}", [224, 64]))
    for path, key, sizes in jobs:
        src = Image.open(path)
        mode = src.mode
        if path.name in made:  # 16-bit: reference is the HF processor on our documented 8-bit conversion
            ref_img = Image.fromarray(to_u8_from_16(made[path.name]), "RGB")
        else:
            ref_img = src
        for s in sizes:
            pil_proc = SiglipImageProcessorPil(size={"height": s, "width": s}, resample=3,
                                               image_mean=[0.5] * 3, image_std=[0.5] * 3)
            tv_proc = SiglipImageProcessor(size={"height": s, "width": s}, resample=3,
                                           image_mean=[0.5] * 3, image_std=[0.5] * 3)
            pv, u8 = hf_u8(pil_proc, ref_img)
            assert np.abs(u8.transpose(2, 0, 1) / 127.5 - 1.0 - pv).max() < 1e-6
            _, tv_u8 = hf_u8(tv_proc, ref_img)
            tv_diff = int(np.abs(tv_u8.astype(int) - u8.astype(int)).max())
            rgb = np.asarray(ref_img.convert("RGB"))
            entry = {
                "image": key, "mode": mode, "width": src.width, "height": src.height, "size": s,
                "bicubic_pil": u8_record(u8),
                "torchvision_max_abs_diff_vs_pil": tv_diff,
            }
            if key.startswith("shared:") and s == 224:
                t = torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1)[None]
                bl = F.interpolate(t, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
                bl = bl[0].permute(1, 2, 0).numpy().astype(np.float64)
                idx = sample_idx(s)
                q = lambda a: np.clip(np.round(a * 100), 0, 25500).astype("<u2")
                entry["bilinear_aa"] = {
                    "sum": [float(v) for v in bl.reshape(-1, 3).sum(0)],
                    "rows_x100": b64(q(bl[idx])),
                }
            entries.append(entry)
            print(f"{key} {mode} {src.width}x{src.height} -> {s}: torchvision vs PIL max diff {tv_diff}")
    out = {
        "generator": "scripts/data/gen_preprocess_golden.py",
        "versions": {"transformers": __import__("transformers").__version__,
                     "pillow": Image.__version__, "torch": torch.__version__},
        "sample_rows_cols": "sorted unique [0, s/3, 2s/3, s-1]",
        "grid16": "cell edges round(i*s/16), mean per channel in u8 units, row-major, RGB interleaved",
        "entries": entries,
    }
    (FIX / "preprocess_golden.json").write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"wrote {len(entries)} entries")


if __name__ == "__main__":
    main()
