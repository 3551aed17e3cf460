"""The shared per-page repair on its own: texmath.repair_math (one span) and mathpix.repair_page (a page)."""

from __future__ import annotations

import pytest

from vary_cli.render.markdown import render_page as markdown_page
from vary_cli.render.mathpix import repair_page
from vary_cli.render.texmath import UnrepairableMath, repair_math


def inline(source):
    return repair_math(source, display=False).tex


def display(source):
    return repair_math(source, display=True).tex


@pytest.mark.parametrize("source, repaired", [
    (r"\begin{array}{cc} a & b \\ c", r"\begin{array}{cc} a & b \\ c\end{array}"),  # closed
    (r"\begin{pmatrix} a \end{bmatrix} b", r"\begin{pmatrix} a b\end{pmatrix}"),  # stray \end dropped
    (r"\left( \frac{a}{b}", r"\left( \frac{a}{b}\right."),
    (r"x \right) + \left[ y", r"\left. x \right) + \left[ y\right."),
    (r"\left x \right", r"\left. x \right."),  # missing delimiters
    (r"\bm{v} + \mathscr{L}", r"\mathbf{v} + \mathcal{L}"),  # nougat's \bm fix
    (r"x^a^b_c_d", r"x^a{}^b_c{}_d"),  # double scripts
    (r"\frac{1}", r"\frac{1}{}"),  # missing arguments
    (r"x^", r"x^{}"),
    (r"\sqrt\ddots", r"\sqrt{\ddots}"),
    (r"a % b # c $ d", r"a \% b \# c \$ d"),
    (r"\text{a_b & c}", r"\text{a\_b \& c}"),  # text mode escapes
    (r"\text{if \alpha}", r"\mathrm{if \alpha}"),  # math-only commands: set as math
    (r"\'e \^x", r"\acute e \hat x"),  # text accents are errors in math
    (r"a & b \\ c", r"a b c"),  # no alignment in inline math
    (r"\section{x} \item", r"\backslash\mathrm{section}{x} \backslash\mathrm{item}"),
    (r"{{a}", r"{{a}}"),
    (r"a}}", r"a"),
    (r"x \tag{3} \label{eq}", r"x"),  # tags are for displays
    ("", ""),
])
def test_inline_repairs(source, repaired):
    assert inline(source) == repaired


def test_display_repairs():
    assert display(r"a &= b \\ c &= d") == r"\begin{aligned}a &= b \\ c &= d\end{aligned}"
    assert display(r"a \\ b") == r"\begin{gathered}a \\ b\end{gathered}"
    assert display(r"\begin{align} a &= b \tag{1} \\ c \tag{2} \end{align}") == \
        r"\begin{aligned} a &= b \\ c \end{aligned} \tag{1}"  # one tag, outside `aligned`
    assert display(r"\begin{equation} x \end{equation}") == "{ x }"
    assert display(r"\begin{cases} a & b & c \end{cases}") == r"\begin{cases} a & b \quad c \end{cases}"
    assert display(r"\begin{array} a & b & c \\ d \end{array}") == r"\begin{array}{ccc} a & b & c \\ d \end{array}"
    assert display(r"\begin{array}{c} a & b \end{array}") == r"\begin{array}{cc} a & b \end{array}"
    assert display(r"\begin{alignedat}{2} a & b \end{alignedat}") == r"\begin{aligned} a & b \end{aligned}"
    assert display(r"a \\[2pt] b \\[x] c") == r"\begin{gathered}a \\[2pt] b \\\relax [x] c\end{gathered}"


def test_commands_are_listed_for_the_preamble():
    assert repair_math(r"\foo{x} + \alpha \begin{matrix} a \end{matrix} \relax", False).commands == \
        {"foo", "alpha", "relax"} - {"relax"}


@pytest.mark.parametrize("source", [r"\begin{itemize} x", r"\begin{tikzpicture}", "{" * 60])
def test_what_cannot_be_repaired_raises(source):
    with pytest.raises(UnrepairableMath):
        repair_math(source, display=True)


def test_repair_is_idempotent():
    for source in [r"\left( x^a^b \frac{1}", r"a &= b \\ c", r"\text{a_b} \begin{cases} a & b & c"]:
        for is_display in (False, True):
            once = repair_math(source, is_display).tex
            assert repair_math(once, is_display).tex == once


def test_page_split_into_text_math_and_tables():
    page = repair_page("Costs $5 and $10, \\(x\\) and $y$ 1\\(z\\)2.\n\n\\[ E = mc^2 \\] (3)\n"
                       "\\begin{table}\\centering\\begin{tabular}{|c|c|} a & \\(b|c\\) \\\\ \\hline\\end{tabular}"
                       "\\caption{Results}\\end{table}\n`code $x$` and \\begin{array}{c} a \\\\ b", 7)
    assert page.markdown == ("Costs \\$5 and \\$10, $x$ and $y$ 1 $z$ 2.\n\n$$\nE = mc^2 \\tag{3}\n$$\n\n"
                             "\ue000T0\ue001\n\nResults\n\n`code $x$` and \n\n$$\n\\begin{array}{c} a \\\\ b\\end{array}\n$$")
    [table] = page.tables
    assert [c.left + c.align for c in table.spec] == ["|c", "|c"] and table.right == "|"
    assert table.rules == {1} and len(table.rows) == 1
    assert table.rows[0][1].parts[0][1].tex == "b|c"
    assert [m.tex for m in page.math][-1] == r"\begin{array}{c} a \\ b\end{array}"


def test_spans_become_an_html_table_and_plain_ones_a_pipe_table():
    page = repair_page(r"\begin{tabular}{cc} \multicolumn{2}{c}{top} \\ \multirow{2}{*}{m} & 1 \\ & 2 \\"
                       r"\end{tabular} \begin{tabular}{cc} a & \(x|\|y\|\) \\ 1 & 2 | 3 \end{tabular}", 1)
    md = markdown_page(page)
    assert '<td colspan="2">\n\ntop\n\n</td>' in md and '<td rowspan="2">\n\nm\n\n</td>' in md
    assert md.count("<td") == 4  # the empty cell under the \multirow is left out
    assert "| a | $x\\vert \\Vert y\\Vert$ |\n|---|---|\n| 1 | 2 \\| 3 |" in md


def test_unrepairable_math_is_marked_on_the_page():
    page = repair_page(r"before \( \begin{tikzpicture} \) after", 4)
    assert markdown_page(page) == r"before [UNREPAIRABLE_MATH:4] ` \begin{tikzpicture} ` after"
    assert page.broken[0].raw == r"\begin{tikzpicture}"


def test_control_characters_and_placeholders_are_dropped():
    page = repair_page("a\x00b\x07c \ue000T0\ue001 d\ud800", 1)
    assert page.markdown == "abc T0 d"


def test_mathpix_structure_commands_become_markdown():
    page = repair_page("\\title{Vary}\n\\section*{Intro}\nSome \\textbf{bold}, \\emph{it} and \\(x\\).\n"
                       "\\begin{itemize}\n\\item one \\(a\\)\n\\item two\n\\begin{enumerate}\n\\item three\n"
                       "\\end{enumerate}\n\\end{itemize}\n\\begin{abstract} We \\end{abstract}", 1)
    assert page.markdown == ("# Vary\n\n## Intro\n\nSome **bold**, *it* and $x$.\n\n- one $a$\n- two\n\n"
                             "  1. three\n\n## Abstract\n\n We ")


def test_headings_inside_lists_are_bold_paragraphs_in_latex():
    from vary_cli.render.latex import render_page as latex_page

    body = latex_page(repair_page("> # Heading\n\n- # Item\n\n# Top", 1)).body
    assert "\\begin{quote}\n\\par\\textbf{Heading}\\par" in body and "\\item{} \\par\\textbf{Item}\\par" in body
    assert "\\section*{Top}" in body
