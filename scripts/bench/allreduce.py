#!/usr/bin/env python3
"""The reference side of `pgrs bench ddp`'s all-reduce timings: PyTorch's own `torch.distributed.all_reduce` on the
gloo backend, one process per rank, started by the Rust orchestrator under torchrun's variables.

    RANK=0 LOCAL_RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 \
        python scripts/bench/allreduce.py --spec spec.json --out result.json     # and the same with RANK=1

The spec (`crates/bench/src/ddp.rs`, `ReduceSpec`) lists cases, each a list of f32 tensor sizes (the gradients of a
training case, or one tensor of a sweep size) and its number of timed repetitions. Every case is summed over the
ranks the way the Rust side's `ProcessGroup::all_reduce_sum_bucketed` does it, with the same buckets: consecutive
tensors packed into flat buffers of at most `bucket_bytes` (a tensor larger than that alone), one `all_reduce` per
bucket; a bucket of one tensor is reduced in place, otherwise its tensors are concatenated, reduced and copied back
(DistributedDataParallel's reducer does the same with its 25 MiB buckets). Each repetition starts after a barrier
and is timed on every rank; rank 0 writes its times. Every tensor starts at 1.0, so after k reductions its values
must be world**k: the orchestrator checks that before any time is reported.
"""
import argparse
import json
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist


def buckets(numels, bucket_bytes):
    """Indices grouped as `distributed::group::buckets` groups them (all tensors here are f32)."""
    out, size = [], 0
    for i, n in enumerate(numels):
        b = n * 4
        if out and size + b <= bucket_bytes:
            out[-1].append(i)
            size += b
        else:
            out.append([i])
            size = b
    return out


def reduce_bucketed(tensors, groups):
    for g in groups:
        if len(g) == 1:
            dist.all_reduce(tensors[g[0]])
            continue
        flat = torch.cat([tensors[i].reshape(-1) for i in g])
        dist.all_reduce(flat)
        offset = 0
        for i in g:
            n = tensors[i].numel()
            tensors[i].copy_(flat[offset:offset + n].view_as(tensors[i]))
            offset += n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    spec = json.loads(Path(args.spec).read_text())
    torch.set_num_threads(spec["threads"])
    dist.init_process_group("gloo", timeout=timedelta(seconds=300))
    rank, world = dist.get_rank(), dist.get_world_size()
    results = []
    for case in spec["cases"]:
        tensors = [torch.ones(n, dtype=torch.float32) for n in case["numels"]]
        groups = buckets(case["numels"], spec["bucket_bytes"])
        times = []
        for i in range(spec["warmup"] + case["reps"]):
            dist.barrier()
            t = time.perf_counter()
            reduce_bucketed(tensors, groups)
            dt = time.perf_counter() - t
            if i >= spec["warmup"]:
                times.append(dt)
        results.append({
            "label": case["label"],
            "times_s": times,
            "buckets": len(groups),
            "first": float(tensors[0].reshape(-1)[0]),
            "last": float(tensors[-1].reshape(-1)[-1]),
        })
        del tensors
    if rank == 0:
        out = {"side": "torch", "world": world, "versions": {"torch": torch.__version__}, "cases": results}
        Path(args.out).write_text(json.dumps(out))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
