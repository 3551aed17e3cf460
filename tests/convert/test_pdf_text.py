"""convert/pdf_text.py (with pdf_words.py, pdf_layout.py): a page's text layer in reading order, on PDFs with
known text, on pages drawn to defeat a naive reader, and on hand-made characters."""

from __future__ import annotations

import math

import pypdfium2 as pdfium
import pytest

from data_fixtures import (accent_page, chinese_page, grid_page, hyphen_page, no_space_page, one_column_page,
                           rotated_page, running_head_page, scaled_matrix_page, scanned_page, skewed_page,
                           two_column_page, write_pdf)
from vary_cli.convert.pdf_text import Char, join_lines, page_chars, page_text, script_language
from vary_cli.convert.pdf_words import dominant_angle, join_hyphenated, merge_accents, with_word_breaks


def _texts(path):
    document = pdfium.PdfDocument(str(path))
    try:
        out = []
        for page in document:
            textpage = page.get_textpage()
            out.append(page_text(page_chars(textpage)))
            textpage.close()
            page.close()
        return out
    finally:
        document.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    path = tmp_path_factory.mktemp("pdf") / "known.pdf"
    expected = write_pdf(path, [one_column_page, two_column_page, scanned_page, chinese_page])
    return expected, _texts(path)


def test_one_column_text_equals_the_known_text(pages):
    expected, got = pages
    # Ligatures spelled out, the hyphenated break joined, paragraphs kept, the run of spaces normalised.
    assert got[0].text == expected[0]
    assert got[0].broken == 0 and got[0].chars == sum(not c.isspace() for c in expected[0])


def test_two_columns_drawn_row_by_row_come_out_column_by_column(pages):
    expected, got = pages
    assert got[1].text == expected[1]
    text = got[1].text
    assert text.index("Nothing follows") > text.index("Its last line ends it.") > text.index("A Title Across")


def test_a_scanned_page_has_no_text(pages):
    _, got = pages
    assert got[2].text == "" and got[2].chars == 0


def test_chinese_lines_join_without_spaces_and_read_as_zh(pages):
    expected, got = pages
    assert got[3].text == expected[3] and script_language(got[3].text) == "zh"


def _line(text, x, baseline, size=10.0, advance=5.0):
    return [Char(ch, x + i * advance, x + (i + 1) * advance - 0.5, baseline, size) for i, ch in enumerate(text)]


def test_a_title_spanning_two_columns_stays_above_them_and_a_footer_below():
    chars = (_line("Title spanning both columns of this page here", 50, 700)
             + _line("right one", 300, 660) + _line("left one", 50, 660)
             + _line("right two.", 300, 648) + _line("left two.", 50, 648)
             + _line("page footer spanning the whole width of the page from the left to the right", 50, 100))
    assert page_text(chars).text == ("Title spanning both columns of this page here\n\nleft one left two.\n\n"
                                     "right one right two.\n\npage footer spanning the whole width of the page from the left to the right")


def test_a_paragraph_running_from_one_column_into_the_next_is_one_paragraph():
    chars = _line("the sentence starts", 50, 660) + _line("on the left and", 50, 648) + \
        _line("goes on at right.", 300, 660)
    assert page_text(chars).text == "the sentence starts on the left and goes on at right."


def test_join_lines_hyphens_cjk_and_real_dashes():
    assert join_lines(["a well-", "known fact"]) == "a well-known fact"  # "wellknown" is no word: the hyphen stays
    assert join_lines(["they differ-", "ent in kind"]) == "they different in kind"  # "ent" is no word: joined
    assert join_lines(["see page 12-", "14 for more"]) == "see page 12-14 for more"  # a range cut at its dash
    assert join_lines(["co-\ufffe", "Operation"]) == "co-- Operation"
    assert join_lines(["中文的第一行", "接着第二行"]) == "中文的第一行接着第二行"


def test_undecodable_glyphs_are_counted():
    chars = _line("abc", 50, 700) + [Char("x", 70, 74, 700, 10, broken=True)] + _line("(cid:12)", 80, 700)
    assert page_text(chars).broken == 2


def test_script_language():
    assert script_language("The quick brown fox") == "en"
    assert script_language("这是一个中文段落，其中有 some English") == "zh"
    assert script_language("Это русский текст") == "other"
    assert script_language("12345") == "other"


def test_a_centred_two_line_title_is_one_paragraph_and_an_indented_line_after_a_sentence_starts_one():
    chars = (_line("A centred title that runs over", 100, 700, size=16, advance=8)
             + _line("two lines", 200, 680, size=16, advance=8)
             + _line("Body text as wide as the page's text block, which ends here.", 50, 640)
             + _line("Indented new paragraph in the same column and font as the one", 70, 628)
             + _line("above it, which continues here and runs to the right margin.", 50, 616))
    assert page_text(chars).text == (
        "A centred title that runs over two lines\n\nBody text as wide as the page's text block, which ends here."
        "\n\nIndented new paragraph in the same column and font as the one above it, which continues here and "
        "runs to the right margin.")


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """Pages drawn to defeat a naive reader, each with the text a correct reading gives."""
    makers = {"rotated": rotated_page, "skewed": skewed_page, "no_space": no_space_page, "grid": grid_page,
              "accents": accent_page, "hyphens": hyphen_page, "scaled": scaled_matrix_page,
              "running_head": running_head_page}
    path = tmp_path_factory.mktemp("pdf") / "drawn.pdf"
    expected = write_pdf(path, list(makers.values()))
    return {name: (want, got.text) for name, want, got in zip(makers, expected, _texts(path))}


@pytest.mark.parametrize("name", ["rotated", "skewed", "no_space", "grid", "accents", "hyphens", "scaled",
                                  "running_head"])
def test_a_drawn_page_reads_as_a_reader_reads_it(drawn, name):
    want, got = drawn[name]
    assert got == want


def test_only_text_turned_against_the_page_is_a_stamp(drawn):
    _, got = drawn["rotated"]
    assert "arXiv" not in got and got.startswith("Reading order")


def test_join_hyphenated_rule():
    assert join_hyphenated("differ", "ent")  # "ent" is no word: a syllable break
    assert join_hyphenated("some", "thing")  # "something" is common
    assert not join_hyphenated("problem", "solving")  # "problemsolving" is no word
    assert not join_hyphenated("semi", "automatically")
    # The page's own spelling wins over the word list.
    assert not join_hyphenated("some", "thing", frozenset({"some-thing"}))
    assert join_hyphenated("problem", "solving", frozenset({"problemsolving"}))


def test_word_breaks_come_from_gaps_relative_to_the_font_size():
    def glyphs(word, x, size=10.0, advance=5.0, overlap=0.0):
        return [Char(ch, x + i * advance, x + (i + 1) * advance + overlap, 700, size) for i, ch in enumerate(word)]

    # No space glyphs at all: a gap of half a size between "two" and "words" is a word break.
    assert "".join(c.text for c in with_word_breaks(glyphs("two", 50) + glyphs("words", 70))) == "two words"
    # Letters closer than the word gap stay one word (letter spacing of 0.05 size).
    spaced = [Char(ch, 50 + i * 5.5, 50 + i * 5.5 + 5.0, 700, 10.0) for i, ch in enumerate("spaced")]
    assert "".join(c.text for c in with_word_breaks(spaced)) == "spaced"
    # Boxes that overlap by 2.5 (an italic font's loose boxes): a gap of 0 between them is a word break.
    italic = glyphs("Principal", 50, overlap=2.5) + glyphs("Findings", 50 + 9 * 5 + 2.5, overlap=2.5)
    assert "".join(c.text for c in with_word_breaks(italic)) == "Principal Findings"


def test_merge_accents_puts_a_spacing_accent_into_the_letter_under_it():
    chars = [Char("a", 50, 56, 700, 12), Char("\u00b4", 51, 55, 701, 12), Char("b", 56, 62, 700, 12)]
    assert [c.text for c in merge_accents(chars)] == ["\u00e1", "b"]
    # An accent over no letter (a lone acute in code) is kept as it is.
    lone = [Char("x", 50, 56, 700, 12), Char("\u00b4", 60, 64, 700, 12)]
    assert [c.text for c in merge_accents(lone)] == ["x", "\u00b4"]


def test_dominant_angle_is_the_direction_most_glyphs_run_in():
    assert dominant_angle([0.0] * 10) == 0.0
    assert abs(dominant_angle([math.pi / 2] * 50 + [0.0] * 5) - math.pi / 2) < 1e-9
    assert abs(dominant_angle([0.2] * 30 + [0.2 + math.pi / 2] * 3) - 0.2) < 1e-9


def test_two_single_quotes_drawn_as_a_double_quote_read_as_one():
    text = page_text(_line("known as its \u2018\u2018pitch attitude.\u2019\u2019", 50, 700)).text
    assert text == "known as its \u201cpitch attitude.\u201d"
