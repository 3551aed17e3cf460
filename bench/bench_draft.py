"""Speculative drafting (`vary convert --draft`) on checkpoints that read: tokens per forward pass, time, exactness.

    python bench/make_readers.py                 # once: bench/readers/{memorized,under-trained,noise}
    python bench/bench_draft.py                  # every checkpoint x batch 1, 4 x --draft off|ngram|text-layer|auto
    python bench/bench_draft.py --checkpoints memorized --batch 1 --rounds 3

For each checkpoint of bench/make_readers.py (the memorized one, the under-trained one, and the seeded
noise model it started from, where no draft is ever right), each batch size and each `--draft` mode, it
runs `vary convert` (the CLI's own command, in this process) on the pages the readers were trained on,
as JSON Lines, and reports:

- `tokens_per_forward_pass`: the pages' tokens over their forward passes (the records' `tokens` and
  `forward_passes`, summed over pages), with `draft_tokens_accepted`;
- `wall_s` and `cpu_s` of the conversion, and `decode_wall_s` / `decode_cpu_s`: the same less a run with
  `--max-new-tokens 1` (loading, vision encoding and prefill: what drafting cannot change);
- `decode_speedup` (wall) and `decode_speedup_cpu`: `--draft off`'s decode time over this mode's. CPU
  seconds of this process (`--threads 1` by default) are the steadier figure on a shared machine;
- `identical`: every page's text and token count equal `--draft off`'s (greedy drafting must not change
  a token).

Each figure is the best of `--rounds`, the rounds interleaved across modes. One JSON object per
run, then a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHECKPOINTS = ("memorized", "under-trained", "noise")
MODES = ("off", "ngram", "text-layer", "auto")
NO_DRAFT = ("this vary convert has no --draft or its records no forward_passes: speculative drafting "
            "(issue 17) is not in this checkout yet; `git merge main` once it has landed")


class Run:
    """One `vary convert` invocation: its page records and its wall and CPU seconds."""

    def __init__(self, records: list[dict], wall: float, cpu: float) -> None:
        self.records, self.wall, self.cpu = records, wall, cpu

    def total(self, field: str) -> int:
        if any(field not in r for r in self.records):
            sys.exit(NO_DRAFT)
        return sum(r[field] for r in self.records)


def convert(model: Path, pdfs: list[Path], batch: int, draft: str, max_new_tokens: int) -> Run:
    """`vary convert PDFS --format jsonl --draft DRAFT` with `model`, timed."""
    from typer.testing import CliRunner

    from vary_cli.cli.app import app

    with tempfile.TemporaryDirectory() as tmp:
        args = ["convert", *map(str, pdfs), "--model", str(model), "--out-dir", tmp, "--format", "jsonl",
                "--prompt", "ocr", "--device", "cpu", "--batch-size", str(batch),
                "--max-new-tokens", str(max_new_tokens), "--draft", draft, "--quiet"]
        started, cpu_started = time.perf_counter(), time.process_time()
        result = CliRunner().invoke(app, args)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        if result.exit_code:
            if "--draft" in result.output and "No such option" in result.output:
                sys.exit(NO_DRAFT)
            sys.exit(f"vary {' '.join(args)} failed ({result.exit_code}): {result.output.strip()[-500:]}")
        records = [json.loads(line) for path in sorted(Path(tmp).glob("*.jsonl"))
                   for line in path.read_text().splitlines() if line.strip()]
    return Run(sorted(records, key=lambda r: (r["source"], r["page"] or 0)), wall, cpu)


def best(runs: list[Run]) -> Run:
    """The round with the least CPU time (its records: greedy rounds are alike), with the least wall time."""
    chosen = min(runs, key=lambda r: r.cpu)
    return Run(chosen.records, min(r.wall for r in runs), chosen.cpu)


def same_output(run: Run, reference: Run) -> bool:
    pages = lambda r: [(x["source"], x["page"], x["text"], x["tokens"]) for x in r.records]  # noqa: E731
    return pages(run) == pages(reference)


def reader_pdfs(readers: Path) -> list[Path]:
    """The PDFs whose pages the readers were trained on (those with pages in make_readers' gt.jsonl)."""
    sources = {json.loads(line)["source"] for line in (readers / "gt.jsonl").read_text().splitlines() if line}
    return sorted(p for p in (readers / "pdfs").glob("*.pdf") if p.name in sources)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=Path, default=ROOT / "bench" / "readers",
                        help="bench/make_readers.py's --out")
    parser.add_argument("--checkpoints", nargs="+", default=list(CHECKPOINTS), choices=CHECKPOINTS)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--draft", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    missing = [name for name in args.checkpoints if not (args.readers / name / "config.json").is_file()]
    if missing:
        sys.exit(f"{args.readers}: no {', '.join(missing)} checkpoint; run bench/make_readers.py first")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    pdfs = reader_pdfs(args.readers)
    modes = ["off"] + [m for m in args.draft if m != "off"]  # off is the reference of every comparison
    convert(args.readers / args.checkpoints[0], pdfs[:1], 1, "off", 1)  # warm-up: imports, first load
    rows = []
    for name in args.checkpoints:
        model = args.readers / name
        for batch in args.batch:
            # Rounds go through every mode in turn, so a slow spell on a shared machine falls on all modes
            # alike rather than on whichever ran then. The base run (--max-new-tokens 1: loading, vision
            # encoding and prefill) is the part of a conversion that drafting leaves alone.
            runs: dict[str, list[Run]] = {mode: [] for mode in ["base", *modes]}
            for _ in range(args.rounds):
                runs["base"].append(convert(model, pdfs, batch, "off", 1))
                for mode in modes:
                    runs[mode].append(convert(model, pdfs, batch, mode, args.max_new_tokens))
            base, reference = best(runs["base"]), best(runs["off"])
            for mode in modes:
                run = best(runs[mode])
                tokens, passes = run.total("tokens"), run.total("forward_passes")
                decode_wall, decode_cpu = max(run.wall - base.wall, 1e-9), max(run.cpu - base.cpu, 1e-9)
                ref_wall, ref_cpu = max(reference.wall - base.wall, 1e-9), max(reference.cpu - base.cpu, 1e-9)
                row = {"checkpoint": name, "batch": batch, "draft": mode, "pages": len(run.records),
                       "tokens": tokens, "forward_passes": passes,
                       "tokens_per_forward_pass": round(tokens / max(passes, 1), 3),
                       "draft_tokens_accepted": run.total("draft_tokens_accepted"),
                       "wall_s": round(run.wall, 2), "cpu_s": round(run.cpu, 2),
                       "decode_wall_s": round(decode_wall, 2), "decode_cpu_s": round(decode_cpu, 2),
                       "decode_speedup": round(ref_wall / decode_wall, 2),
                       "decode_speedup_cpu": round(ref_cpu / decode_cpu, 2),
                       "identical": all(same_output(r, reference) for r in runs[mode]),
                       "finish": sorted(r["finish_reason"] for r in run.records)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\n| checkpoint | batch | draft | tokens/pass | accepted | decode s (cpu) | speedup (cpu) | identical |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['checkpoint']} | {r['batch']} | {r['draft']} | {r['tokens_per_forward_pass']} | "
              f"{r['draft_tokens_accepted']} | {r['decode_wall_s']} ({r['decode_cpu_s']}) | "
              f"{r['decode_speedup']} ({r['decode_speedup_cpu']}) | {r['identical']} |")


if __name__ == "__main__":
    main()
