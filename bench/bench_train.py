"""Training-step benchmark: samples/s and peak memory of `vary train`'s step at Vary-toy size.

Builds the Vary-toy architecture (CLIP-L + SAM-B vocabulary + Qwen-1.8B; `--layers` to shrink the LLM
when memory is short) with random weights, one synthetic batch (an image and an answer making
`--seq` tokens in all), and times `--steps` optimizer steps of the real training code (train/loop.py:
freezing, AdamW groups, batch_loss, clipping), with and without gradient checkpointing, each mode in
its own process so the peak-memory numbers do not mix. CPU peak = the process's max RSS; CUDA peak =
torch.cuda.max_memory_allocated.

    python bench/bench_train.py --layers 24 --seq 1024 --steps 2            # both modes, ~35 GiB
    python bench/bench_train.py --layers 4 --vocab 32000 --seq 512          # fits a 16 GiB machine
    python bench/bench_train.py --device cuda --dtype bf16 --batch-size 4 --seq 4096
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def one_mode(args: argparse.Namespace) -> dict:
    import torch

    from vary_cli.models.config import preset
    from vary_cli.train.dataset import IGNORE_INDEX
    from vary_cli.models.vary_qwen import VaryQwenForCausalLM
    from vary_cli.train.loop import enable_gradient_checkpointing, parameter_groups
    from vary_cli.train.qwen import batch_loss, set_trainable

    torch.manual_seed(0)
    device = torch.device(args.device)
    base = preset("vary-toy")
    lm = dataclasses.replace(base.lm, num_layers=args.layers, vocab_size=args.vocab or base.lm.vocab_size)
    ids_special = {k: min(getattr(base, k), lm.vocab_size - 3 + i)
                   for i, k in enumerate(("im_start_token", "im_end_token", "im_patch_token"))}
    config = dataclasses.replace(base, lm=lm, **ids_special)
    started = time.perf_counter()
    with device:
        model = VaryQwenForCausalLM(config)
    build_s = time.perf_counter() - started
    model.vision_tower.embeddings.register_buffer(
        "position_ids", torch.arange(config.clip.num_patches + 1, device=device)[None], persistent=False)
    model.train()
    set_trainable(model, freeze_lm=False)
    model.qwen2_config._attn_implementation = "sdpa"
    if args.checkpointing:
        enable_gradient_checkpointing(model.layers)
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.0), lr=1e-5)

    # <|im_start|>system... is irrelevant to speed: <img> 256 x <imgpad> </img>, then random answer tokens.
    n_image = config.image_token_len + 2
    prefix = 20
    answer = args.seq - prefix - n_image
    row = ([0] * prefix + [config.im_start_token] + [config.im_patch_token] * config.image_token_len
           + [config.im_end_token] + torch.randint(0, config.lm.vocab_size - 3, (answer,)).tolist())
    ids = torch.tensor([row] * args.batch_size, device=device)  # (B, T)
    labels = ids.clone()
    labels[:, :prefix + n_image] = IGNORE_INDEX
    clip = torch.randn(args.batch_size, 3, 224, 224, device=device)
    sam = torch.randn(args.batch_size, 3, 1024, 1024, device=device)
    amp = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]

    times = []
    for _ in range(args.steps):
        tick = time.perf_counter()
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            total, count = batch_loss(model, ids, labels, clip, sam)
        (total / count).backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - tick)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    full = full_size_state_gib()
    # The first step includes one-off costs (allocation, kernel selection); report it and the rest apart.
    steady = times[1:] or times
    return {"device": args.device, "dtype": args.dtype, "llm_layers": args.layers, "batch_size": args.batch_size,
            "seq": args.seq, "gradient_checkpointing": args.checkpointing, "params_m": round(params / 1e6, 1),
            "trainable_m": round(trainable / 1e6, 1), "build_s": round(build_s, 1),
            "step_s": [round(t, 2) for t in times],
            "samples_per_s": round(args.batch_size / (sum(steady) / len(steady)), 4),
            "peak_memory_gib": round(peak, 2), "threads": torch.get_num_threads(),
            "full_vary_toy_weights_grads_adam_gib": full}


def full_size_state_gib() -> float:
    """Weights (fp32) + gradients + AdamW's two moments of the full Vary-toy, computed on the meta device:
    4 bytes per frozen parameter, 16 per trainable one. Activations come on top."""
    import torch

    from vary_cli.models.config import preset
    from vary_cli.models.vary_qwen import VaryQwenForCausalLM
    from vary_cli.train.qwen import set_trainable

    with torch.device("meta"):
        model = VaryQwenForCausalLM(preset("vary-toy"))
    set_trainable(model, freeze_lm=False)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return round((4 * frozen + 16 * trainable) / 2**30, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--layers", type=int, default=24, help="Qwen layers (Vary-toy: 24)")
    parser.add_argument("--vocab", type=int, default=0, help="LLM vocabulary (0: Vary-toy's 151936)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seq", type=int, default=1024, help="tokens per sample, image tokens included")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--mode", choices=["both", "on", "off"], default="both",
                        help="gradient checkpointing on, off, or both (each in its own process)")
    parser.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_mode(args)))
        return
    modes = {"both": [False, True], "on": [True], "off": [False]}[args.mode]
    for checkpointing in modes:
        command = [sys.executable, __file__, "--child", "--device", args.device, "--dtype", args.dtype,
                   "--layers", str(args.layers), "--vocab", str(args.vocab), "--batch-size", str(args.batch_size), "--seq", str(args.seq),
                   "--steps", str(args.steps)] + (["--checkpointing"] if checkpointing else [])
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            print(json.dumps({"gradient_checkpointing": checkpointing, "error": done.stderr.strip()[-500:]}))
        else:
            print(done.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
