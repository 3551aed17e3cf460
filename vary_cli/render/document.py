"""PageResults -> one output document (Markdown, Mathpix Markdown, LaTeX, plain text or JSON Lines).

`stream.convert_many` calls `render_document` once per input with every page's `PageResult`, and
`cli/convert.py` calls `format_from_suffix` to pick a format from `-o out.tex`. Nothing here reads or
writes files. Formats:

- mmd: the model's text as it is (Mathpix Markdown: `\\( \\)` math, `\\begin{tabular}` tables).
- md: GitHub-flavoured Markdown (`$` math, pipe or HTML tables; see markdown.py).
- tex: a complete LaTeX document that compiles (see latex.py); the engine it needs is on its first line.
- txt: the model's text, pages separated by form feeds. jsonl: one record per page, the raw text.

md and tex share one repair per page (mathpix.repair_page, texmath.repair_math).

Page markers (written before each page of a paged document, so a user can split the output and still
know which page each part came from, even with `--pages 3-5`; a single image gets no marker):

- md, mmd: `<!-- page 3 -->` on its own line. An HTML comment is invisible in every Markdown renderer
  and easy to split on (`re.split(r"<!-- page (\\d+) -->", text)`).
- tex: `% page 3` on its own line, a LaTeX comment.
- txt: a form feed `\\f` between pages, as `pdftotext` does, so `text.split("\\f")` gives the pages and
  tools built for pdftotext output (less, pr, grep -c) keep working. No page numbers in plain text.

Problem markers are visible in the rendered document, on their own line, one format for all:

- `[MISSING_PAGE_FAIL:3] <error>` in place of a page that failed (`finish_reason == "error"`), with the
  one-line error. The name is nougat's, so scripts that look for nougat's marker find ours.
- `[REPETITION_CUT:3]` after the kept text of a page whose generation was stopped by the repetition
  guard: the text before it is real, what followed it on the page is missing.
- `[LENGTH_CUT:3]` after the text of a page that hit the token limit (`finish_reason == "length"`): the
  page was longer than `--max-tokens`, the end of the page is missing.
- `[TEXT_LAYER_FALLBACK:3]` before text taken from the PDF's own text layer (`--fallback text-layer`,
  `finish_reason == "text-layer"`) for a page the model could not read: not model output.
- `[UNREPAIRABLE_MATH:3]` (md, tex) in place of math no repair could make valid; the model's text
  follows in a code span (md) or a comment (tex).

A single image uses page number 1 in markers. In LaTeX the underscores are escaped in the visible
marker (`\\_`, or the document would not compile) and the exact marker plus the error also go on a `%`
comment line, so `grep MISSING_PAGE_FAIL` works on every format.

`render_jsonl` writes one JSON object per page with the fixed keys of `JSONL_KEYS`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

from ..errors import InputError, one_line
from . import latex, markdown, mathpix
from .results import PageResult

FORMATS = ("md", "mmd", "tex", "txt", "jsonl")
SUFFIX_FOR_FORMAT = {"md": ".md", "mmd": ".mmd", "tex": ".tex", "txt": ".txt", "jsonl": ".jsonl"}
_FORMAT_FOR_SUFFIX = {".md": "md", ".markdown": "md", ".mmd": "mmd", ".tex": "tex", ".txt": "txt",
                      ".jsonl": "jsonl"}
JSONL_KEYS = ("source", "page", "text", "finish_reason", "tokens", "seconds", "error", "forward_passes",
              "draft_tokens_accepted")

FAIL_MARKER = "[MISSING_PAGE_FAIL:{page}]"
FALLBACK_MARKER = "[TEXT_LAYER_FALLBACK:{page}]"
REPETITION_MARKER = "[REPETITION_CUT:{page}]"
LENGTH_MARKER = "[LENGTH_CUT:{page}]"


def format_from_suffix(path: Path | str) -> str:
    """The output format a file name asks for: .md/.markdown -> md, .mmd, .tex, .txt, .jsonl; anything else md."""
    return _FORMAT_FOR_SUFFIX.get(Path(path).suffix.lower(), "md")


def render_document(results: Sequence[PageResult], fmt: str) -> str:
    """Join the pages of one document into `fmt` (one of FORMATS), with page and problem markers.

    Pages are put in page order (a resumed run may hand them over out of order). The result ends with
    exactly one newline, or is empty when there are no pages (tex: a document is always complete).

    Raises:
        InputError: `fmt` is not one of FORMATS.
    """
    if fmt not in FORMATS:
        raise InputError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "jsonl":
        return render_jsonl(results)
    pages = sorted(results, key=lambda r: r.page or 0)
    if not pages:
        return latex.document([], set()) if fmt == "tex" else ""
    # A document is "paged" when it came from a PDF or multi-page TIFF; only then do pages get markers.
    paged = len(pages) > 1 or pages[0].page is not None
    commands: set[str] = set()
    bodies = [_page_body(result, fmt, commands) for result in pages]
    if fmt == "txt":
        return "\f".join(bodies).rstrip("\n") + "\n"
    if not paged:
        text = bodies[0].rstrip("\n")
    else:
        marker = "% page {page}" if fmt == "tex" else "<!-- page {page} -->"
        text = "\n\n".join(f"{marker.format(page=r.page or 1)}\n{body}".rstrip("\n") for r, body in zip(pages, bodies))
    return latex.document([text], commands) if fmt == "tex" else text + "\n"


def render_page(result: PageResult, fmt: str) -> str:
    """One page's body in `fmt` (md, mmd, tex or txt) with its problem markers, as `render_document` writes
    it, without the page marker or LaTeX's preamble: what `vary serve`'s web page shows beside the page."""
    if fmt not in FORMATS or fmt == "jsonl":
        raise InputError(f"a page renders as one of {', '.join(f for f in FORMATS if f != 'jsonl')}, not {fmt!r}")
    return _page_body(result, fmt, set())


def render_jsonl(results: Sequence[PageResult]) -> str:
    """One JSON object per line and per page, keys in JSONL_KEYS order, in the order given."""
    lines = [json.dumps({key: getattr(r, key) for key in JSONL_KEYS}, ensure_ascii=False) for r in results]
    return "".join(line + "\n" for line in lines)


def _page_body(result: PageResult, fmt: str, commands: set[str]) -> str:
    page = result.page or 1
    if result.finish_reason == "error":
        return _marker(FAIL_MARKER.format(page=page), fmt, detail=one_line(result.error or "unknown error"))
    if result.finish_reason == "text-layer":
        return _join(_marker(FALLBACK_MARKER.format(page=page), fmt), _plain(result.text.strip(), fmt))
    text = _content(result.text.rstrip(), page, fmt, commands)
    if result.finish_reason == "repetition":
        return _join(text, _marker(REPETITION_MARKER.format(page=page), fmt))
    if result.finish_reason == "length":
        return _join(text, _marker(LENGTH_MARKER.format(page=page), fmt))
    return text


def _content(text: str, page: int, fmt: str, commands: set[str]) -> str:
    """The model's text of a page in `fmt`: as it is for mmd and txt, repaired and rewritten for md and tex."""
    if fmt not in ("md", "tex") or not text:
        return text
    repaired = mathpix.repair_page(text, page)
    if fmt == "md":
        return markdown.render_page(repaired)
    tex = latex.render_page(repaired)
    commands |= tex.commands
    return tex.body


def _plain(text: str, fmt: str) -> str:
    """Text that is not model output (the PDF's text layer), escaped so the format shows it as it is."""
    text = mathpix.clean_text(text)
    if fmt == "md":
        return markdown.escape_text(text)
    if fmt == "tex":
        return "\n\n".join(latex.escape(part) for part in re.split(r"\n\s*\n", text))
    return text


def _marker(marker: str, fmt: str, detail: str = "") -> str:
    line = f"{marker} {detail}".rstrip()
    if fmt == "md":
        return f"{marker} {markdown.escape_text(detail)}".rstrip()
    if fmt != "tex":
        return line
    # The comment keeps the exact, greppable marker and the error (which may hold LaTeX special
    # characters); the visible line only has the marker, escaped.
    return f"{latex.comment(line)}\n\\textbf{{{latex.escape(marker)}}}"


def _join(text: str, marker: str) -> str:
    return f"{text}\n\n{marker}" if text else marker
