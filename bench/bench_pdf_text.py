"""Text-layer benchmark: vary's reading-order extractor against pdftotext, pypdfium2 raw and PyMuPDF.

The pages and their tests are in bench/pdf_text_corpus.json: public born-digital pages from the test
data of allenai/olmocr (olmOCR-bench's sample pages with its own "present" and "order" tests),
jsvine/pdfplumber and pdfminer/pdfminer.six (tests written here by reading the rendered page). The PDFs
are not committed: the bench reads them from the `fetch` snapshots under /work/.mirror (or --mirror),
at the commit the corpus names, and skips a source whose snapshot is absent, saying so.

A test passes as in olmOCR-bench (olmocr/bench/tests.py): the text is normalised (whitespace runs to
one space, NFC, curly quotes and dashes to ASCII); "present" passes when rapidfuzz's partial_ratio
reaches 1 - max_diffs/len(text); "order" passes when `before` is found (within max_diffs edits) at a
place before a place where `after` is found. The time is per page, from the opened page to its text
(for pdftotext, the whole process, as a user runs it), the fastest of --repeat runs, in wall-clock and in
CPU time (the CPU column holds up on a shared, loaded machine; vary's first page also loads the hyphen
rule's word list, about 0.7 s once a process).

    python bench/bench_pdf_text.py                 # the table for all pages, and for the held-out ones
    python bench/bench_pdf_text.py --show vary     # also each failed test of one extractor
    python bench/bench_pdf_text.py --dump DIR      # every extractor's text of every page into DIR

PyMuPDF is a comparison only (AGPL; `pip install pymupdf`, never a dependency of vary-cli).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CORPUS = Path(__file__).resolve().parent / "pdf_text_corpus.json"
MIRROR = Path("/work/.mirror")
QUOTES = {"‘": "'", "’": "'", "‚": "'", "“": '"', "”": '"', "„": '"', "＿": "_", "–": "-", "—": "-", "‑": "-",
          "‒": "-", "−": "-", "\u00b5": "\u03bc"}


def normalize(text: str) -> str:
    """olmOCR-bench's normalize_text, less its Markdown rules (no extractor here writes Markdown)."""
    text = unicodedata.normalize("NFC", re.sub(r"\s+", " ", text))
    for fancy, plain in QUOTES.items():
        text = text.replace(fancy, plain)
    return text


def _places(query: str, text: str, max_diffs: int) -> list[int]:
    """Where `query` starts in `text`: every exact place, or the best fuzzy one within max_diffs edits."""
    from rapidfuzz import fuzz
    from rapidfuzz.distance import Levenshtein

    places = [m.start() for m in re.finditer(re.escape(query), text)]
    if places or max_diffs == 0:
        return places
    found = fuzz.partial_ratio_alignment(query, text)
    if found is None:
        return []
    # partial_ratio aligns a window as long as the query; allow the window to grow or shrink by max_diffs.
    start = found.dest_start
    for lo in range(max(0, start - max_diffs), start + max_diffs + 1):
        for length in range(len(query) - max_diffs, len(query) + max_diffs + 1):
            if Levenshtein.distance(query, text[lo:lo + length], score_cutoff=max_diffs) <= max_diffs:
                return [lo]
    return []


def passes(test: dict, text: str) -> bool:
    """One olmOCR-bench style test on an extractor's text."""
    from rapidfuzz import fuzz

    text, max_diffs = normalize(text), test.get("max_diffs", 0)
    if test["type"] == "present":
        query = normalize(test["text"])
        return fuzz.partial_ratio(query, text) / 100 >= 1 - max_diffs / max(len(query), 1)
    before = _places(normalize(test["before"]).strip(), text, max_diffs)
    after = _places(normalize(test["after"]).strip(), text, max_diffs)
    return bool(before and after and min(before) < max(after))


# -- extractors: each takes (path, 0-based page index) and returns (text, wall seconds, CPU seconds) ----

def vary(path: Path, index: int) -> tuple[str, float]:
    import pypdfium2 as pdfium

    from vary_cli.convert.pdf_text import page_chars, page_text

    pdf = pdfium.PdfDocument(str(path))
    page = pdf[index]
    began, cpu = time.perf_counter(), time.process_time()
    textpage = page.get_textpage()
    text = page_text(page_chars(textpage)).text
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    textpage.close(), page.close(), pdf.close()
    return text, seconds, cpu


def pdfium_raw(path: Path, index: int) -> tuple[str, float]:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    page = pdf[index]
    began, cpu = time.perf_counter(), time.process_time()
    textpage = page.get_textpage()
    text = textpage.get_text_range()
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    textpage.close(), page.close(), pdf.close()
    return text, seconds, cpu


def pdftotext(path: Path, index: int) -> tuple[str, float]:
    began, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(["pdftotext", "-q", "-enc", "UTF-8", "-f", str(index + 1), "-l", str(index + 1),
                           str(path), "-"], capture_output=True, check=False)
    return done.stdout.decode("utf-8", "replace"), time.perf_counter() - began, _children_cpu() - cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pymupdf(path: Path, index: int) -> tuple[str, float]:
    import pymupdf as fitz

    doc = fitz.open(str(path))
    page = doc[index]
    began, cpu = time.perf_counter(), time.process_time()
    text = page.get_text()
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    doc.close()
    return text, seconds, cpu


EXTRACTORS = {"vary": vary, "pdftotext": pdftotext, "pypdfium2-raw": pdfium_raw, "pymupdf": pymupdf}


def available() -> dict:
    out = dict(EXTRACTORS)
    if shutil.which("pdftotext") is None:
        print("skipping pdftotext: not installed (apt-get install poppler-utils)")
        del out["pdftotext"]
    try:
        import pymupdf as _  # noqa: F401
    except ImportError:
        print("skipping pymupdf: not installed (pip install pymupdf; a comparison only, never a dependency)")
        del out["pymupdf"]
    return out


def materialise(corpus: dict, mirror: Path, into: Path) -> dict[str, Path]:
    """Each page's PDF written from its snapshot into `into`; the pages whose snapshot is absent are left out."""
    paths: dict[str, Path] = {}
    for key, source in corpus["sources"].items():
        repo = mirror / source["repo"].replace("/", "+") / "repo"
        if not repo.is_dir():
            print(f"skipping {key}: no snapshot at {repo} (fetch github:{source['repo']} first)")
            continue
        for page in corpus["pages"]:
            if page["source"] != key or page["path"] in paths:
                continue
            blob = subprocess.run(["git", "-C", str(repo), "show", f"{source['commit']}:{page['path']}"],
                                  capture_output=True, check=False)
            if blob.returncode:
                print(f"skipping {key}:{page['path']}: not in the snapshot at {source['commit'][:10]}")
                continue
            target = into / key / page["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blob.stdout)
            paths[page["path"]] = target
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--mirror", type=Path, default=MIRROR)
    parser.add_argument("--show", help="print each failed test of this extractor")
    parser.add_argument("--dump", type=Path, help="write every extractor's text of every page here")
    parser.add_argument("--only", help="run only the pages whose path contains this")
    parser.add_argument("--repeat", type=int, default=3, help="time each page this often, keep the fastest")
    args = parser.parse_args()
    corpus = json.loads(args.corpus.read_text(encoding="utf-8"))
    extractors = available()
    with tempfile.TemporaryDirectory() as tmp:
        paths = materialise(corpus, args.mirror, Path(tmp))
        pages = [p for p in corpus["pages"] if p["path"] in paths and (not args.only or args.only in p["path"])]
        if not pages:
            print("no page of the corpus is available: nothing measured")
            return
        rows = {name: {"all": [0, 0, 0, 0], "held_out": [0, 0, 0, 0], "ms": [], "cpu": []} for name in extractors}
        for page in pages:
            for name, extract in extractors.items():
                runs = [extract(paths[page["path"]], page["page"] - 1) for _ in range(max(args.repeat, 1))]
                text = runs[0][0]
                rows[name]["ms"].append(1000 * min(run[1] for run in runs))
                rows[name]["cpu"].append(1000 * min(run[2] for run in runs))
                if args.dump:
                    out = args.dump / name / f"{page['source']}__{page['path'].replace('/', '__')}_p{page['page']}.txt"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_text(text, encoding="utf-8")
                for test in page["tests"]:
                    ok = passes(test, text)
                    column = 0 if test["type"] == "present" else 2
                    for split in ("all", "held_out") if page.get("held_out") else ("all",):
                        rows[name][split][column] += ok
                        rows[name][split][column + 1] += 1
                    if not ok and name == args.show:
                        what = test.get("text") or f"{test['before'][:50]!r} < {test['after'][:50]!r}"
                        print(f"FAIL {page['source']}:{page['path']} p{page['page']} {test['type']}: {what[:110]}")
    print(f"\n{len(pages)} pages, {sum(len(p['tests']) for p in pages)} tests "
          f"({sum(len(p['tests']) for p in pages if p.get('held_out'))} on held-out pages)")
    print(f"{'extractor':<15}{'present':>10}{'order':>9}{'total':>10}{'held-out':>10}{'median ms':>11}{'max ms':>8}")
    for name, row in rows.items():
        a, h = row["all"], row["held_out"]
        print(f"{name:<15}{a[0]:>5}/{a[1]:<4}{a[2]:>4}/{a[3]:<4}{a[0] + a[2]:>5}/{a[1] + a[3]:<4}"
              f"{h[0] + h[2]:>5}/{h[1] + h[3]:<4}{statistics.median(row['ms']):>11.1f}{max(row['ms']):>8.0f}"
              f"{statistics.median(row['cpu']):>15.1f}")


if __name__ == "__main__":
    main()
