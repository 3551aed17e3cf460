"""Why batched decoding did (not) pay on a CPU: one decode step at batch 1, 4 and 8, timed and profiled.

    python bench/profile_decode.py                 # step times, nn.Linear vs SkinnyLinear, interleaved
    python bench/profile_decode.py --profile       # plus torch.profiler's top operators per batch size

Builds the LLM of a full-width Vary-toy (random weights, `--layers` decoder layers; the vision towers
are not needed for decoding), prefills `--prompt` tokens and times decode steps as the engine (engine/batcher.py) runs
them (mask, positions, forward, argmax, .tolist()). Both linear paths run in the same process, round
by round, so a shared machine's noise hits them alike; medians are reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vary_cli.models.config import PRESETS  # noqa: E402
from vary_cli.models.vary_qwen import SkinnyLinear, VaryQwenForCausalLM, attention_bias  # noqa: E402


def build(layers: int) -> VaryQwenForCausalLM:
    config = PRESETS["vary-toy"]
    config = replace(config, lm=replace(config.lm, num_layers=layers))
    with torch.device("meta"):
        model = VaryQwenForCausalLM(config)
    generator = torch.Generator().manual_seed(0)
    for part in (model.embed_tokens, model.layers, model.norm, model.lm_head):
        part.to_empty(device="cpu")
        for parameter in part.parameters():
            parameter.data.normal_(0, 0.02, generator=generator)
    return model.eval()


def set_linear(model: nn.Module, cls: type) -> None:
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.__class__ = cls


def prefill(model, batch: int, prompt: int, steps: int):
    cache = model.new_cache(batch, prompt + steps + 1)
    pad = torch.zeros(batch, dtype=torch.long)
    embeds = torch.randn(batch, prompt, model.config.lm.hidden_size) * 0.02
    positions = torch.arange(prompt)[None].expand(batch, prompt)
    last = torch.zeros(batch, prompt, dtype=torch.bool)
    last[:, -1] = True
    model(embeds, positions, attention_bias(pad, 0, prompt, prompt, torch.float32), [1.0] * batch, cache,
          read_at=last)
    return cache, pad


def decode_step(model, cache, pad, prompt: int, step: int) -> list[int]:
    batch = pad.shape[0]
    tokens = torch.randint(0, 1000, (batch, 1))
    key_len = prompt + step + 1
    bias = attention_bias(pad, key_len - 1, 1, key_len, torch.float32)
    logits = model(model.embed(tokens, None), (key_len - 1 - pad)[:, None], bias, [1.0] * batch, cache)
    return logits[:, -1].argmax(-1).tolist()


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--prompt", type=int, default=300)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    model = build(args.layers)
    paths = {"nn.Linear": nn.Linear, "SkinnyLinear": SkinnyLinear}
    caches = {(name, b): None for name in paths for b in args.batch}
    times: dict[tuple[str, int], list[float]] = {key: [] for key in caches}
    for name, cls in paths.items():
        set_linear(model, cls)
        for b in args.batch:
            caches[(name, b)] = prefill(model, b, args.prompt, args.steps)
    for step in range(args.steps):  # round-robin: every path and batch size sees the same noise
        for (name, b), (cache, pad) in caches.items():
            set_linear(model, paths[name])
            started = time.perf_counter()
            decode_step(model, cache, pad, args.prompt, step)
            times[(name, b)].append(time.perf_counter() - started)
    for (name, b), t in times.items():
        median = statistics.median(t[1:])
        print(json.dumps({"linear": name, "batch": b, "layers": args.layers, "step_ms": round(median * 1e3, 1),
                          "ms_per_row": round(median * 1e3 / b, 1)}), flush=True)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for name, cls in paths.items():
            set_linear(model, cls)
            for b in args.batch:
                cache, pad = prefill(model, b, args.prompt, 4)
                with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                    for step in range(3):
                        decode_step(model, cache, pad, args.prompt, step)
                print(f"== {name}, batch {b}, 3 decode steps")
                print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


if __name__ == "__main__":
    main()
