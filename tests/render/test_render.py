"""render/document.py: page markers per format, failure/repetition/length/fallback markers, JSON Lines fields, suffixes."""

from __future__ import annotations

import json
import re

import pytest

from vary_cli.errors import InputError
from vary_cli.render.document import JSONL_KEYS, format_from_suffix, render_document, render_jsonl
from vary_cli.render.results import PageResult


def page(n, text="", reason="stop", error=None, source="doc.pdf"):
    return PageResult(source=source, text=text, finish_reason=reason, tokens=len(text), seconds=0.5, page=n,
                      error=error)


PAGES = [page(1, "# Title\n\nFirst page.\n"), page(2, "Second $x_1$ page."), page(3, "Third.")]


def test_markdown_page_markers_split_back_into_pages():
    out = render_document(PAGES, "md")
    assert out == ("<!-- page 1 -->\n# Title\n\nFirst page.\n\n<!-- page 2 -->\nSecond $x_1$ page.\n\n"
                   "<!-- page 3 -->\nThird.\n")
    parts = re.split(r"<!-- page (\d+) -->\n", out)[1:]
    assert [int(n) for n in parts[0::2]] == [1, 2, 3]
    assert [p.strip() for p in parts[1::2]] == ["# Title\n\nFirst page.", "Second $x_1$ page.", "Third."]


def body(tex):
    """What a LaTeX document holds between \\begin{document} and \\end{document}."""
    return tex.split("\\begin{document}\n", 1)[1].rsplit("\\end{document}", 1)[0]


def test_latex_page_markers_are_comments():
    out = render_document(PAGES[1:], "tex")
    assert out.startswith("\\documentclass{article}\n") and out.endswith("\\end{document}\n")
    assert body(out) == "% page 2\nSecond $x_1$ page.\n\n% page 3\nThird.\n"


def test_mmd_is_the_model_text_with_page_markers():
    pages = [page(1, "A \\(x\\) $5 \\begin{tabular}{c} a \\end{tabular}"), page(2, "B")]
    assert render_document(pages, "mmd") == ("<!-- page 1 -->\nA \\(x\\) $5 \\begin{tabular}{c} a \\end{tabular}\n\n"
                                             "<!-- page 2 -->\nB\n")


def test_markdown_rewrites_math_and_escapes_dollars():
    out = render_document([page(1, "Costs $5, so \\(x^2\\) and\n\\[ y \\]")], "md")
    assert out == "<!-- page 1 -->\nCosts \\$5, so $x^2$ and\n\n$$\ny\n$$\n"


def test_text_pages_are_separated_by_form_feeds():
    out = render_document(PAGES, "txt")
    assert out.split("\f") == ["# Title\n\nFirst page.", "Second $x_1$ page.", "Third.\n"]


def test_pages_are_put_in_page_order():
    assert render_document([PAGES[2], PAGES[0], PAGES[1]], "md") == render_document(PAGES, "md")


def test_single_image_has_no_page_marker():
    single = PageResult(source="a.png", text="Hello\n\n", finish_reason="stop", tokens=2, seconds=0.1)
    assert render_document([single], "md") == "Hello\n"
    assert render_document([single], "mmd") == "Hello\n"
    assert body(render_document([single], "tex")) == "Hello\n"
    assert render_document([single], "txt") == "Hello\n"


def test_failed_page_marker_carries_the_error():
    results = [PAGES[0], page(2, "", "error", error="page 2 could not be rendered\n(poppler: bad)"), PAGES[2]]
    md = render_document(results, "md")
    assert "<!-- page 2 -->\n[MISSING_PAGE_FAIL:2] page 2 could not be rendered (poppler: bad)\n" in md
    assert md.count("[MISSING_PAGE_FAIL") == 1
    txt = render_document(results, "txt")
    assert txt.split("\f")[1] == "[MISSING_PAGE_FAIL:2] page 2 could not be rendered (poppler: bad)"


def test_repetition_and_length_markers_follow_the_kept_text():
    results = [page(1, "a b a b a b", "repetition"), page(2, "long page", "length"), page(3, "", "repetition")]
    md = render_document(results, "md")
    assert "<!-- page 1 -->\na b a b a b\n\n[REPETITION_CUT:1]\n" in md
    assert "<!-- page 2 -->\nlong page\n\n[LENGTH_CUT:2]\n" in md
    assert "<!-- page 3 -->\n[REPETITION_CUT:3]\n" in md


def test_latex_markers_compile_and_stay_greppable():
    results = [page(1, "x", "repetition"), page(2, "", "error", error="bad $ & _ input")]
    tex = render_document(results, "tex")
    assert "% [REPETITION_CUT:1]\n\\textbf{[REPETITION\\_CUT:1]}" in tex
    assert "% [MISSING_PAGE_FAIL:2] bad $ & _ input\n\\textbf{[MISSING\\_PAGE\\_FAIL:2]}" in tex
    # Outside comments, no bare underscore or error text that LaTeX would choke on.
    visible = "\n".join(line for line in body(tex).splitlines() if not line.startswith("%"))
    assert "bad $" not in visible and re.search(r"(?<!\\)_", visible) is None


def test_jsonl_has_one_object_per_page_with_fixed_keys():
    results = [PAGES[0], page(2, "", "error", error="boom"),
               PageResult(source="b.png", text="ünï\u2028code", finish_reason="stop", tokens=3, seconds=1.0)]
    out = render_jsonl(results)
    lines = out.split("\n")
    assert lines[-1] == "" and len(lines) == 4
    records = [json.loads(line) for line in lines[:-1]]
    assert [list(r) for r in records] == [list(JSONL_KEYS)] * 3
    assert records[1] == {"source": "doc.pdf", "page": 2, "text": "", "finish_reason": "error", "tokens": 0,
                          "seconds": 0.5, "error": "boom", "forward_passes": 0, "draft_tokens_accepted": 0}
    assert records[2]["page"] is None and records[2]["text"] == "ünï\u2028code"
    assert render_document(results, "jsonl") == out


def test_text_layer_fallback_is_marked_and_escaped():
    results = [page(1, "50% of $5 <b>", "text-layer")]
    assert render_document(results, "md") == "<!-- page 1 -->\n[TEXT_LAYER_FALLBACK:1]\n\n50% of \\$5 \\<b\\>\n"
    assert render_document(results, "mmd") == "<!-- page 1 -->\n[TEXT_LAYER_FALLBACK:1]\n\n50% of $5 <b>\n"
    tex = body(render_document(results, "tex"))
    assert tex == ("% page 1\n% [TEXT_LAYER_FALLBACK:1]\n\\textbf{[TEXT\\_LAYER\\_FALLBACK:1]}\n\n"
                   "50\\% of \\$5 \\textless{}b\\textgreater{}\n")


def test_tex_declares_xelatex_only_when_the_text_needs_it():
    assert not render_document([page(1, "plain")], "tex").startswith("%")
    unicode = render_document([page(1, "naïve 中文")], "tex")
    assert unicode.startswith("% !TEX program = xelatex\n") and "xeCJK" in unicode
    assert "xeCJK" not in render_document([page(1, "naïve")], "tex")


def test_empty_and_unknown_format():
    assert render_document([], "md") == ""
    assert body(render_document([], "tex")) == "\\mbox{}\n"
    with pytest.raises(InputError, match="md, mmd, tex, txt, jsonl"):
        render_document(PAGES, "html")


@pytest.mark.parametrize("name, fmt", [("out.md", "md"), ("OUT.Markdown", "md"), ("a/b.tex", "tex"), ("p.mmd", "mmd"),
                                       ("x.txt", "txt"), ("x.jsonl", "jsonl"), ("x.html", "md"), ("noext", "md")])
def test_format_from_suffix(name, fmt):
    assert format_from_suffix(name) == fmt


def test_math_at_the_start_of_a_paragraph_is_math_in_md_and_tex():
    from vary_cli.render.markdown import parser

    md = render_document([page(1, "$0.25$ 1000\n\n\\(x\\) is 5")], "md")
    tokens = parser().parse(md)
    assert [c.content for t in tokens if t.type == "inline" for c in t.children if c.type == "math_inline"] == \
        ["0.25", "x"]
    assert "$0.25$ 1000" in body(render_document([page(1, "$0.25$ 1000")], "tex"))
