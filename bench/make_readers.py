"""Reader checkpoints: a seeded Vary-toy layout trained with vary's own commands until it reads its pages.

    python bench/make_readers.py                       # ~20 min on 2 CPU cores; checkpoints in bench/readers/
    python bench/make_readers.py --out /tmp/readers --width 512 --steps 200

The seeded test models write noise, so a draft (issue 17) is never accepted on them. This script closes
the paper's loop at toy scale with the CLI a user runs, each step a `python -m vary_cli` subprocess:

1. PDFs: the repository's examples (`examples/sample.pdf`, a scanned page with no text layer, which
   `vary data pdf` skips; `examples/data/page.pdf`) and two born-digital PDFs of prose, tables and a
   reference list (bench/reader_pages.py): 6 pages, 4 with a text layer.
2. `vary data pdf` -> page images + their text layers (the targets), with the Qwen `ocr` preset as the
   question, so `vary convert --prompt ocr` asks what training asked.
3. A seeded release-layout Vary-toy (`write_random_release` of bench_infer.py: the real Qwen vocabulary
   and tokenizer, random weights): `noise/`, the worst case for drafting.
4. `vary train --sft` from it, saving every `--save-every` steps.
5. `vary convert --format jsonl --prompt ocr` on the PDFs with each saved checkpoint, then
   `vary eval score` (Fox protocol) of the pages against their text layers: the mean edit distance.
6. The last checkpoint becomes `memorized/` (edit distance near 0); the saved checkpoint whose edit
   distance is nearest 0.3 (in 0.2-0.4 when one is) becomes `under-trained/`. Both are the release
   directories `vary train` writes (its `training_state.pt`, the optimizer state, left out), so
   `vary convert --model OUT/memorized` loads them.

Sizes. The LLM is Qwen-1 with `--layers` (2) layers and the real 151,936-token vocabulary and head size
(128), at `--width` (256) instead of 2048: at 2048 the embedding and lm_head alone are 622M trainable
parameters, about 30 s per training step on 2 cores, hours to memorize. The vision towers keep their
geometry (CLIP 224 px / patch 14, SAM 1024 px / patch 16, 256 image tokens each) at narrow widths and
two layers each (`NARROW_CLIP`, `NARROW_SAM`); they are frozen in SFT, so they only have to tell the
pages apart. Prints one JSON object per stage; `summary.json` in OUT repeats the final numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))  # bench_infer's write_random_release reads the tests' tiny OPT vocabulary

from vary_cli.models.config import PRESETS, ClipVisionSpec, QwenLMConfig, SamVisionSpec, VaryConfig  # noqa: E402
from vary_cli.text.prompts import PRESETS as PROMPTS  # noqa: E402

# Frozen towers at toy width, real geometry: 16x16 CLIP patches and a 64x64 SAM grid halved twice.
NARROW_CLIP = ClipVisionSpec(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256)
NARROW_SAM = SamVisionSpec(hidden_size=64, num_layers=2, num_heads=2, mlp_dim=256, global_attn_indexes=(),
                           output_channels=64, net_channels=(128, 256))
EXAMPLES = (ROOT / "examples" / "sample.pdf", ROOT / "examples" / "data" / "page.pdf")
UNDER_TRAINED_TARGET = 0.3
STAGE_KEYS = ("memorized", "under-trained", "noise")


def reader_config(width: int, layers: int) -> VaryConfig:
    """Vary-toy with a `width`-wide, `layers`-deep Qwen-1 (head size 128, Qwen's MLP ratio) and narrow towers."""
    toy = PRESETS["vary-toy"]
    heads = max(1, width // 128)
    lm = replace(toy.lm, hidden_size=width, num_layers=layers, num_heads=heads, kv_channels=width // heads,
                 intermediate_size=2 * round(width * QwenLMConfig().intermediate_size / 4096))
    return replace(toy, lm=lm, clip=NARROW_CLIP, sam=NARROW_SAM)


def vary(*args: str) -> str:
    """Run `python -m vary_cli ARGS` as a user would and return its stdout; a failure stops the script
    with its stderr. The test suite passes a CliRunner in its place (tests/train/test_closed_loop.py)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "vary_cli", *args], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if done.returncode:
        sys.exit(f"vary {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def write_pdfs(folder: Path) -> list[Path]:
    from reader_pages import write_corpus

    folder.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in EXAMPLES:
        shutil.copyfile(path, folder / path.name)
        copied.append(folder / path.name)
    return copied + write_corpus(folder)


def ground_truth(data: Path, gt: Path) -> list[str]:
    """Write `gt`: each `vary data` sample's text layer as a page record (`source`, `page`, `text`), the
    way `vary eval score` pairs them with `vary convert --format jsonl` pages (by file stem and page).
    Returns the names of the PDFs that have pages there."""
    sources, lines = [], []
    for line in (data / "data.jsonl").read_text().splitlines():
        record = json.loads(line)
        source, page = record["id"].rsplit("#", 1)
        lines.append(json.dumps({"source": Path(source).name, "page": int(page),
                                 "text": record["conversations"][1]["value"]}))
        if Path(source).name not in sources:
            sources.append(Path(source).name)
    gt.write_text("\n".join(lines) + "\n")
    return sources


def convert_and_score(model: Path, pdfs: list[Path], out: Path, gt: Path, max_new_tokens: int,
                      batch_size: int, run: Callable[..., str] = vary) -> dict:
    """`vary convert --format jsonl --prompt ocr` the PDFs into `out/`, then `vary eval score` (Fox protocol)
    the pages against `gt`: mean edit distance and F1, pages scored, seconds converting."""
    if out.exists():
        shutil.rmtree(out)
    started = time.perf_counter()
    run("convert", *map(str, pdfs), "--model", str(model), "--out-dir", str(out), "--format", "jsonl",
        "--prompt", "ocr", "--device", "cpu", "--max-new-tokens", str(max_new_tokens),
        "--batch-size", str(batch_size), "--quiet")
    seconds = time.perf_counter() - started
    pages = out / "pages.jsonl"
    pages.write_text("".join(p.read_text() for p in sorted(out.glob("*.jsonl")) if p != pages))
    score = json.loads(run("eval", "score", str(pages), str(gt), "--json", "--workers", "1"))
    return {"edit_distance": round(score["metrics"]["edit_distance"], 4), "f1": round(score["metrics"]["f1"], 4),
            "pages_scored": score["scored"], "convert_s": round(seconds, 1)}


def keep_release(checkpoint: Path, target: Path) -> None:
    """Copy a `vary train` checkpoint's release files (not its optimizer state) to `target`."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(checkpoint, target, ignore=shutil.ignore_patterns("training_state.pt"))


def children_cpu() -> float:
    """CPU seconds of the vary commands run so far (on a shared machine, steadier than wall time)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def report(stage: str, **fields) -> None:
    print(json.dumps({"stage": stage, **fields}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "readers")
    parser.add_argument("--width", type=int, default=128, help="LLM hidden size (Vary-toy: 2048)")
    parser.add_argument("--layers", type=int, default=2, help="LLM layers (Vary-toy: 24)")
    parser.add_argument("--steps", type=int, default=240, help="vary train --max-steps")
    parser.add_argument("--save-every", type=int, default=20)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--train-batch", type=int, default=1,
                        help="vary train --batch-size: one page a step gets there in a third of the CPU time of four")
    parser.add_argument("--max-new-tokens", type=int, default=1024, help="per page, for vary convert")
    parser.add_argument("--batch-size", type=int, default=4, help="vary convert --batch-size")
    args = parser.parse_args()
    out: Path = args.out
    if (out / "runs").exists():
        shutil.rmtree(out / "runs")  # a fresh run: vary train refuses an --out that holds checkpoints
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    prompt = PROMPTS["ocr"]

    pdfs = write_pdfs(out / "pdfs")
    if (out / "data").exists():
        shutil.rmtree(out / "data")
    vary("data", "pdf", str(out / "pdfs"), "--out", str(out / "data"), "--prompt", prompt, "--workers", "1")
    gt = out / "gt.jsonl"
    sources = ground_truth(out / "data", gt)
    n_pages = len(gt.read_text().splitlines())
    read_pdfs = [p for p in pdfs if p.name in sources]
    report("data", pdfs=[p.name for p in pdfs], pages_with_text=n_pages, converted=[p.name for p in read_pdfs])

    from bench_infer import write_random_release

    config = reader_config(args.width, args.layers)
    noise = out / "noise"
    if noise.exists():
        shutil.rmtree(noise)
    write_random_release(noise, config, shards=1, trainable=True)
    report("noise", width=args.width, layers=args.layers, heads=config.lm.num_heads,
           intermediate_size=config.lm.intermediate_size, vocab_size=config.lm.vocab_size,
           clip=NARROW_CLIP.__dict__, sam={k: v for k, v in NARROW_SAM.__dict__.items()})

    tick, cpu_before = time.perf_counter(), children_cpu()
    vary("train", "--sft", str(out / "data" / "data.jsonl"), "--model", str(noise), "--out", str(out / "runs"),
         "--lr", str(args.lr), "--max-steps", str(args.steps), "--batch-size", str(args.train_batch),
         "--save-every", str(args.save_every), "--keep", str(args.steps), "--warmup-ratio", "0",
         "--no-gradient-checkpointing", "--workers", "0", "--device", "cpu", "--log-every", "10")
    train_s = time.perf_counter() - tick
    losses = [json.loads(line) for line in (out / "runs" / "metrics.jsonl").read_text().splitlines()]
    report("train", steps=args.steps, seconds=round(train_s, 1), s_per_step=round(train_s / args.steps, 2),
           cpu_s=round(children_cpu() - cpu_before, 1),
           loss=[(m["step"], round(m["loss"], 4)) for m in losses if "loss" in m])

    scores = {}
    checkpoints = sorted((out / "runs").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    for checkpoint in reversed(checkpoints):  # newest first: stop once past the under-trained band
        step = int(checkpoint.name.split("-")[1])
        scores[step] = convert_and_score(checkpoint, read_pdfs, out / "pred" / checkpoint.name, gt,
                                         args.max_new_tokens, args.batch_size)
        report("score", step=step, **scores[step])
        if scores[step]["edit_distance"] > 0.4 and len(scores) > 1:
            break
    last = int(checkpoints[-1].name.split("-")[1])
    under = min((s for s in scores if s != last), key=lambda s: abs(scores[s]["edit_distance"] - UNDER_TRAINED_TARGET))
    keep_release(out / "runs" / f"checkpoint-{last}", out / "memorized")
    keep_release(out / "runs" / f"checkpoint-{under}", out / "under-trained")
    for checkpoint in checkpoints:  # each holds its optimizer state too: ~3x the weights
        shutil.rmtree(checkpoint)
    noise_score = convert_and_score(noise, read_pdfs, out / "pred" / "noise", gt, args.max_new_tokens, args.batch_size)
    report("score", step=0, **noise_score)
    summary = {"width": args.width, "layers": args.layers, "lr": args.lr, "train_steps": args.steps,
               "train_batch": args.train_batch,
               "train_s": round(train_s, 1), "memorized": {"step": last, **scores[last]},
               "under-trained": {"step": under, **scores[under]}, "noise": {"step": 0, **noise_score},
               "pages": n_pages, "total_s": round(time.perf_counter() - started, 1),
               "cpu_s": round(children_cpu(), 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    report("summary", **summary)


if __name__ == "__main__":
    main()
