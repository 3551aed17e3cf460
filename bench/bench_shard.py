"""pages/s of one `vary convert` process against two under torchrun, one CPU thread each: sharding costs nothing.

    python bench/bench_shard.py                      # 24 pages, a small random Vary-toy-shaped model
    python bench/bench_shard.py --pages 48 --hidden 768 --max-new-tokens 32

Writes a seeded random checkpoint in the release layout (the tests' tiny geometry at `--hidden` LLM
width) and a few PDFs, then converts them once with one process and once with
`torchrun --standalone --nproc-per-node 2`, each process with OMP_NUM_THREADS=1, alternating for
`--rounds`. pages/s counts the conversion itself (each rank's summary line: its pages over its own
time; overall: all pages over the slowest rank's time), not interpreter start-up and model loading,
which are printed apart as wall seconds. Also checks that both runs wrote the same files.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "convert")]

SUMMARY = re.compile(r"(\d+) page\(s\), \d+ failed page\(s\).*?([\d.]+) pages/s")


def convert(command: list[str], out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    run = subprocess.run(command + ["--out-dir", str(out)], env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    ranks = [(int(pages), float(rate)) for pages, rate in SUMMARY.findall(run.stderr)]
    pages = sum(p for p, _ in ranks)
    slowest = max(p / r for p, r in ranks if r > 0)
    # pages_per_s: all pages over the slowest rank's time (what a user waits for; with few pages the
    # hash may give one rank more); sum_of_rank_rates: the throughput while every rank is busy.
    return {"processes": len(ranks), "pages": pages, "pages_per_rank": [p for p, _ in ranks],
            "rank_pages_per_s": [r for _, r in ranks], "pages_per_s": round(pages / slowest, 3),
            "sum_of_rank_rates": round(sum(r for _, r in ranks), 3), "wall_s_with_startup": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=24)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()

    from conftest import make_checkpoint, tiny_config
    from test_convert import make_pdf

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = make_checkpoint(tmp / "model", tiny_config(hidden=args.hidden))
        docs = tmp / "docs"
        docs.mkdir()
        for i, size in enumerate(_split(args.pages, 3)):
            make_pdf(docs / f"doc{i}.pdf", size)
        cli = ["convert", str(docs), "--model", str(checkpoint), "--max-new-tokens", str(args.max_new_tokens),
               "--batch-size", str(args.batch_size), "--format", "md"]
        one = [sys.executable, "-m", "vary_cli", *cli]
        two = ["torchrun", "--standalone", "--nproc-per-node", "2", "-m", "vary_cli", *cli]
        results: dict[str, list[dict]] = {"1 process": [], "2 processes (torchrun)": []}
        for round_ in range(args.rounds):
            for name, command in zip(results, (one, two)):
                out = tmp / f"out-{round_}-{len(results[name])}-{name[0]}"
                result = convert(command, out)
                results[name].append({**result, "files": sorted(str(p.relative_to(out)) for p in out.rglob("*"))})
                print(json.dumps({"run": name, **{k: v for k, v in result.items()}}), flush=True)
        files = {json.dumps(r["files"]) for rs in results.values() for r in rs}
        best = {name: max(r["pages_per_s"] for r in rs) for name, rs in results.items()}
        busy = {name: max(r["sum_of_rank_rates"] for r in rs) for name, rs in results.items()}
        two, one = "2 processes (torchrun)", "1 process"
        print(json.dumps({"summary": best, "two_over_one": round(best[two] / best[one], 2),
                          "two_over_one_while_busy": round(busy[two] / busy[one], 2),
                          "same_files": len(files) == 1}), flush=True)


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


if __name__ == "__main__":
    main()
