"""render/tables.py and render/tablelayout.py: what a tabular keeps (widths, spans, nesting, dollars) and how it is set."""

from __future__ import annotations

import re

import pytest

from vary_cli.render.document import render_document
from vary_cli.render.latex import table_latex
from vary_cli.render.markdown import render_page as markdown_page
from vary_cli.render.mathpix import repair_page
from vary_cli.render.results import PageResult
from vary_cli.render.tables import parse_html_table, parse_spec, parse_tabular


def texts(cell):
    return "".join(str(v).strip() if k == "text" else v.tex if k == "math" else "|" for k, v in cell.parts)


def table(source):
    return parse_tabular(source, set())


@pytest.mark.parametrize("spec, columns", [
    (r"|p{0.3\textwidth}|p{0.6\textwidth}|", ["|j:0.3\\linewidth", "|j:0.6\\linewidth"]),
    ("p{142.3pt} p{56.9pt}", ["j:142.3pt", "j:56.9pt"]),
    (r"|m{2cm}|X|", ["|j:2cm", "|j:X"]),
    (r"@{}>{\raggedright\arraybackslash}p{3cm}*{2}{c}@{}", ["l:3cm", "c", "c"]),
    (r">{\centering}p{.2\linewidth}|r", ["c:.2\\linewidth", "|r"]),
    ("lS[table-format=2.1]D{.}{.}{2}", ["l", "c", "c"]),  # siunitx and dcolumn: plain columns
    (r"p{\dimexpr 3cm}", ["j:X"]),  # a width we cannot check wraps like X
])
def test_column_specs_keep_widths_and_rules(spec, columns):
    parsed, _ = parse_spec(spec)
    shown = [c.left + c.align + (f":{c.width}" if c.width else ":X" if c.wrap else "") for c in parsed]
    assert shown[:len(columns)] == columns


def test_nested_tabular_stays_in_its_cell():
    parsed = table(r"{|l|l|} Scanner & \begin{tabular}{l}First line \\ Second line\end{tabular} \\ Printer & "
                   r"Toner \& drum \\")
    assert len(parsed.rows) == 2 and [texts(c) for c in parsed.rows[1]] == ["Printer", "Toner & drum"]
    [(kind, nested)] = parsed.rows[0][1].parts
    assert kind == "table" and [[texts(c) for c in row] for row in nested.rows] == [["First line"], ["Second line"]]


def test_spans_whose_last_argument_has_no_braces_keep_their_content():
    parsed = table(r"{ccc} \multirow{2}{*} 0.015 & a & b \\ & c & d \\ \multicolumn{1}{c} $x<1$ & e & f \\")
    assert parsed.rows[0][0].rowspan == 2 and texts(parsed.rows[0][0]) == "0.015"
    assert parsed.rows[2][0].align == "c" and texts(parsed.rows[2][0]) == "x<1"


def test_a_currency_dollar_is_text_and_keeps_the_rows_after_it():
    parsed = table(r"{lrr} (AUD $'000) & 2023 & 2022 \\ Revenue & 12,450 & 11,020 \\ Net & \$5 & $x$ \\")
    assert [[texts(c) for c in row] for row in parsed.rows] == [
        ["(AUD $'000)", "2023", "2022"], ["Revenue", "12,450", "11,020"], ["Net", "$5", "x"]]
    md = markdown_page(repair_page(r"\begin{tabular}{ll} (AUD $'000) & 1 \\ a & 2 \end{tabular}", 1))
    assert "| (AUD \\$'000) | 1 |" in md and "| a | 2 |" in md


def test_display_math_in_a_cell_is_one_math_part():
    parsed = table(r"{ll} Stable & $$\begin{array}{l}x<1 \\ y>0\end{array}$$ \\ Unstable & no \\")
    assert len(parsed.rows) == 2
    [(kind, math)] = parsed.rows[0][1].parts
    assert kind == "math" and math.tex == r"\begin{array}{l}x<1 \\ y>0\end{array}"


def test_line_breaks_in_braces_are_breaks():
    parsed = table(r"{l} \makecell{a \\ b} \\")
    assert [k for k, _ in parsed.rows[0][0].parts] == ["text", "break", "text"]


def test_html_tables_put_back_the_cells_a_rowspan_covers():
    parsed = parse_html_table("<tr><th>A</th><th>B</th></tr><tr><td rowspan=2>x &amp; y</td><td>$z$</td></tr>"
                              "<tr><td>w<br>v</td></tr>", set())
    assert [[texts(c) for c in row] for row in parsed.rows] == [["A", "B"], ["x & y", "z"], ["", "w|v"]]
    assert parsed.rows[1][0].rowspan == 2 and parsed.rules == {1}


def latex_of(source):
    return table_latex(repair_page(source, 1).tables[0], "[M]")


def test_given_widths_are_written_back():
    tex = latex_of(r"\begin{tabular}{|p{0.3\textwidth}|p{0.6\textwidth}|} a & b \\ \end{tabular}")
    assert r"\begin{tabular}{|p{0.3\linewidth}|p{0.6\linewidth}|}" in tex and r"\begin{varyfit}" in tex


def test_long_text_columns_get_wrapping_widths_that_fit_the_line():
    long = "words that run on and on " * 6
    tex = latex_of(r"\begin{tabular}{lll} Name & " + long + " & " + long + r" \\ \end{tabular}")
    spec = re.search(r"\\begin\{tabular\}\{(.*)\}\n", tex).group(1)
    widths = [float(w) for w in re.findall(r"p\{([\d.]+)\\linewidth\}", spec)]
    assert spec.startswith("l") and len(widths) == 2 and 0.8 < sum(widths) < 0.95
    assert r"\raggedright\arraybackslash" in spec


def test_short_tables_stay_as_they_are():
    assert r"\begin{tabular}{cc}" in latex_of(r"\begin{tabular}{cc} a & b \\ \end{tabular}")


def test_tables_of_many_rows_break_across_pages():
    rows = "".join(f"{k} & row {k} \\\\ " for k in range(40))
    tex = latex_of(r"\begin{tabular}{cl} " + rows + r"\end{tabular}")
    assert r"\begin{longtable}{cl}" in tex and "varyfit" not in tex


def test_pipe_tables_wrap_long_cells_and_keep_alignment():
    long = "a cell with many words " * 8
    tex = render_document([PageResult("a.pdf", f"| a | b |\n|:-:|--:|\n| x | {long} |", "stop", 1, 0.0, 1)], "tex")
    assert re.search(r"\\begin\{tabular\}\{c>\{\\raggedleft\\arraybackslash\}p\{[\d.]+\\linewidth\}\}", tex)


def test_cell_line_breaks_in_latex_and_markdown():
    page = repair_page(r"\begin{tabular}{lp{3cm}} \makecell{a \\ b} & c \newline d \\ \end{tabular}", 1)
    tex = table_latex(page.tables[0], "[M]")
    assert r"\begin{tabular}[t]{@{}l@{}}a \\{} b\end{tabular} & c\newline d \\" in tex, tex
    assert "| a <br> b | c <br> d |" in markdown_page(page)
