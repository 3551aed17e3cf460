"""convert/fonts.py: characters of a tex output that no installed font has are named in the run summary."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from test_convert import make_pdf
from vary_cli.cli.app import app
from vary_cli.convert.fonts import missing_glyphs, missing_glyphs_by_page
from vary_cli.convert.output import PageStore, source_fingerprint
from vary_cli.render.results import PageResult

# U+0378 is an unassigned code point in the Greek block: the Greek font is picked for it and has no glyph.
NO_GLYPH = "\u0378"

needs_fontconfig = pytest.mark.skipif(shutil.which("fc-match") is None, reason="fontconfig (fc-match) is not installed")


@needs_fontconfig
def test_characters_without_a_font_are_found_once_each():
    assert missing_glyphs(f"plain ascii {NO_GLYPH} and {NO_GLYPH} again é") == NO_GLYPH
    assert missing_glyphs("x\u200c\u200dy") == ""  # joiners draw nothing


@needs_fontconfig
def test_only_tex_pages_that_render_are_checked():
    pages = [PageResult("a.pdf", f"a {NO_GLYPH}", "stop", 1, 0.0, 1), PageResult("a.pdf", "b", "stop", 1, 0.0, 2),
             PageResult("a.pdf", "", "error", 0, 0.0, 3, error=f"x {NO_GLYPH}")]
    assert missing_glyphs_by_page(pages, "tex") == {1: NO_GLYPH}
    assert missing_glyphs_by_page(pages, "md") == {}


@needs_fontconfig
def test_the_run_summary_names_pages_with_missing_glyphs(tmp_path):
    source = make_pdf(tmp_path / "doc.pdf", 2)
    output = tmp_path / "doc.tex"
    with PageStore(output, source_fingerprint(source), "settings") as store:
        store.add(PageResult(str(source), "Fine text.", "stop", 2, 0.1, 1))
        store.add(PageResult(str(source), f"Odd {NO_GLYPH} text.", "stop", 3, 0.1, 2))
    result = CliRunner().invoke(app, ["convert", str(source), "-o", str(output), "--assemble-only"])
    assert result.exit_code == 0, result.output
    assert "page(s) 2: no installed font has" in result.output and "U+0378" in result.output
    assert "1 page(s) with characters no installed font has" in result.output
    assert output.read_text().startswith("% !TEX program = xelatex")
