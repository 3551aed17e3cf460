"""render/scripts.py and its use in latex.py: every script in a font that has it, right-to-left in order."""

from __future__ import annotations

from vary_cli.render.document import render_document
from vary_cli.render.latex import escape, math_text
from vary_cli.render.results import PageResult
from vary_cli.render.scripts import font_choices, runs


def named(text):
    return [(piece, script.name if script else None) for piece, script in runs(text)]


def test_runs_take_in_the_spaces_and_digits_between_their_letters():
    assert named("The word привет, мир and مرحبا 2024 بالعالم.") == [
        ("The word ", None), ("привет, мир", "Cyrillic"), (" and ", None), ("مرحبا 2024 بالعالم.", "Arabic")]
    assert named("ελληνικά") == [("ελληνικά", "Greek")]
    assert named("plain") == [("plain", None)]


def test_escape_switches_fonts_and_sets_right_to_left_runs_in_order():
    assert escape("a Привет_b") == "a {\\varyfontCyrillic{}Привет}\\_b"
    assert escape("שלום עולם") == "{\\varyfontHebrew\\beginR{}שלום עולם\\endR}"


def test_indic_words_carry_their_logical_text():
    assert escape("कठिन") == ("{\\varyfontDevanagari{}\\BeginAccSupp{method=hex,unicode,ActualText=09150920093F0928}"
                             "कठिन\\EndAccSupp{}}")


def test_symbols_fall_back_to_fonts_that_have_them():
    assert escape("a → b é") == "a \\varychar{→} b é"  # é is Latin Modern's own
    assert escape("co\u00adop\u200be\u0301") == "co\\-opé"  # soft hyphen, no zero-width space, NFC


def test_non_ascii_in_math_is_set_as_text():
    assert math_text(r"\text{Привет} \cup x^{中}") == r"\text{\text{{\varyfontCyrillic{}Привет}}} \cup x^{\text{中}}"


def test_font_choices_follow_the_preamble():
    assert font_choices("Ж")[0] == "first" and font_choices("Ж")[1][0] == "Noto Serif"
    assert font_choices("ب")[1][0] == "Noto Naskh Arabic"
    assert font_choices("中") == ("first", ("Noto Serif CJK SC",))
    assert font_choices("→")[0] == "any" and "DejaVu Sans" in font_choices("→")[1]


def test_preamble_defines_only_the_scripts_used():
    tex = render_document([PageResult("a.pdf", "Привет и שלום, 한국어 and 中文 →", "stop", 1, 0.0, 1)], "tex")
    assert tex.startswith("% !TEX program = xelatex\n")
    assert "\\newfontfamily\\varyfontCyrillic{Noto Serif}[Script=Cyrillic]" in tex
    assert "\\varyfontHebrew" in tex and "\\varyfontHangul" in tex and "varyfontArabic" not in tex
    assert "\\xeCJKDeclareCharClass{Default}" in tex and "\\newcommand\\varychar" in tex
    # pdflatex and lualatex: the same commands, doing nothing
    assert "\\let\\varyfontCyrillic\\relax" in tex and "\\let\\beginR\\relax" in tex
