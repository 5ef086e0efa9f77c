#!/usr/bin/env python3
"""Parquet fixtures for the HF-export reader (crates/rsicd-data/tests/formats.rs). Run by hand from the repo root:

    ~/.cache/paligemma-rs/torch-2.13.0/venv/bin/python scripts/data/gen_format_fixtures.py

Needs pyarrow and Pillow. Writes crates/rsicd-data/tests/fixtures/hf_parquet/: a two-split export in the layout
of the Hugging Face RSICD dataset (`data/{train,valid}-00000-of-00001.parquet`, columns filename: string,
captions: list<string>, image: struct<bytes: binary, path: string>, snappy), plus broken files next to it:
`bad/missing_captions.parquet` (no captions column) and `bad/captions_as_string.parquet` (wrong type).
"""
import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

OUT = Path(__file__).resolve().parents[2] / "crates" / "rsicd-data" / "tests" / "fixtures" / "hf_parquet"

IMAGE_T = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def png(seed, w=12, h=10):
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB").save(buf, "PNG")
    return buf.getvalue()


def table(rows):
    return pa.table({
        "filename": pa.array([r[0] for r in rows], pa.string()),
        "captions": pa.array([r[1] for r in rows], pa.list_(pa.string())),
        "image": pa.array([{"bytes": png(i), "path": r[0]} for i, r in enumerate(rows)], IMAGE_T),
    })


def main():
    (OUT / "data").mkdir(parents=True, exist_ok=True)
    (OUT / "bad").mkdir(parents=True, exist_ok=True)
    train = [
        ("airport_1.jpg", ["many planes are parked next to a long building in an airport .",
                           "many planes are parked next to a long building in an airport .",
                           "many planes are parked next to a long building in an airport .",
                           "many planes are parked next to a long building in an airport .",
                           "many planes are parked next to a long building in an airport ."]),
        ("beach_7.jpg", ["yellow beach is near a piece of green ocean .", "a beach with white waves .",
                         "waves lap the yellow beach .", "the sea is green and the beach is yellow .",
                         "a yellow beach lies beside a green sea ."]),
    ]
    valid = [("river_3.jpg", ["a river passes through the forest .", "a curved river with trees on both sides .",
                              "a river is surrounded by green trees .", "a winding river .",
                              "some green trees are on both sides of a river ."])]
    pq.write_table(table(train), OUT / "data" / "train-00000-of-00001.parquet", compression="snappy")
    pq.write_table(table(valid), OUT / "data" / "valid-00000-of-00001.parquet", compression="snappy")
    t = table(train).drop_columns(["captions"])
    pq.write_table(t, OUT / "bad" / "missing_captions.parquet")
    t = table(train).set_column(1, "captions", pa.array([c[0] for _, c in train], pa.string()))
    pq.write_table(t, OUT / "bad" / "captions_as_string.parquet")
    for p in sorted(OUT.rglob("*.parquet")):
        print(p.relative_to(OUT), p.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
