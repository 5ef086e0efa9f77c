#!/usr/bin/env python3
"""The reference side of `pgrs bench`: one benchmark case with transformers + PEFT, in its own process.

    python scripts/bench/hf_worker.py --spec spec.json --out result.json

The Rust orchestrator (`crates/bench/src/`) writes the spec and runs this script and the Rust worker
(`pgrs bench worker`, same spec) one after the other, alternating which goes first, so that each side's peak
memory is the peak RSS of its own process. Both read the same weights directory, the same batch
(`inputs.safetensors`: token ids, segment ids, labels, pixels) and the same initial trainables (`init.safetensors`:
LoRA A/B, soft-prompt vectors), so their losses and generated ids must agree before any timing is trusted.

What the reference runs, as a user of the Python stack would:
- model: `PaliGemmaForConditionalGeneration.from_pretrained(dir, dtype=...)`, `model.train()`, `use_cache=False`;
  PaliGemma 2 (a Gemma-2 text config) is checked to run transformers' eager attention, the path that soft-caps;
  activation checkpointing through `activation_checkpointing_enable()` (non-reentrant, every decoder/encoder layer);
- `lora`: `peft.get_peft_model` with `LoraConfig(r, lora_alpha, lora_dropout=0, target_modules=<Gemma q/k/v/o>)`
  (PEFT keeps the adapters in f32 over a bf16 base by default, as this project does);
- `hard_prompt`: `requires_grad` only on Gemma's q/k/v/o weights (in the model's dtype, as transformers trains them);
- `soft_prompt`: an f32 `nn.Parameter` of 10 vectors written into the soft-prompt slots (after the image tokens) by a
  forward hook on the scaled token embedding. PEFT's `PromptTuningConfig` would put the vectors before the image
  tokens, a different model whose loss cannot be compared; the hook is the same work at the same place;
- loss: transformers' own (`labels=`), i.e. logits over every position, then the shifted cross-entropy;
- update: `clip_grad_norm_` then `torch.optim.AdamW` (weight decay 0), `zero_grad()`;
- generation: `model.generate(do_sample=False, num_beams=k, max_new_tokens=n)` on the left-padded prompts.

Memory: `VmHWM` from /proc/self/status; the high-water mark is reset (`/proc/self/clear_refs` = 5) once the model
is loaded, so `peak_rss` is the peak while training or generating (weights included) and `peak_rss_total` the peak
of the whole process, loading included.
"""
import argparse
import json
import re
import sys
import time
from pathlib import Path

SEG_PAD, SEG_IMAGE, SEG_SOFT, SEG_PREFIX, SEG_SUFFIX = 0, 1, 2, 3, 4


def status_kib(field):
    text = Path("/proc/self/status").read_text()
    m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) * 1024 if m else 0


def reset_peak():
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    spec = json.loads(Path(args.spec).read_text())
    rss_start = status_kib("VmRSS")

    import torch
    torch.set_num_threads(spec["threads"])
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    import transformers
    import peft
    from safetensors.torch import load_file
    from transformers import PaliGemmaForConditionalGeneration

    device = torch.device(spec.get("device", "cpu"))
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[spec["dtype"]]

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    rss_baseline = status_kib("VmRSS")
    t0 = time.perf_counter()
    model = PaliGemmaForConditionalGeneration.from_pretrained(spec["model_dir"], dtype=dtype).to(device)
    inputs = {k: v.to(device) for k, v in load_file(spec["inputs"]).items()}
    init = load_file(spec["init"]) if spec.get("init") else {}
    result = {
        "side": "hf",
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "transformers": transformers.__version__, "peft": peft.__version__,
                     "text_attention": check_attention(model)},
        "threads": torch.get_num_threads(),
    }

    if spec["task"] == "train":
        model, params = prepare_training(model, spec, init, inputs, device)
        result["trainable_params"] = sum(p.numel() for p in params)
    else:
        model.eval()
    load_s = time.perf_counter() - t0
    rss_loaded = status_kib("VmRSS")
    peak_load = status_kib("VmHWM")
    sampler = GpuSampler() if device.type == "cuda" else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result["peak_reset"] = reset_peak()

    if spec["task"] == "train":
        run_train(model, params, spec, inputs, sync, result)
    else:
        run_generate(model, spec, inputs, sync, result)

    result.update(load_s=load_s, rss_start=rss_start, rss_baseline=rss_baseline, rss_loaded=rss_loaded,
                  peak_rss=status_kib("VmHWM"), peak_rss_total=max(peak_load, status_kib("VmHWM")))
    if sampler is not None:
        result["peak_device_bytes"] = sampler.finish()
        result["peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
    tmp = Path(args.out + ".tmp")
    tmp.write_text(json.dumps(result))
    tmp.rename(args.out)


def check_attention(model):
    """The attention implementation the language model runs with; Gemma 2 (PaliGemma 2) must run the eager one, the
    only one of transformers' CPU paths that applies the attention-logit soft-capping (`_supports_sdpa = False`)."""
    text = model.config.get_text_config()
    impl = text._attn_implementation
    if text.model_type == "gemma2":
        assert impl == "eager", f"transformers runs Gemma 2 attention with {impl}, which may skip soft-capping"
    return impl


class GpuSampler:
    """Peak GPU memory of this process from nvidia-smi every 100 ms, as the Rust worker samples it (CUDA context and
    allocator cache included, so both sides' figures mean the same thing)."""

    def __init__(self):
        import os
        import subprocess
        import threading

        self.peak, self.stop = 0, threading.Event()
        pid = os.getpid()

        def loop():
            while not self.stop.is_set():
                try:
                    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                                          "--format=csv,noheader,nounits"], capture_output=True, text=True).stdout
                    for line in out.splitlines():
                        p, m = (x.strip() for x in line.split(","))
                        if int(p) == pid:
                            self.peak = max(self.peak, int(m))
                except (OSError, ValueError):
                    pass
                self.stop.wait(0.1)

        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()

    def finish(self):
        self.stop.set()
        self.thread.join()
        return self.peak * (1 << 20) if self.peak else None


def module_5x(name):
    """Our module name (hub layout) -> transformers 5.x module name."""
    for ours, theirs in [("vision_tower.vision_model.", "model.vision_tower."),
                         ("language_model.model.", "model.language_model.")]:
        if name.startswith(ours):
            return theirs + name[len(ours):]
    return "model." + name


def prepare_training(model, spec, init, inputs, device):
    import torch

    for p in model.parameters():
        p.requires_grad_(False)
    if spec["checkpointing"]:
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
    strategy = spec["strategy"]
    if strategy == "lora":
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(r=spec["lora_r"], lora_alpha=spec["lora_alpha"], lora_dropout=0.0,
                         target_modules=r"model\.language_model\.layers\.\d+\.self_attn\.(q|k|v|o)_proj")
        model = get_peft_model(model, cfg)
        named = dict(model.named_parameters())
        loaded = 0
        with torch.no_grad():
            for key, value in init.items():
                module, half = re.match(r"(.*)\.(lora_A|lora_B)\.weight$", key).groups()
                target = named[f"base_model.model.{module_5x(module)}.{half}.default.weight"]
                assert target.shape == value.shape, (key, target.shape, value.shape)
                target.copy_(value)
                loaded += 1
        trainable = [p for p in model.parameters() if p.requires_grad]
        assert loaded == len(trainable), f"init has {loaded} LoRA tensors, the PEFT model {len(trainable)}"
    elif strategy == "hard_prompt":
        pat = re.compile(r"model\.language_model\.layers\.\d+\.self_attn\.")
        for n, p in model.named_parameters():
            if pat.match(n):
                p.requires_grad_(True)
    elif strategy == "soft_prompt":
        soft = torch.nn.Parameter(init["soft_prompt.weight"].to(device=device, dtype=torch.float32))
        slots = (inputs["segments"] == SEG_SOFT).unsqueeze(-1)
        embed = model.get_input_embeddings()

        def place(_module, _args, out):
            # Only the training forward covers the whole sequence; anything else is left alone.
            if out.shape[:2] != slots.shape[:2]:
                return out
            values = soft.to(out.dtype).unsqueeze(0).expand(out.shape[0], -1, -1)
            return out.masked_scatter(slots, values)

        embed.register_forward_hook(place)
        model.soft_prompt = soft
    else:
        raise SystemExit(f"unknown strategy {strategy}")
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    return model, params


def train_inputs(inputs):
    seg = inputs["segments"]
    return dict(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"],
                attention_mask=(seg != SEG_PAD).long(), token_type_ids=(seg == SEG_SUFFIX).long(),
                labels=inputs["labels"], use_cache=False)


def run_train(model, params, spec, inputs, sync, result):
    import torch

    kw = train_inputs(inputs)
    opt = torch.optim.AdamW(params, lr=spec["lr"], betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    losses, times = [], []
    profile = Profile(model) if spec.get("profile") else None
    for i in range(spec["warmup"] + spec["steps"]):
        sync()
        t0 = time.perf_counter()
        if profile:
            profile.mark("start")
        loss = model(**kw).loss
        if profile:
            profile.mark("forward")
        loss.backward()
        sync()
        if profile:
            profile.mark("backward")
        if spec.get("max_grad_norm"):
            torch.nn.utils.clip_grad_norm_(params, spec["max_grad_norm"])
        opt.step()
        opt.zero_grad()
        sync()
        if profile:
            profile.mark("optimizer")
        dt = time.perf_counter() - t0
        losses.append(loss.item())
        if i >= spec["warmup"]:
            times.append(dt)
            if profile:
                profile.commit()
    result["losses"] = losses
    result["step_s"] = times
    if profile:
        result["profile"] = profile.summary()


def time_blocks(blocks, add):
    """Forward hooks on each block's modules that call `add(name, seconds)` after every forward."""
    started = {}

    def pre(name):
        def f(*_):
            started[name] = time.perf_counter()
        return f

    def post(name):
        def f(*_):
            if name in started:
                add(name, time.perf_counter() - started.pop(name))
        return f

    for name, mods in blocks:
        for m in mods:
            m.register_forward_pre_hook(pre(name))
            m.register_forward_hook(post(name))


class Profile:
    """Wall time by block from forward hooks (forward pass) and marks (backward, optimizer), averaged over steps."""

    def __init__(self, model):
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        inner = base.model
        self.blocks = [("vision tower + projector", [inner.vision_tower, inner.multi_modal_projector]),
                       ("embeddings", [inner.language_model.embed_tokens])]
        self.blocks += [(f"decoder layer {i}", [l]) for i, l in enumerate(inner.language_model.layers)]
        self.blocks += [("final norm", [inner.language_model.norm]), ("output head (every position)", [base.lm_head])]
        self.acc, self.cur, self.n, self.last = {}, {}, 0, None
        time_blocks(self.blocks, lambda name, dt: self.cur.__setitem__(name, self.cur.get(name, 0.0) + dt))

    def mark(self, what):
        now = time.perf_counter()
        if what == "start":
            self.cur, self.last = {}, now
            return
        span = now - self.last
        self.last = now
        if what == "forward":
            inside = sum(self.cur.values())
            self.cur["loss (shift + f32 cross-entropy) and glue"] = span - inside
        else:
            self.cur[what] = span

    def commit(self):
        for k, v in self.cur.items():
            self.acc[k] = self.acc.get(k, 0.0) + v
        self.n += 1

    def summary(self):
        return [[k, v / max(self.n, 1)] for k, v in self.acc.items()]


def run_generate(model, spec, inputs, sync, result):
    import torch

    seg = inputs["segments"]
    dtype = next(model.parameters()).dtype
    kw = dict(input_ids=inputs["input_ids"], attention_mask=(seg != SEG_PAD).long(),
              token_type_ids=torch.zeros_like(seg), pixel_values=inputs["pixel_values"].to(dtype),
              do_sample=False, num_beams=spec["num_beams"])
    prompt_len = inputs["input_ids"].shape[1]
    eos = model.config.eos_token_id

    def ids_of(out):
        rows = []
        for row in out[:, prompt_len:].tolist():
            rows.append(row[: row.index(eos) + 1] if eos in row else row)
        return rows

    gen_s, ttft_s, ids = [], [], None
    with torch.no_grad():
        for i in range(spec["warmup"] + spec["steps"]):
            sync()
            t0 = time.perf_counter()
            out = model.generate(**kw, max_new_tokens=spec["max_new_tokens"])
            sync()
            t1 = time.perf_counter()
            model.generate(**kw, max_new_tokens=1)
            sync()
            t2 = time.perf_counter()
            if ids is None:
                ids = ids_of(out)
            if i >= spec["warmup"]:
                gen_s.append(t1 - t0)
                ttft_s.append(t2 - t1)
        if spec.get("profile"):
            # After the timed calls, so the hooks never touch the timings above.
            prof = GenerateProfile(model)
            for _ in range(max(spec["steps"], 1)):
                prof.call(lambda: model.generate(**kw, max_new_tokens=spec["max_new_tokens"]), sync)
            result["profile"] = prof.summary()
    result.update(ids=ids, gen_s=gen_s, ttft_s=ttft_s)


class GenerateProfile:
    """Wall time of one `generate` call by block, from forward hooks; the block names are those of
    `paligemma::generate_profiled`, so the two profiles line up row by row."""

    def __init__(self, model):
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        inner = base.model
        blocks = [("vision tower + projector", [inner.vision_tower, inner.multi_modal_projector]),
                  ("embeddings", [inner.language_model.embed_tokens]),
                  ("decoder stack (layers, final norm)", [inner.language_model]),
                  ("output head", [base.lm_head])]
        self.order = [name for name, _ in blocks] + [REST]
        self.acc, self.n = {}, 0
        time_blocks(blocks, lambda name, dt: self.acc.__setitem__(name, self.acc.get(name, 0.0) + dt))

    def call(self, fn, sync):
        hooked = lambda: sum(v for k, v in self.acc.items() if k != REST)
        before = hooked()
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        total = time.perf_counter() - t0
        # PaliGemmaModel embeds the ids itself and hands `inputs_embeds` to the language model, so the hooked blocks
        # never nest and their sum is time inside them; the rest is generate's own loop.
        self.acc[REST] = self.acc.get(REST, 0.0) + total - (hooked() - before)
        self.n += 1

    def summary(self):
        return [[k, self.acc.get(k, 0.0) / max(self.n, 1)] for k in self.order]


REST = "rest of generate (masks, merge, selection, cache, glue)"


if __name__ == "__main__":
    main()
