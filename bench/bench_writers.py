"""Writer word survival: how many sample pages keep every word through `--format tex` and a TeX engine.

    python bench/bench_writers.py                 # every item of tests/render/writer_corpus.py
    python bench/bench_writers.py --only cyrillic # one item, with its missing words
    python bench/bench_writers.py --jobs 2        # compiles at once

Each item of the corpus (Mathpix, nougat, GOT and olmOCR style pages, see writer_corpus.py) is rendered
alone by `render_document` as one page of a tex document and compiled by xelatex and by pdflatex. The
PDF's words (pypdfium2, and pdftotext) are compared with the words a reader sees in the input, under
the engine the .tex declares, and under pdflatex too for items without a non-Latin script. It prints
one JSON object per item and engine, then a summary per engine: pages compiled, pages whose words all
survive (both extractors, no markup as text), the lowest share of words kept by any page, pages below
98% in pdftotext, pages showing LaTeX or HTML markup as text or missing glyphs; and for md, the math
spans markdown-it + dollarmath finds.
Run it on older code with `PYTHONPATH=/path/to/old/tree python bench/bench_writers.py` (the corpus is
read from this tree's tests/).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "render"))

import writer_corpus as corpus  # noqa: E402
from markdown_it import MarkdownIt  # noqa: E402
from mdit_py_plugins.dollarmath import dollarmath_plugin  # noqa: E402

from vary_cli.render.document import render_document  # noqa: E402
from vary_cli.render.results import PageResult  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="one item by name; prints its missing words")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    items = [item for item in corpus.ITEMS if args.only in (None, item.name)]
    # Every item is compiled by both engines; its words are counted where they can survive: under the engine
    # the .tex declares, and under pdflatex for items without a non-Latin script.
    jobs = [(item, engine) for item in items for engine in ("xelatex", "pdflatex") if corpus.have(engine)]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder, ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda job: _measure(*job, Path(folder)), jobs))
    for row in rows:
        if not args.only:
            row.pop("missing")
        print(json.dumps(row, ensure_ascii=False))
    md = [_markdown_math(item) for item in items]
    summary = {"items": len(items), "seconds": round(time.perf_counter() - started, 1)}
    for engine in ("xelatex", "pdflatex"):
        everything = [row for row in rows if row["engine"] == engine]
        mine = [row for row in everything if row["words_expected"]]
        if not everything:
            continue
        summary[engine] = {
            "compiled": sum(row["compiled"] for row in everything), "of": len(everything),
            "word_checked": len(mine),
            # The headline: every word found by both extractors, and no markup printed as text.
            "pages_all_words_no_markup": sum(row["pdfium"] == row["pdftotext"] == 1.0 and not row["leaked"]
                                             for row in mine),
            "all_words_pdfium": sum(row["pdfium"] == 1.0 for row in mine),
            "all_words_pdftotext": sum(row["pdftotext"] == 1.0 for row in mine),
            "lowest_share_pdftotext": min((row["pdftotext"] for row in mine), default=None),
            "items_below_98pct_pdftotext": sum(row["pdftotext"] < 0.98 for row in mine),
            "items_with_markup_as_text": sum(bool(row["leaked"]) for row in mine),
            "items_with_missing_glyphs": sum(row["missing_glyphs"] > 0 for row in mine)}
    summary["md_math_spans"] = {"found": sum(f for f, _ in md), "expected": sum(e for _, e in md),
                                "items_with_all": sum(f >= e for f, e in md)}
    print(json.dumps(summary))


def _page(item: corpus.Item) -> PageResult:
    return PageResult(source=f"{item.name}.pdf", text=item.text, finish_reason="stop", tokens=1, seconds=0.0, page=1)


def _measure(item: corpus.Item, engine: str, folder: Path) -> dict:
    tex = render_document([_page(item)], "tex")
    pdf, log = corpus.compile_tex(tex, folder / f"{item.name}-{engine}", engine)
    declared = "xelatex" if tex.startswith("% !TEX program = xelatex") else "pdflatex"
    row = {"item": item.name, "style": item.style, "engine": engine, "compiled": pdf is not None,
           "words_expected": engine == declared or not item.scripts,
           "pdfium": 0.0, "order": 0.0, "pdftotext": 0.0, "leaked": [], "missing": [],
           "missing_glyphs": log.count("Missing character")}
    if pdf is None:
        return row
    expected = corpus.expected_words(item.text)
    for tool in ("pdfium", "pdftotext"):
        text = corpus.pdf_text(pdf, tool)
        share, missing, order = corpus.survival(expected, corpus.pdf_words(text))
        row[tool] = round(share, 3)
        if tool == "pdfium":
            row["order"], row["missing"] = round(order, 3), missing
            row["leaked"] = corpus.leaked_markup(text)[:5]
    return row


def _markdown_math(item: corpus.Item) -> tuple[int, int]:
    """(math spans markdown-it + dollarmath finds in the md output, math spans of the input)."""
    md = render_document([_page(item)], "md")
    try:  # the Markdown writer's own reader, with its dollarmath work-around
        from vary_cli.render.markdown import parser
        tokens = parser().parse(md)
    except ImportError:  # older trees: plain markdown-it + dollarmath
        tokens = MarkdownIt("commonmark").enable(["table"]).use(dollarmath_plugin, allow_space=False,
                                                                  allow_digits=False).parse(md)
    found = sum(t.type == "math_block" for t in tokens)
    found += sum(c.type == "math_inline" for t in tokens if t.type == "inline" for c in t.children or [])
    found += sum(len(re.findall(r"(?<!\\)\$[^$]+\$", t.content)) for t in tokens if t.type == "html_block")
    return found, len(corpus._MATH.findall(item.text))


if __name__ == "__main__":
    main()
