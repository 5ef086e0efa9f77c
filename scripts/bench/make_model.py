#!/usr/bin/env python3
"""Random-weight PaliGemma directories for `pgrs bench` (nothing is downloaded; nothing here is committed).

Called by the Rust benchmark (`pgrs bench train|generate|fullsize`), which caches the result under
`data/cache/bench/`; it can also be run by hand with the reference venv:

    V=~/.cache/paligemma-rs/torch-2.13.0/venv
    $V/bin/python scripts/bench/make_model.py midsize  --out data/cache/bench/midsize
    $V/bin/python scripts/bench/make_model.py midsize2 --out data/cache/bench/midsize2
    $V/bin/python scripts/bench/make_model.py fullsize --out data/cache/bench/pt224-random
    $V/bin/python scripts/bench/make_model.py siglip   --out data/cache/bench/siglip-so400m-random
    $V/bin/python scripts/bench/make_model.py gemma2b  --out data/cache/bench/gemma-2b-random

- `midsize`: PaliGemma-shaped and small enough for two CPU cores, keeping what dominates real fine-tuning cost:
  the real 257,216-token vocabulary (tied output head) and 256 image tokens (224 px, patch 14). SigLIP 256 wide x 4
  layers, Gemma 256 wide x 4 layers (4 query heads, 1 KV head of 64, MLP 2048). f32, seeded. Weights are drawn at unit
  fan-in scale (not HF's std 0.02) so greedy and beam outputs depend strongly on the input: near-tied logits would make
  "identical ids" a coin toss between two correct implementations.
- `midsize2`: the same shapes, seed and scales with a Gemma-2 decoder (PaliGemma 2): 4 query heads over 2 KV heads of
  64, `query_pre_attn_scalar` 64, attention-logit soft-capping 50, final-logit soft-capping 30 (PaliGemma 2's values),
  sliding window 128 on layers 0 and 2 (transformers' default sliding / full pattern), so the window cuts through the
  256 image tokens + text of every sequence; the post-attention and pre/post-feedforward norms are drawn like the
  other norms. transformers runs it with its eager attention (Gemma 2 has no SDPA path: SDPA would drop the capping).
- `fullsize`: the real paligemma-3b-pt-224 shapes (SigLIP so400m/14 + Gemma-2B, 2.92 B parameters) in bf16, written
  in 2 GB shards with `model.safetensors.index.json` under the hub names; `fullsize2` the same for
  paligemma2-3b-pt-224 (Gemma-2 2B decoder, 3.03 B parameters).
- `siglip`, `gemma2b`: standalone SigLIP so400m/14-224 (vision) and Gemma-2B (`GemmaForCausalLM`, 256,000 tokens)
  for the custom SigLIP + projector + Gemma composition, bf16.

Every directory gets `tokenizer.json`: the project's small test tokenizer (`data/fixtures/tokenizer.json`); the
configs point `image_token_index` at its `<image>` (206) and keep `<pad>/<eos>/<bos>` = 0/1/2 as PaliGemma does. The
benchmarks feed token ids directly, so only the special ids matter.
"""
import argparse
import json
import math
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import (GemmaConfig, GemmaForCausalLM, PaliGemmaConfig, PaliGemmaForConditionalGeneration,
                          SiglipVisionConfig, SiglipVisionModel)

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = ROOT / "data" / "fixtures" / "tokenizer.json"
IMAGE_TOKEN = 206
VOCAB = 257216


def paligemma_config(vision, text, text_type="gemma"):
    cfg = PaliGemmaConfig(vision_config=dict(model_type="siglip_vision_model", vision_use_head=False, **vision),
                          text_config=dict(model_type=text_type, vocab_size=VOCAB, **text),
                          image_token_index=IMAGE_TOKEN, vocab_size=VOCAB,
                          projection_dim=text["hidden_size"], hidden_size=text["hidden_size"])
    cfg.vision_config.projection_dim = text["hidden_size"]
    cfg.pad_token_id, cfg.eos_token_id, cfg.bos_token_id = 0, 1, 2
    cfg.text_config.pad_token_id, cfg.text_config.eos_token_id, cfg.text_config.bos_token_id = 0, 1, 2
    return cfg


MIDSIZE_VISION = dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                      image_size=224, patch_size=14)
MIDSIZE_TEXT = dict(hidden_size=256, intermediate_size=2048, num_hidden_layers=4, num_attention_heads=4,
                    num_key_value_heads=1, head_dim=64)
# PaliGemma 2's Gemma-2 settings at the mid-size scale (the released models: 8 heads over 4 KV heads of 256, scalar
# 256, capping 50 / 30, window 4096).
MIDSIZE2_TEXT = dict(MIDSIZE_TEXT, num_key_value_heads=2, query_pre_attn_scalar=64, attn_logit_softcapping=50.0,
                     final_logit_softcapping=30.0, sliding_window=128, hidden_activation="gelu_pytorch_tanh")


def midsize(out: Path, seed: int):
    write_midsize(out, seed, paligemma_config(vision=MIDSIZE_VISION, text=MIDSIZE_TEXT))


def midsize2(out: Path, seed: int):
    cfg = paligemma_config(vision=MIDSIZE_VISION, text=MIDSIZE2_TEXT, text_type="gemma2")
    types = cfg.text_config.layer_types
    assert types == ["sliding_attention", "full_attention"] * 2, types
    write_midsize(out, seed, cfg)


def write_midsize(out: Path, seed: int, cfg):
    torch.manual_seed(seed)
    model = PaliGemmaForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(torch.randn_like(p) * 0.1)
            elif n.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.1)
            elif "embed_tokens" in n:
                p.copy_(torch.randn_like(p) * 0.05)
            elif "position_embedding" in n:
                p.copy_(torch.randn_like(p) * 0.5)
            else:
                p.copy_(torch.randn_like(p) / math.sqrt(p[0].numel()))
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    shutil.copy(TOKENIZER, tmp / "tokenizer.json")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def hub_name(key):
    for new, old in [("model.vision_tower.", "vision_tower.vision_model."),
                     ("model.multi_modal_projector.", "multi_modal_projector."),
                     ("model.language_model.", "language_model.model.")]:
        if key.startswith(new):
            return old + key[len(new):]
    return None


def write_random(out: Path, shapes, config: dict, seed: int, shard_bytes=2 << 30):
    """Random bf16 tensors (std 0.02, norms at their neutral value) in shards, without ever holding them all."""
    gen = torch.Generator().manual_seed(seed)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shards, current, size = [], {}, 0
    for name, shape in shapes:
        if "norm" in name and name.endswith("weight"):
            # Gemma RMSNorm multiplies by (1 + w): 0 is neutral; SigLIP LayerNorm scales are 1.
            t = torch.zeros(shape, dtype=torch.bfloat16) if "language_model" in name or name.startswith(
                "model.") else torch.ones(shape, dtype=torch.bfloat16)
        elif name.endswith("bias"):
            t = torch.zeros(shape, dtype=torch.bfloat16)
        else:
            t = (torch.randn(shape, generator=gen) * 0.02).to(torch.bfloat16)
        current[name] = t
        size += t.numel() * 2
        if size >= shard_bytes:
            shards.append(current)
            current, size = {}, 0
    if current:
        shards.append(current)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, tmp / fname, metadata={"format": "pt"})
        for k, v in shard.items():
            weight_map[k] = fname
            total += v.numel() * 2
    (tmp / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    (tmp / "config.json").write_text(json.dumps(config, indent=1))
    shutil.copy(TOKENIZER, tmp / "tokenizer.json")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def meta_shapes(build):
    with torch.device("meta"):
        model = build()
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


SIGLIP_SO400M = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                     image_size=224, patch_size=14)
GEMMA_2B = dict(hidden_size=2048, intermediate_size=16384, num_hidden_layers=18, num_attention_heads=8,
                num_key_value_heads=1, head_dim=256)


def fullsize(out: Path, seed: int):
    cfg = paligemma_config(vision=SIGLIP_SO400M, text=GEMMA_2B)
    shapes = [(hub_name(k), s) for k, s in meta_shapes(lambda: PaliGemmaForConditionalGeneration(cfg))
              if hub_name(k) is not None]
    d = cfg.to_dict()
    d["dtype"] = "bfloat16"
    write_random(out, shapes, d, seed)


# PaliGemma 2 3B's decoder (Gemma-2 2B; transformers' convert_paligemma2_weights_to_hf.py), 257,216 rows.
GEMMA2_2B = dict(hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
                 num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256, attn_logit_softcapping=50.0,
                 final_logit_softcapping=30.0, sliding_window=4096, hidden_activation="gelu_pytorch_tanh")


def fullsize2(out: Path, seed: int):
    cfg = paligemma_config(vision=SIGLIP_SO400M, text=GEMMA2_2B, text_type="gemma2")
    shapes = [(hub_name(k), s) for k, s in meta_shapes(lambda: PaliGemmaForConditionalGeneration(cfg))
              if hub_name(k) is not None]
    d = cfg.to_dict()
    d["dtype"] = "bfloat16"
    write_random(out, shapes, d, seed)


def siglip(out: Path, seed: int):
    cfg = SiglipVisionConfig(**SIGLIP_SO400M, vision_use_head=False)
    shapes = [(k, s) for k, s in meta_shapes(lambda: SiglipVisionModel(cfg)) if "position_ids" not in k]
    d = cfg.to_dict()
    d["dtype"] = "bfloat16"
    write_random(out, shapes, d, seed)


def gemma2b(out: Path, seed: int):
    cfg = GemmaConfig(**GEMMA_2B, vocab_size=256000, pad_token_id=0, eos_token_id=1, bos_token_id=2)
    shapes = [(k, s) for k, s in meta_shapes(lambda: GemmaForCausalLM(cfg)) if k != "lm_head.weight"]
    d = cfg.to_dict()
    d["dtype"] = "bfloat16"
    write_random(out, shapes, d, seed)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["midsize", "midsize2", "fullsize", "fullsize2", "siglip", "gemma2b"])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    kinds = {"midsize": midsize, "midsize2": midsize2, "fullsize": fullsize, "fullsize2": fullsize2, "siglip": siglip,
             "gemma2b": gemma2b}
    kinds[a.kind](a.out, a.seed)
    print(a.out)


if __name__ == "__main__":
    main()
