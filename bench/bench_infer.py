"""Inference benchmark on random weights at real Vary shapes: load, vision encode, prefill, decode, pages/s.

    python bench/bench_infer.py                        # full-size Vary-toy on the CPU
    python bench/bench_infer.py --layers 2 --batch 1 4 8 --pages 8   # full width, few layers: batching
    python bench/bench_infer.py --device cuda --dtype bf16
    python bench/bench_infer.py --layers 2 --mixed 16 --batch 4 8 --length-scale 0.1   # static vs continuous

It writes a release-layout checkpoint of seeded random weights (original key names, sharded
safetensors) to a temporary directory, loads it through `vary_cli.models.checkpoint.load_directory` (the path a
user's download takes) and times each stage. Peak host memory is the process's max RSS. Nothing is
downloaded. Results print as one JSON object per measurement.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from vary_cli.models.checkpoint import build_on_meta, load_directory  # noqa: E402
from vary_cli.engine.config import GenerationConfig  # noqa: E402
from vary_cli.models.config import PRESETS  # noqa: E402
from vary_cli.weights.device import resolve_device, resolve_dtype  # noqa: E402
from vary_cli.engine.batcher import Engine  # noqa: E402
from vary_cli.engine.requests import PageRequest  # noqa: E402


def generate(loaded, features, gen):
    """Decode every page of `features` (B, N, W) together, as one batch of the engine."""
    ids = loaded.prompt_ids("ocr" if loaded.is_tiny else "markdown")
    engine = Engine(loaded.model, torch.cat, gen, loaded.stop_ids, features.shape[0])
    outcomes = list(engine.run(PageRequest(i, features[i:i + 1], ids) for i in range(features.shape[0])))
    return [o.generation for o in outcomes]


def max_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def write_random_release(directory: Path, config, shards: int, trainable: bool = False) -> None:
    """Random weights in the release layout, written by the library's own `export.save_release`.

    Vary-toy/base get the real Qwen vocabulary (it ships in the dashscope package); Vary-tiny gets the
    tests' small GPT-2-style tokenizer, its image-token ids written into the config (the embedding keeps
    OPT-125M's 50272 rows, so the model computes at full size). Every tensor is N(0, 0.02). With
    `trainable` (bench/make_readers.py trains from it), norm weights are 1 and biases 0, as a model is
    initialised before training (with norm weights near 0 the loss barely moves), and the token
    embeddings N(0, 0.2): at 0.02 the token signal is small beside what the layers add to the residual
    stream, and memorizing a page from scratch took several times the steps (loss 1.17 vs 0.18 after 60).
    """
    import dashscope
    import tiny_opt

    from vary_cli.models.config import VaryTinyConfig
    from vary_cli.models.export import save_release

    model = build_on_meta(config)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    del model
    generator = torch.Generator().manual_seed(0)
    weights = {k: torch.randn(shape, generator=generator) * 0.02 for k, shape in shapes.items()}
    if trainable:
        for key, tensor in weights.items():
            if key.endswith("bias"):
                tensor.zero_()
            elif "norm" in key and key.endswith("weight"):  # RMSNorm, LayerNorm (CLIP's "layrnorm" too)
                tensor.fill_(1.0)
            elif key == "embed_tokens.weight":
                tensor.mul_(10.0)
    if isinstance(config, VaryTinyConfig):
        with tempfile.TemporaryDirectory() as tmp:
            ids = tiny_opt.write_tokenizer(Path(tmp))
            files = {f.name: f.read_bytes() for f in Path(tmp).iterdir()}
        config = replace(config, im_patch_token=ids["<imgpad>"], im_start_token=ids["<img>"],
                         im_end_token=ids["</img>"])
    else:
        files = {"qwen.tiktoken": (Path(dashscope.__file__).parent / "resources" / "qwen.tiktoken").read_bytes()}
    total = sum(t.numel() * t.element_size() for t in weights.values())
    save_release(directory, weights, config, files, max_shard_bytes=total // shards + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vary-toy", choices=sorted(PRESETS))
    parser.add_argument("--layers", type=int, default=0, help="LLM layers (0: the preset's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--batch", type=int, nargs="+", default=[1])
    parser.add_argument("--pages", type=int, default=0, help="pages per batch-size run (0: one batch)")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--vision-batch", type=int, nargs="+", default=[0],
                        help="pages per vision-tower pass (0: the library's default); several values compare")
    parser.add_argument("--checkpoint", type=Path, help="benchmark this directory (default: write a random one)")
    parser.add_argument("--mixed", type=int, default=0,
                        help="pages of mixed lengths: static vs continuous batching at each --batch (0: off)")
    parser.add_argument("--length-scale", type=float, default=1.0,
                        help="scale the drawn page lengths (50-1500 tokens) down to fit a slow machine")
    parser.add_argument("--rounds", type=int, default=1, help="--mixed: rounds of static and continuous, interleaved")
    parser.add_argument("--real-vision", action="store_true",
                        help="--mixed: encode every page (default: encode one, reuse its features)")
    args = parser.parse_args()
    if args.checkpoint is None:
        # Write in this process, measure in a fresh one, so writing does not inflate the peak RSS of loading.
        import subprocess

        config = PRESETS[args.arch]
        if args.layers:
            config = replace(config, lm=replace(config.lm, num_layers=args.layers))
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp) / args.arch
            started = time.perf_counter()
            write_random_release(directory, config, args.shards)
            print(json.dumps({"stage": "write_checkpoint", "seconds": round(time.perf_counter() - started, 2)}),
                  flush=True)
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--checkpoint", str(directory)], check=True)
        return

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    started = time.perf_counter()
    loaded = load_directory(args.checkpoint, device, dtype)
    config = loaded.config
    n_params = sum(p.numel() for p in loaded.model.parameters())
    shard = max((f.stat().st_size for f in args.checkpoint.glob("*.safetensors")), default=0) / 2**30
    print(json.dumps({"stage": "load", "seconds": round(time.perf_counter() - started, 2),
                      "params_billion": round(n_params / 1e9, 3),
                      "model_gib": round(n_params * torch.finfo(dtype).bits / 8 / 2**30, 2),
                      "largest_shard_gib": round(shard, 2), "max_rss_gib": round(max_rss_gib(), 2)}), flush=True)

    from PIL import Image

    page = Image.new("RGB", (1240, 1754), "white")
    if args.mixed:
        bench_mixed(loaded, page, args)
        return
    prompt = "ocr" if loaded.is_tiny else "markdown"
    ids = loaded.prompt_ids(prompt)
    gen = GenerationConfig(max_new_tokens=args.new_tokens, repetition_span=0)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for batch, vision_batch in [(b, v) for b in args.batch for v in args.vision_batch]:
        pages = args.pages or batch
        loaded.encode_pages([page], prompt)  # warm-up
        sync()
        encode = prefill = total = 0.0
        tokens = 0
        done = 0
        while done < pages:
            n = min(batch, pages - done)
            started = time.perf_counter()
            features = loaded.encode_pages([page] * n, prompt, vision_batch=vision_batch or None)
            sync()
            encode += time.perf_counter() - started
            started = time.perf_counter()
            generate(loaded, features, replace(gen, max_new_tokens=1))
            sync()
            prefill += time.perf_counter() - started
            started = time.perf_counter()
            results = generate(loaded, features, gen)
            sync()
            total += time.perf_counter() - started
            tokens += sum(len(r.token_ids) for r in results)
            done += n
        decode = max(total - prefill, 1e-9)
        print(json.dumps({
            "stage": "pages", "arch": args.arch, "llm_layers": config.lm.num_layers, "device": str(device),
            "dtype": str(dtype).removeprefix("torch."), "batch": batch, "vision_batch": vision_batch or "default",
            "pages": pages,
            "prompt_tokens": len(ids), "vision_encode_s_per_page": round(encode / pages, 3),
            "prefill_tokens_per_s": round(pages * len(ids) / prefill, 1),
            "decode_tokens_per_s": round((tokens - pages) / decode, 2),
            "pages_per_s": round(pages / (encode + total), 4), "max_rss_gib": round(max_rss_gib(), 2)}))


def page_lengths(pages: int, scale: float, seed: int = 0) -> list[int]:
    """New tokens per page, drawn log-normally (median ~400, clipped to 50-1500, as pages of papers run:
    a few short title and figure pages, most near a few hundred tokens, a long tail of dense pages), then
    scaled by `scale`."""
    generator = torch.Generator().manual_seed(seed)
    drawn = torch.exp(torch.randn(pages, generator=generator) * 0.8 + torch.log(torch.tensor(400.0)))
    return [max(1, round(scale * int(min(1500, max(50, x))))) for x in drawn.tolist()]


def bench_mixed(loaded, page, args) -> None:
    """pages/s of static and continuous batching on pages whose lengths are forced by the stop hook.

    The best of `--rounds` is reported, with the count of decode steps (batch forward passes) of each.

    Both schedulers are the same engine (`Engine`, `refill` off for static) run on the same
    pages in the same order, alternating round by round so a shared machine's noise hits both alike.
    """
    lengths = page_lengths(args.mixed, args.length_scale)
    prompt = "ocr" if loaded.is_tiny else "markdown"
    ids = loaded.prompt_ids(prompt)
    sync = torch.cuda.synchronize if loaded.device.type == "cuda" else (lambda: None)
    cached = loaded.encode_pages([page], prompt)  # (1, N, W)
    encode = ((lambda images: loaded.encode_pages(images, prompt)) if args.real_vision
              else (lambda images: cached.expand(len(images), -1, -1)))
    gen = GenerationConfig(max_new_tokens=max(lengths) + 1, repetition_span=0)
    print(json.dumps({"stage": "mixed_lengths", "pages": len(lengths), "length_scale": args.length_scale,
                      "new_tokens_min": min(lengths), "new_tokens_mean": round(sum(lengths) / len(lengths), 1),
                      "new_tokens_max": max(lengths), "real_vision": args.real_vision}), flush=True)
    seconds: dict[tuple[int, str], list[float]] = {}
    steps: dict[tuple[int, str], int] = {}
    cpu_seconds: dict[tuple[int, str], list[float]] = {}
    for _ in range(args.rounds):
        for batch in args.batch:
            for scheduler in ("static", "continuous"):
                batcher = Engine(loaded.model, encode, gen, loaded.stop_ids, batch, refill=scheduler == "continuous")
                requests = [PageRequest(i, page, ids, stop_after=n) for i, n in enumerate(lengths)]
                started, cpu_started = time.perf_counter(), time.process_time()
                outcomes = list(batcher.run(requests))
                sync()
                elapsed = time.perf_counter() - started
                # CPU seconds of this process: on a shared machine, less noisy than wall time (1 thread:
                # no spinning OpenMP workers counted).
                cpu = time.process_time() - cpu_started
                assert sorted(len(o.generation.token_ids) for o in outcomes) == sorted(lengths)
                seconds.setdefault((batch, scheduler), []).append(elapsed)
                cpu_seconds.setdefault((batch, scheduler), []).append(cpu)
                steps[(batch, scheduler)] = batcher.forward_passes
                print(json.dumps({"stage": "mixed", "batch": batch, "scheduler": scheduler,
                                  "forward_passes": batcher.forward_passes, "row_passes": batcher.row_passes,
                                  "seconds": round(elapsed, 2), "cpu_seconds": round(cpu, 2),
                                  "pages_per_s": round(len(lengths) / elapsed, 4),
                                  "tokens_per_s": round(sum(lengths) / elapsed, 2),
                                  "max_rss_gib": round(max_rss_gib(), 2)}), flush=True)
    for batch in args.batch:
        static, continuous = (min(seconds[(batch, s)]) for s in ("static", "continuous"))
        print(json.dumps({"stage": "mixed_summary", "batch": batch, "static_pages_per_s": round(len(lengths) / static, 4),
                          "continuous_pages_per_s": round(len(lengths) / continuous, 4),
                          "continuous_over_static": round(static / continuous, 2),
                          "continuous_over_static_cpu_time": round(min(cpu_seconds[(batch, "static")])
                                                                   / min(cpu_seconds[(batch, "continuous")]), 2),
                          # Noise-free: batch forward passes; the time ratio where a step costs the same
                          # for any number of rows (a GPU at these batch sizes).
                          "static_over_continuous_steps": round(steps[(batch, "static")]
                                                                / steps[(batch, "continuous")], 2)}), flush=True)


if __name__ == "__main__":
    main()
