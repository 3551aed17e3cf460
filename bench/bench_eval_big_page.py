"""`vary eval score` on one runaway page: a single-line prediction of --mb megabytes against a normal page.

    python bench/bench_eval_big_page.py            # 20 MB prediction, ~5,000-character ground truth
    python bench/bench_eval_big_page.py --mb 5

A prediction that loops for megabytes (one line, no newline) must not stall a scoring run: past
eval/score.py's METEOR_MAX_TOKENS its METEOR is left out (nltk's METEOR is quadratic in page length) and a
note says so. Runs `vary eval score ... --json --report --per-page` in a fresh process (imports and WordNet
loading included) beside one ordinary page, and prints the seconds and the note as a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The page's words, and the loop's: none of the loop's is on the page, so nltk's METEOR compares every
# looped word with every page word (a model looping on text that is not there; the costly case).
PAGE_WORDS = "house home car run quick big small happy begin end buy the of and a to in is".split()
LOOP_WORDS = "dwelling automobile sprint fast large little glad start finish purchase".split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=20.0, help="Size of the runaway prediction in MB.")
    parser.add_argument("--root", type=Path, default=ROOT, help="The vary-cli checkout to run (to time another).")
    args = parser.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        pred, gt = Path(tmp) / "pred", Path(tmp) / "gt"
        pred.mkdir(), gt.mkdir()
        words, size = [], 0
        while size < args.mb * 1e6:
            words.append(rng.choice(LOOP_WORDS))
            size += len(words[-1]) + 1
        (pred / "runaway.md").write_text(" ".join(words))
        (gt / "runaway.md").write_text(" ".join(rng.choice(PAGE_WORDS) for _ in range(800)) + "\n")
        (pred / "normal.md").write_text("one two three four five\n")
        (gt / "normal.md").write_text("one two three four six\n")
        started = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "vary_cli", "eval", "score", str(pred), str(gt), "--json",
                              "--report", str(Path(tmp) / "r.html"), "--per-page", str(Path(tmp) / "p.jsonl")],
                             capture_output=True, text=True, cwd=args.root, env={**os.environ, "PYTHONPATH": str(args.root)})
        seconds = time.perf_counter() - started
        data = json.loads(run.stdout) if run.returncode == 0 else {}
        print(json.dumps({"mb": args.mb, "exit": run.returncode, "seconds": round(seconds, 1), "cpus": os.cpu_count(),
                          "notes": data.get("notes"), "stderr": run.stderr.strip()[-300:] if run.returncode else ""}))


if __name__ == "__main__":
    main()
