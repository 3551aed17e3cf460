"""Render benchmark: the md/tex writers and the TeX compile of tests/render/test_documents.py's corpus.

    python bench/bench_render.py              # render + compile once with the engine the .tex declares
    python bench/bench_render.py --repeat 3   # best of 3

It builds the same pages the test does (tricky cases, 2,000 random Qwen tokens, 300 random math
"soups"), times `render_document` for md and tex, then runs the declared engine once on the .tex
(`-interaction=nonstopmode -halt-on-error`). Results print as one JSON object per measurement.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "render"))

import pytest  # noqa: E402,F401  (test_documents imports it)

import test_documents as corpus  # noqa: E402
from vary_cli.render.document import render_document  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    pages = corpus.pages.__wrapped__(corpus.qwen_text.__wrapped__())
    characters = sum(len(p.text) for p in pages)
    for fmt in ("md", "tex"):
        best = min(_timed(lambda: render_document(pages, fmt)) for _ in range(args.repeat))
        print(json.dumps({"measure": f"render_{fmt}", "pages": len(pages), "characters": characters,
                          "seconds": round(best, 3)}))
    tex = render_document(pages, "tex")
    engine = re.match(r"% !TEX program = (\w+)", tex)
    engine = engine.group(1) if engine else "pdflatex"
    if shutil.which(engine) is None:
        print(json.dumps({"measure": "compile", "engine": engine, "skipped": "not installed"}))
        return
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "corpus.tex").write_text(tex, encoding="utf-8")
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            run = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", "corpus.tex"], cwd=folder,
                                 capture_output=True, text=True, errors="replace")
            times.append(time.perf_counter() - started)
        pdf_pages = re.search(r"Output written on corpus.pdf \((\d+) page", run.stdout)
        print(json.dumps({"measure": "compile", "engine": engine, "returncode": run.returncode,
                          "pdf_pages": int(pdf_pages.group(1)) if pdf_pages else None,
                          "tex_bytes": len(tex.encode()), "seconds": round(min(times), 3)}))


def _timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
