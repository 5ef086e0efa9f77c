#!/usr/bin/env bash
# Train and generate benchmarks on one CUDA GPU in bf16, against transformers + PEFT in the same run.
#
#   scripts/gpu-bench.sh                 # about 5-7 minutes on one recent GPU (A100/H100 class), both sides
#   scripts/gpu-bench.sh --only lora     # extra flags go to both benchmarks
#   scripts/gpu-bench.sh --model midsize2   # the same on the mid-size PaliGemma 2 (Gemma-2 decoder)
#
# Needs: an NVIDIA driver (nvidia-smi), the CUDA build of torch 2.13 in the venv that `cargo xtask setup` makes (the
# default PyPI wheel is), and `pip install transformers==5.23.0 peft==0.21.2` in that venv. Results are printed and
# appended to docs/benchmarks.md with the GPU's name. Peak memory on CUDA is each process's GPU memory sampled from
# nvidia-smi (CUDA context and allocator cache included, the same way for both sides).
#
# Budget: the train grid in bf16 is 12 cases (3 strategies x batch 1/8 x checkpointing off/on), 2 rounds x
# (1 warm-up + 5 timed steps) per side; generate is 4 cases (greedy/beam-3 x batch 1/8), 2 rounds x (1 warm-up + 3
# calls). Most of the wall time is process start-up and model loading (~5-10 s per process on the Python side).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v nvidia-smi >/dev/null || { echo "gpu-bench: nvidia-smi not found: no NVIDIA GPU here" >&2; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

export PALIGEMMA_PROFILE="${PALIGEMMA_PROFILE:-release}"
# Build and check first (not part of the 8-minute budget: a fresh release build takes a while).
cargo xtask doctor
start=$(date +%s)
timeout 330 cargo xtask bench train --device cuda --dtypes bf16 --rounds 2 --steps 5 "$@"
timeout 150 cargo xtask bench generate --device cuda --dtype bf16 --rounds 2 --steps 3 "$@"
echo "gpu-bench: done in $(( $(date +%s) - start )) s"
