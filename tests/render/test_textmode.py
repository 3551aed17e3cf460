"""LaTeX text-mode commands in the model's text (render/textmode.py through mathpix.repair_page): none printed as source."""

from __future__ import annotations

import re

import pytest

from vary_cli.render.document import render_document
from vary_cli.render.mathpix import repair_page
from vary_cli.render.results import PageResult
from vary_cli.render.textmode import unicode_text


def md(text):
    return re.sub(r" {2,}", " ", repair_page(text, 1).markdown).strip(" ")


def tex(text):
    out = render_document([PageResult("a.png", text, "stop", 1, 0.0)], "tex")
    return out.split("\\begin{document}\n", 1)[1].rsplit("\\end{document}", 1)[0].strip()


@pytest.mark.parametrize("source, markdown", [
    (r"\section*{Results for \(x>0\)}", "## Results for $x>0$"),
    ("\\title{\nDeep \\textbf{Learning} for OCR\n}", "# Deep **Learning** for OCR"),
    (r"\subsection{A \\ B}", "### A B"),
    (r"\textbf{ bold \(y\) } and \emph{it}", "**bold $y$** and *it*"),
    (r"\textbf{}x", "x"),
    (r"See \ref{sec:2}, \eqref{eq:1} and \cite{a, b}.", r"See \[sec:2\], (eq:1) and \[a, b\]."),
    (r"Text\label{sec:x} more", "Text more"),
    ("\\begin{center}\nCentred\n\\end{center}", "Centred"),
    (r"\begin{theorem} Every x. \end{theorem}", "**Theorem.** Every x."),
    (r"Min\'{a}\v{c}, Gr\"obner, \ss, \c{c}, \^{\i}", "Mináč, Gröbner, ß, ç, î"),
    (r"\foo{kept} \bar dropped \S 3 \ldots", "kept dropped § 3 …"),
    (r"\url{https://x.org/a_b} and \href{https://y.org}{the page}",
     "<https://x.org/a_b> and [the page](https://y.org)"),
    (r"one\\ two \\[2pt] three", "one\\\n two\\\n three"),
    (r"Fig.~1 costs 5\,\% \& more", r"Fig. 1 costs 5 \% \& more"),
    (r"\author{Anna \\ Institute}", "Anna\\\n Institute"),
])
def test_commands_become_markdown(source, markdown):
    assert md(source) == markdown


def test_footnotes_go_to_the_end_of_the_page_and_into_latex_footnotes():
    source = r"Pages\footnote{Code is \textbf{public}.} read. \textbf{x\thanks{y}}"
    assert md(source) == "Pages[^p1-1] read. **x[^p1-2]**\n\n[^p1-1]: Code is **public**.\n\n[^p1-2]: y"
    assert tex(source) == r"Pages\protect\footnote{Code is \textbf{public}.} read. \textbf{x\protect\footnote{y}}"


def test_hard_breaks_and_headings_in_latex():
    assert tex(r"one \\ two") == "one\\leavevmode\\\\{}\ntwo"
    assert tex(r"\section*{Results for \(x\)}") == r"\subsection*{Results for $x$}"


def test_display_math_inside_emphasis_is_inline():
    assert md(r"\textbf{see \[ x \]}") == "**see $x$**"


def test_emphasis_around_paragraphs_is_dropped_not_printed():
    page = repair_page("\\textbf{a\n\nb}", 1)
    assert "**" not in page.markdown and "a\n\nb" in page.markdown


@pytest.mark.parametrize("source, plain", [
    (r"\'e\`a\^o\~n", "éàôñ"), (r"\textbf{x}", "x"), (r"50\% \& \$5", "50% & $5"), (r"\textbackslash", "\\"),
])
def test_unicode_text_for_cells(source, plain):
    assert unicode_text(source, markdown=False) == plain


def test_no_command_name_is_left_in_the_markdown():
    page = repair_page(r"\section*{A} \begin{figure} \includegraphics[width=3cm]{f.png} \caption{Cap \(x\)} "
                       r"\end{figure} \noindent\textsc{Small} \vspace{2mm} \hfill \maketitle \unknown{y} \zz", 1)
    text = re.sub(r"\$[^$]*\$", "", page.markdown)
    assert re.findall(r"\\[A-Za-z]+", text) == [] and "Cap" in text and "Small" in text and "y" in text
