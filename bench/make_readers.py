"""Reader checkpoints: a seeded Vary-toy layout trained with vary's own commands until it reads its pages.

    python bench/make_readers.py                       # ~20 min on 2 CPU cores; checkpoints in bench/readers/
    python bench/make_readers.py --out /tmp/readers --width 256

The seeded test models write noise, so a draft (issue 17) is never accepted on them. This script closes
the paper's loop at toy scale with the CLI a user runs, each step a `python -m vary_cli` subprocess:

1. PDFs: the repository's examples (`examples/sample.pdf`, a scanned page with no text layer, which
   `vary data pdf` skips; `examples/data/page.pdf`) and two born-digital PDFs of prose, tables and a
   reference list (bench/reader_pages.py): 6 pages, 4 with a text layer (~1,200 Qwen tokens).
2. `vary data pdf` -> page images + their text layers (the targets), with the Qwen `ocr` preset as the
   question, so `vary convert --prompt ocr` asks what training asked.
3. A seeded release-layout Vary-toy (bench_infer's `write_random_release(trainable=True)`: the real Qwen
   vocabulary and tokenizer, random weights): `noise/`, the worst case for drafting.
4. `vary train --sft` from it in three runs, each starting from the last one's checkpoint:
   - `text`: whole pages, one a step, lr 3e-3: the model learns the pages' text;
   - `look`: all pages a step, lr 1e-3, `--max-length` cut just past the prompt, so only each page's
     first answer tokens are targets. Without it the model writes some page's text whatever the image:
     which page to write is decided by its first token or two, 4 of the ~1,200 targets, and after 600
     steps of whole pages their probabilities were still the pages' prior (0.36-0.43 for each of 3
     openings). With the cut the first tokens reach p > 0.99 in ~40 steps;
   - `polish`: whole pages again, one a step, lr 1e-3: mends the later text the `look` run disturbed.
   Then `polish-early`: the same polish run again, saving every step, stopped after `--early-steps`.
   Training is seeded, so these are the polish run's own first steps; within them the edit distance
   falls from ~0.7 to near 0, too fast for a run that keeps a few checkpoints to hold one at 0.2-0.4.
5. `vary convert --format jsonl --prompt ocr` on the PDFs (poppler's rendering, not the training
   images) with those checkpoints, then `vary eval score` (Fox protocol) against the text layers.
6. The `polish` run's last checkpoint becomes `memorized/` (edit distance near 0); of polish-early's,
   the one nearest 0.3 becomes `under-trained/`.
   Both are the release directories `vary train` writes (its `training_state.pt`, the optimizer
   state, left out), so `vary convert --model OUT/memorized` loads them.

Sizes. The LLM is Qwen-1 with `--layers` (2) layers, the real 151,936-token vocabulary and head size
(128), at `--width` (128) instead of 2048: at 2048 the embedding and lm_head alone are 622M trainable
parameters, ~30 s a training step on 2 cores, hours to memorize; at 128 a step of one page is ~1.8 s on
one core. The vision towers keep their geometry (CLIP 224 px / patch 14, SAM 1024 px / patch 16, 256
image tokens) at width 64 and two layers each (`NARROW_CLIP`, `NARROW_SAM`; SAM without global
attention, its 4096-token attention being most of the towers' time); they are frozen in SFT, so they
only have to tell the pages apart. Prints one JSON object per stage; OUT/summary.json keeps the last.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))  # bench_infer's write_random_release reads the tests' tiny OPT vocabulary

from vary_cli.models.config import PRESETS, ClipVisionSpec, QwenLMConfig, SamVisionSpec, VaryConfig  # noqa: E402
from vary_cli.models.export import read_latest  # noqa: E402
from vary_cli.text.prompts import PRESETS as PROMPTS  # noqa: E402

# Frozen towers at toy width, real geometry: 16x16 CLIP patches and a 64x64 SAM grid halved twice.
NARROW_CLIP = ClipVisionSpec(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256)
NARROW_SAM = SamVisionSpec(hidden_size=64, num_layers=2, num_heads=2, mlp_dim=256, global_attn_indexes=(),
                           output_channels=64, net_channels=(128, 256))
EXAMPLES = (ROOT / "examples" / "sample.pdf", ROOT / "examples" / "data" / "page.pdf")
UNDER_TRAINED_TARGET = 0.3


def reader_config(width: int, layers: int) -> VaryConfig:
    """Vary-toy with a `width`-wide, `layers`-deep Qwen-1 (head size 128, Qwen's MLP ratio) and narrow towers."""
    toy = PRESETS["vary-toy"]
    heads = max(1, width // 128)
    lm = replace(toy.lm, hidden_size=width, num_layers=layers, num_heads=heads, kv_channels=width // heads,
                 intermediate_size=2 * round(width * QwenLMConfig().intermediate_size / 4096))
    return replace(toy, lm=lm, clip=NARROW_CLIP, sam=NARROW_SAM)


def vary_env() -> dict[str, str]:
    """The environment of a `python -m vary_cli` subprocess: this checkout first on PYTHONPATH."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def vary(*args: str) -> str:
    """Run `python -m vary_cli ARGS` as a user would and return its stdout; a failure stops the script
    with its stderr. The test suite passes a CliRunner in its place (tests/train/test_closed_loop.py)."""
    done = subprocess.run([sys.executable, "-m", "vary_cli", *args], env=vary_env(), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if done.returncode:
        sys.exit(f"vary {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def run_until(args: list[str], done: Callable[[], bool]) -> None:
    """Run `python -m vary_cli ARGS` until `done()` holds, then stop it (SIGTERM; vary train writes each
    checkpoint atomically, so what it has saved stays whole). A failure before that stops the script."""
    with tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "vary_cli", *args], env=vary_env(), text=True,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
        while process.poll() is None and not done():
            time.sleep(0.5)
        if process.poll() is None:
            process.terminate()
            process.wait()
        elif not done():
            stderr.seek(0)
            sys.exit(f"vary {' '.join(args)} failed ({process.returncode}):\n{stderr.read()}")


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


def train(stage: str, data: Path, start: Path, out: Path, steps: int, save_every: int, stop_after: int = 0,
          **flags) -> Path:
    """One `vary train --sft` run from `start` into `out`; returns its last checkpoint. With `stop_after`,
    the run is stopped once it has saved checkpoint-`stop_after` (training is seeded, so its checkpoints
    are those of the whole run's first steps, on the whole run's learning-rate schedule)."""
    options = {"lr": 3e-3, "batch_size": 1, "max_length": 4096, **flags}
    if out.exists():
        shutil.rmtree(out)  # vary train refuses an --out that holds checkpoints
    tick, cpu = time.perf_counter(), children_cpu()
    args = ["train", "--sft", str(data), "--model", str(start), "--out", str(out), "--max-steps", str(steps),
            "--save-every", str(save_every), "--keep", str(steps), "--warmup-ratio", "0",
            "--no-gradient-checkpointing", "--workers", "0", "--device", "cpu", "--log-every", "10",
            *[arg for key, value in options.items() for arg in (f"--{key.replace('_', '-')}", str(value))]]
    if stop_after:
        last = out / f"checkpoint-{stop_after}"  # `latest` names a checkpoint once it is whole
        run_until(args, lambda: read_latest(out) == last)
        steps = stop_after
    else:
        vary(*args)
    metrics = out / "metrics.jsonl"  # written every --log-every (10) steps: absent for a run stopped before
    losses = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.is_file() else []
    report("train", run=stage, steps=steps, seconds=round(time.perf_counter() - tick, 1),
           cpu_s=round(children_cpu() - cpu, 1), **options,
           loss=[(m["step"], round(m["loss"], 4)) for m in losses if "loss" in m])
    return out / f"checkpoint-{steps}"


def checkpoints(run: Path) -> list[Path]:
    return sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "readers")
    parser.add_argument("--width", type=int, default=128, help="LLM hidden size (Vary-toy: 2048)")
    parser.add_argument("--layers", type=int, default=2, help="LLM layers (Vary-toy: 24)")
    parser.add_argument("--text-steps", type=int, default=600, help="steps of the `text` run")
    parser.add_argument("--look-steps", type=int, default=60, help="steps of the `look` run")
    parser.add_argument("--polish-steps", type=int, default=100, help="steps of the `polish` run")
    parser.add_argument("--early-steps", type=int, default=16,
                        help="the polish run's first steps, each saved, from which the under-trained one is picked")
    parser.add_argument("--look-tokens", type=int, default=16, help="answer tokens the `look` run trains")
    parser.add_argument("--max-new-tokens", type=int, default=1024, help="per page, for vary convert")
    parser.add_argument("--batch-size", type=int, default=4, help="vary convert --batch-size")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    pdfs = write_pdfs(out / "pdfs")
    if (out / "data").exists():
        shutil.rmtree(out / "data")
    vary("data", "pdf", str(out / "pdfs"), "--out", str(out / "data"), "--prompt", PROMPTS["ocr"], "--workers", "1")
    gt = out / "gt.jsonl"
    sources = ground_truth(out / "data", gt)
    n_pages = len(gt.read_text().splitlines())
    read_pdfs = [p for p in pdfs if p.name in sources]
    report("data", pdfs=[p.name for p in pdfs], pages_with_text=n_pages, converted=[p.name for p in read_pdfs])

    from bench_infer import write_random_release

    from vary_cli.text.prompts import build_prompt_ids
    from vary_cli.text.qwen_tokenizer import QwenTokenizer

    config = reader_config(args.width, args.layers)
    noise = out / "noise"
    if noise.exists():
        shutil.rmtree(noise)
    write_random_release(noise, config, shards=1, trainable=True)
    report("noise", width=args.width, layers=args.layers, heads=config.lm.num_heads,
           intermediate_size=config.lm.intermediate_size, vocab_size=config.lm.vocab_size,
           clip=NARROW_CLIP.__dict__, sam=NARROW_SAM.__dict__)
    tokenizer = QwenTokenizer.from_file(noise / "qwen.tiktoken")
    prompt_tokens = len(build_prompt_ids(tokenizer, PROMPTS["ocr"], config.prompt_style, config.image_token_len))

    data, runs, train_cpu = out / "data" / "data.jsonl", out / "runs", children_cpu()
    tick = time.perf_counter()
    text = train("text", data, noise, runs / "text", args.text_steps, args.text_steps)
    look = train("look", data, text, runs / "look", args.look_steps, args.look_steps, lr=1e-3, batch_size=n_pages,
                 max_length=prompt_tokens + args.look_tokens)
    polish = train("polish", data, look, runs / "polish", args.polish_steps, args.polish_steps, lr=1e-3)
    # The polish run's first steps again, a checkpoint each: the edit distance falls from the look run's
    # ~0.7 to near 0 within a few steps, too fast for the whole run to keep a checkpoint in 0.2-0.4.
    early = train("polish-early", data, look, runs / "polish-early", args.polish_steps, 1,
                  stop_after=args.early_steps, lr=1e-3)
    train_s, train_cpu = time.perf_counter() - tick, children_cpu() - train_cpu

    def score(checkpoint: Path, name: str) -> dict:
        result = convert_and_score(checkpoint, read_pdfs, out / "pred" / name, gt, args.max_new_tokens,
                                   args.batch_size)
        report("score", checkpoint=name, **result)
        return result

    memorized = f"polish-{polish.name}"
    scores = {memorized: score(polish, memorized)}
    candidates = {f"polish-{c.name}": c for c in checkpoints(early.parent)}
    for name, checkpoint in candidates.items():
        scores[name] = score(checkpoint, name)
    under = min(candidates, key=lambda n: abs(scores[n]["edit_distance"] - UNDER_TRAINED_TARGET))
    keep_release(polish, out / "memorized")
    keep_release(candidates[under], out / "under-trained")
    for run in (text, look, polish, early):  # each checkpoint holds its optimizer state (~3x the weights)
        for checkpoint in checkpoints(run.parent):
            shutil.rmtree(checkpoint)
    noise_score = score(noise, "noise")
    summary = {"width": args.width, "layers": args.layers, "heads": config.lm.num_heads,
               "steps": {"text": args.text_steps, "look": args.look_steps, "polish": args.polish_steps},
               "scores": scores,
               "train_s": round(train_s, 1), "train_cpu_s": round(train_cpu, 1),
               "memorized": {"checkpoint": memorized, **scores[memorized]},
               "under-trained": {"checkpoint": under, **scores[under]}, "noise": noise_score,
               "pages": n_pages, "total_s": round(time.perf_counter() - started, 1),
               "cpu_s": round(children_cpu(), 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    report("summary", **summary)
    if scores[memorized]["edit_distance"] > 0.05:
        print(f"warning: the memorized checkpoint's edit distance is {scores[memorized]['edit_distance']}; "
              "give the runs more steps", file=sys.stderr)


if __name__ == "__main__":
    main()
