"""GOT-OCR2.0 pages/s: vary's engine against transformers' own `generate`, and against Vary-toy, on the same
pages and seeded full-width weights.

    python bench/bench_got.py                                   # CPU: batch 1 and 8, 8 pages, 32 new tokens
    python bench/bench_got.py --vary-toy                        # also Vary-toy (full size) on the same pages
    python bench/bench_got.py --device cuda --dtype bf16 --pages 32 --new-tokens 256
    python bench/bench_got.py --layers 4                        # full width, fewer LLM layers (a slow machine)

It writes GOT's hf release layout with random weights through the library's own `export.save_release` (the
writer `vary train` uses; tokenizer: the real Qwen vocabulary from the dashscope package, converted as
transformers converts it), then, in a fresh process, times:
- vary: `pipeline.read_images`, the engine `vary convert` and `vary ocr` use, format OCR ("markdown"),
  continuous batching at each --batch, drafting off (random weights write nothing a draft could predict);
- transformers: `GotOcr2Processor` (format=True) and `GotOcr2ForConditionalGeneration.generate` on the same
  directory, greedy, `min_new_tokens` = `max_new_tokens` so both write the same number of tokens, batches
  of --batch pages (left-padded);
- with --vary-toy, Vary-toy's seeded checkpoint (bench_infer.py's writer) through the same `read_images`.
Pages are examples/sample.pdf's, rendered as `vary convert` renders them, repeated to --pages. Each
measurement prints one JSON line: pages/s, tokens/s, seconds, CPU seconds (the process's, all threads: on a
machine shared with other work they vary less than the wall clock), peak RSS (GiB, the measuring process's).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))


def max_rss_gib() -> float:
    """This process's peak resident memory. VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over
    fork and exec, so a measuring child would report the writer's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB -> GiB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def write_got(directory: Path, layers: int) -> None:
    import dashscope

    from vary_cli.models.checkpoint import build_on_meta
    from vary_cli.models.config import PRESETS
    from vary_cli.models.export import save_release
    from vary_cli.train.got import converted_tokenizer_files

    config = PRESETS["got-ocr2"]
    if layers:
        config = replace(config, lm=replace(config.lm, num_layers=layers))
    shapes = {k: v.shape for k, v in build_on_meta(config).state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    weights = {k: torch.randn(shape, generator=generator) * 0.02 for k, shape in shapes.items()}
    weights["lm_head.weight"] = weights["embed_tokens.weight"]  # tied
    files = converted_tokenizer_files(Path(dashscope.__file__).parent / "resources" / "qwen.tiktoken")
    save_release(directory, weights, config, files)


def pages(count: int) -> list:
    from vary_cli.convert.raster import open_document

    document = open_document(ROOT / "examples" / "sample.pdf")
    rendered = [image for _, image in document.iter_pages()]
    return [rendered[i % len(rendered)] for i in range(count)]


def report(**fields) -> None:
    fields["peak_rss_gib"] = round(max_rss_gib(), 2)
    print(json.dumps(fields), flush=True)


def time_vary(directory: Path, name: str, images: list, args) -> None:
    from vary_cli.convert.pipeline import ImageItem, read_images
    from vary_cli.engine.config import GenerationConfig
    from vary_cli.models.checkpoint import load_directory
    from vary_cli.weights.device import resolve_device, resolve_dtype

    device = resolve_device(args.device)
    started = time.perf_counter()
    loaded = load_directory(directory, device, resolve_dtype(args.dtype, device))
    report(model=name, stage="load", seconds=round(time.perf_counter() - started, 2))
    gen = GenerationConfig(max_new_tokens=args.new_tokens, repetition_span=0)
    # Warm-up, untimed: the first page pays for reading the weights in and the first allocations.
    list(read_images(loaded, [ImageItem(0, "warm-up", images[0], "markdown")], gen.with_(max_new_tokens=2)))
    for batch in args.batch:
        items = [ImageItem(i, f"page{i}", image, "markdown") for i, image in enumerate(images)]
        started, cpu = time.perf_counter(), time.process_time()
        results = [result for _, result in read_images(loaded, items, gen, batch_size=batch)]
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        tokens = sum(r.tokens for r in results)
        assert not any(r.finish_reason == "error" for r in results), [r.error for r in results]
        report(model=name, runner="vary", batch=batch, pages=len(images), tokens=tokens, seconds=round(seconds, 2),
               cpu_seconds=round(cpu, 2), pages_per_s=round(len(images) / seconds, 4),
               tokens_per_s=round(tokens / seconds, 2))


def time_transformers(directory: Path, images: list, args) -> None:
    from transformers import GotOcr2ForConditionalGeneration, GotOcr2Processor

    from vary_cli.weights.device import resolve_device, resolve_dtype

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    started = time.perf_counter()
    model = GotOcr2ForConditionalGeneration.from_pretrained(directory, dtype=dtype).to(device).eval()
    processor = GotOcr2Processor.from_pretrained(directory)
    processor.tokenizer.padding_side = "left"
    report(model="got-ocr2", runner="transformers", stage="load", seconds=round(time.perf_counter() - started, 2))
    with torch.inference_mode():  # warm-up, untimed, as for vary
        model.generate(**processor(images[:1], return_tensors="pt", format=True).to(device), do_sample=False,
                       max_new_tokens=2)
    for batch in args.batch:
        started, cpu = time.perf_counter(), time.process_time()
        tokens = 0
        for start in range(0, len(images), batch):
            chunk = images[start:start + batch]
            inputs = processor(chunk, return_tensors="pt", format=True, padding=True).to(device)
            with torch.inference_mode():
                out = model.generate(**inputs, do_sample=False, max_new_tokens=args.new_tokens,
                                     min_new_tokens=args.new_tokens)
            tokens += (out.shape[1] - inputs["input_ids"].shape[1]) * len(chunk)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        report(model="got-ocr2", runner="transformers", batch=batch, pages=len(images), tokens=tokens,
               seconds=round(seconds, 2), cpu_seconds=round(cpu, 2), pages_per_s=round(len(images) / seconds, 4),
               tokens_per_s=round(tokens / seconds, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--layers", type=int, default=0, help="GOT's LLM layers (0: the release's 24)")
    parser.add_argument("--vary-toy", action="store_true", help="also Vary-toy on the same pages")
    parser.add_argument("--only", choices=("vary", "transformers", "vary-toy"), help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only is None:
        # Write here, measure each runner in a fresh process (a clean peak RSS, no shared caches).
        with tempfile.TemporaryDirectory() as tmp:
            got = Path(tmp) / "got-ocr2"
            started = time.perf_counter()
            write_got(got, args.layers)
            report(stage="write_got", seconds=round(time.perf_counter() - started, 2))
            runs = [("vary", got), ("transformers", got)]
            if args.vary_toy:
                from bench_infer import write_random_release

                from vary_cli.models.config import PRESETS

                toy = Path(tmp) / "vary-toy"
                write_random_release(toy, PRESETS["vary-toy"], shards=4)
                runs.append(("vary-toy", toy))
            for only, directory in runs:
                subprocess.run([sys.executable, __file__, *sys.argv[1:], "--only", only, "--checkpoint",
                                str(directory)], check=True)
        return
    images = pages(args.pages)
    if args.only == "transformers":
        time_transformers(args.checkpoint, images, args)
    else:
        time_vary(args.checkpoint, "got-ocr2" if args.only == "vary" else "vary-toy", images, args)


if __name__ == "__main__":
    main()
