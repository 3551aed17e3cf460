"""Words survive `--format tex`: the corpus of writer_corpus.py compiled by xelatex and pdflatex, its PDF read back.

All items go into one document per engine, each item on pages between sentinel pages, and the PDF's text
(pypdfium2 and pdftotext) is cut at the sentinels. Every word a reader sees in an item must be in its
part of the PDF (and in order, for tables and scripts), no LaTeX or HTML markup may show as text, and
xelatex may miss no character. Skipped without the engine; an item whose fonts this machine lacks
(convert/fonts.py says so) is left out of the word check, by name.
"""

from __future__ import annotations

import re
import shutil

import pytest

import writer_corpus as corpus
from vary_cli.convert.fonts import missing_glyphs
from vary_cli.render.document import render_document
from vary_cli.render.results import PageResult

SENTINEL = "Zqxsentinel{}zqx"


def compiled(items, engine, folder):
    pages = []
    for k, item in enumerate(items):
        pages.append(PageResult("corpus.pdf", SENTINEL.format(k), "stop", 1, 0.0, len(pages) + 1))
        pages.append(PageResult("corpus.pdf", item.text, "stop", 1, 0.0, len(pages) + 1))
    pages.append(PageResult("corpus.pdf", SENTINEL.format(len(items)), "stop", 1, 0.0, len(pages) + 1))
    # Each page on a page of its own, so that an item's footnotes stay before the next sentinel.
    tex = re.sub(r"^(% page \d+)$", r"\\clearpage\n\1", render_document(pages, "tex"), flags=re.M)
    pdf, log = corpus.compile_tex(tex, folder, engine)
    assert pdf is not None, log[log.find("\n!"):][:1500]
    return pdf, log


def per_item(text, count):
    """The PDF's words between sentinel k and k+1, for each item k."""
    words = corpus.pdf_words(text)
    marks = [words.index(SENTINEL.format(k).lower()) for k in range(count + 1)]
    return [words[marks[k] + 1:marks[k + 1]] for k in range(count)]


def check(items, pdf):
    problems = []
    for tool in ("pdfium", "pdftotext"):
        text = corpus.pdf_text(pdf, tool)
        leaked = corpus.leaked_markup(text)
        if leaked:
            problems.append(f"{tool}: markup printed as text: {leaked[:5]}")
        for item, found in zip(items, per_item(text, len(items))):
            share, missing, order = corpus.survival(corpus.expected_words(item.text), found)
            if share < 1.0:
                problems.append(f"{item.name} ({tool}): missing {missing[:8]}")
            # Tables and scripts must read in order (pdftotext lays out ActualText spans apart).
            if tool == "pdfium" and (item.scripts or "tabular" in item.text or "|---|" in item.text) and order < 1.0:
                problems.append(f"{item.name}: words out of order ({order:.2f})")
    return problems


@pytest.mark.skipif(shutil.which("xelatex") is None, reason="xelatex is not installed (Debian: texlive-xetex)")
def test_every_word_of_every_item_reaches_the_xelatex_pdf(tmp_path):
    unavailable = [item.name for item in corpus.ITEMS if missing_glyphs(item.text)]
    items = [item for item in corpus.ITEMS if item.name not in unavailable]
    pdf, log = compiled(items, "xelatex", tmp_path)
    assert not check(items, pdf)
    assert re.findall(r"Missing character: There is no (.)", log) == []
    if unavailable:  # visible in the report, not a silent pass
        pytest.skip(f"fonts missing here for {unavailable} (Debian: fonts-noto-core fonts-noto-cjk); the rest passed")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed (Debian: texlive-latex-base)")
def test_every_word_of_every_latin_item_reaches_the_pdflatex_pdf(tmp_path):
    items = [item for item in corpus.ITEMS if not item.scripts]
    pdf, _ = compiled(items, "pdflatex", tmp_path)
    assert not check(items, pdf)


def test_the_word_check_notices_lost_words():
    """The check itself: a dropped cell, a word cut at the page edge, or printed markup is caught."""
    expected = corpus.expected_words(r"\begin{tabular}{|p{0.3\textwidth}|l|} Alpha & Beta \\ \end{tabular} \label{x}")
    assert expected == ["alpha", "beta"]
    assert corpus.survival(expected, ["alpha"])[:2] == (0.5, ["beta"])
    assert corpus.survival(expected, ["beta", "alpha"])[2] == 0.5
    assert corpus.leaked_markup(r"text \textbf{x} <td>y</td>") == ["\\textbf", "<td>", "</td>"]
