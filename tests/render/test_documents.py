"""md and tex output of a corpus of tricky pages: the .tex compiles, the .md keeps every math span and table.

The whole corpus (every TeX special, `\\(` inside tables, unclosed environments, unbalanced `\\left`,
nested lists, CJK, emoji, 2,000 random tokens of the real Qwen vocabulary, and a few hundred seeded
random math and page "soups") is rendered into ONE document, compiled once by the engine its first line
declares. Needs a TeX engine (Debian: texlive-latex-base, texlive-latex-recommended, texlive-xetex,
texlive-lang-cjk, fonts-noto-cjk; texlive-latex-extra adds multirow); skipped without one.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from vary_cli.render import markdown, mathpix
from vary_cli.render.document import render_document
from vary_cli.render.results import PageResult

CORPUS = [
    # every TeX special character, in text, in math and in a table
    r"Specials: \ { } $ & # % _ ^ ~ < > | and \\ \% \& \_ \# and `code $x$ & %` and a $5 bill and $10.",
    r"Math with specials \(a % b # c & d $ e\) and \[ x_1 ^ 2 ^ 3 _4 \]",
    "# Heading with $ and % and \\(x_1\\)\n\n## Sub & heading _x_\n\n###### Deep #",
    # tables: \( inside cells, spans, a bad spec, an unclosed tabular
    r"\begin{tabular}{|c|c|}\hline \(x|y\) & \(\frac{a}{b}\) \\ \(\left( z\) & 50\% \\ \hline \end{tabular}",
    r"\begin{table}\centering\begin{tabular}{l}\multicolumn{3}{c}{wide} \\ \multirow{2}{*}{\(m\)} & 1 & 2 \\"
    r" & 3 & 4 \\ a & b & c & d & e \\ \end{tabular}\caption{Spans \& more}\end{table}",
    "| a | b |\n|---|---|\n| $x$ | 1 |\n| `|` | 2 |",
    r"Before \begin{tabular}{cc} a & b \\ c & \(\sqrt{x",
    # unclosed and unbalanced math
    r"\begin{array}{c} a & b & c \\ d",
    r"\[ \left( \frac{a}{b} \]  and \( \right) x \) and \[ \left[ \middle| \right\} \right) \]",
    r"\begin{align} a &= b \\ c &= d \end{align} \begin{equation} x = 1 \\ y = 2 \end{equation}",
    r"\[ \begin{cases} a & b & c \\ d \end{matrix} \] \( \begin{itemize} \)",
    r"\[ x \] (1.2a) and (3) \[ y \tag{4} \tag{5} \label{a} \label{b} \] \( \bm{v} \tag{6} \)",
    r"\( \frac \) \( x^ \) \( \sqrt[3 \) \( \hat \) \( \text{a_b \alpha} \) \( \mathscr{L} \) \( \foo{x} \)",
    r"\( \hspace{abc} \section{x} \item \par \\[x] & \limits \over \choose \) \( \" \' \~ \)",
    "\\( " + "{" * 60 + " deep \\)",
    # Markdown structure
    "- one\n  - two\n    1. three\n       - four\n         - five\n           - six **bold *both***\n\n> quote\n> > nested",
    "1. first\n2. [second](http://x.y/a_b%20c) ![img](x.png)\n\n---\n\n```\ncode { } \\ $ %\n```",
    "\\title{T & T} \\section{A_1 $} \\textbf{b%} \\begin{itemize} \\item[x] \\(y\\) \\begin{enumerate} \\item z",
    # scripts pdflatex cannot set
    "中文：表 3 的营收 \\(x^2\\) 日本語のテキスト 한국어 Ελληνικά Русский العربية עברית हिन्दी",
    "Emoji 😀🎉👍🏽 and symbols ∑ ∫ → ≤ ∞ and math \\(😀 + 中\\)",
    "Control \x00\x07\x1b chars \ud800 and private \ue000\ue001 use",
]


@pytest.fixture(scope="module")
def qwen_text():
    dashscope = pytest.importorskip("dashscope")
    from vary_cli.text.qwen_tokenizer import QwenTokenizer

    tokenizer = QwenTokenizer.from_file(Path(dashscope.__file__).parent / "resources" / "qwen.tiktoken")
    rng = random.Random(13)
    ids = [rng.randrange(tokenizer.vocab_size) for _ in range(2000)]
    return tokenizer.decode(ids)


def math_soups(count: int, seed: int = 13) -> list[str]:
    """Random sequences of LaTeX fragments a model could emit, in random math delimiters."""
    fragments = (r"\frac \sqrt \left( \right) \left \right \middle| { } ^ _ & \\ \begin{array} \end{array} "
                 r"\begin{matrix} \end{matrix} \begin{cases} \end{cases} \begin{aligned} \end{aligned} "
                 r"\begin{align} \end{align} \text{ \textbf{ \hline \tag{1} \label{x} \alpha x 1 + = ( ) [ ] | "
                 r"\| \{ \} \mathbf{ \operatorname{ \bm{ \sum \limits \int \big \Big( \hat \vec \over \' \^ "
                 r"\foo \section{ \item \par \\[2pt] \\[x] % # $ ~ ' \, \quad \end \begin \overset \binom "
                 r"\mathbb{R} \hspace{1em} \hspace{x} \kern \nonumber \( \) \[ \] é 中 \multicolumn{2}{c}{x} "
                 r"\sqrt[3] \sqrt[ \mathscr{L} \begin{split} \end{split} \substack{ \overbrace{ \textit{a_b} "
                 r"\text{\alpha} \mbox{$x$} \c x^ _^ \left\langle \right\rangle \dots \ldots \ddots").split()
    rng = random.Random(seed)
    soups = []
    for _ in range(count):
        body = " ".join(rng.choice(fragments) for _ in range(rng.randint(1, 20)))
        left, right = rng.choice([("\\(", "\\)"), ("\\[", "\\]"), ("$", "$"), ("$$", "$$")])
        soups.append(f"Soup {left}{body}{right} end.")
    return soups


def page_soups(count: int, seed: int = 13) -> list[str]:
    """Random pages of Markdown, Mathpix table and math fragments: structure the model got wrong."""
    fragments = [r"\begin{tabular}{", "|c|c|}", "l}", "&", r"\\", r"\hline", r"\multicolumn{2}{c}{", r"\multirow{2}{*}{",
                 "}", "{", "#", "- ", "\n", "\n\n", "**", "*", "_", "`", "```", "$", "$$", r"\(", r"\)", r"\[", r"\]",
                 r"\begin{array}", r"\end{tabular}", r"\begin{table}", r"\end{table}", r"\caption{", "<", ">", "|",
                 "> ", "1. ", "# ", "中", "😀", "x", "y^2", r"\frac{a}{b}", r"\left(", r"\right)", "%", "~", "^",
                 r"\textbf{", r"\section{", r"\item", r"\begin{itemize}", r"\end{itemize}", r"\begin{enumerate}",
                 r"\cline{1-2}", r"\toprule", "[", "]", "(1)", "word", "  ", "\t", "---", "| a | b |\n|---|---|\n",
                 "<!-- c -->", "<b>", "![a](b)", "[l](u)", r"\\[2pt]", r"\&", r"\%", r"\$", "\\",
                 r"\footnote{", r"\label{x}", r"\ref{", r"\href{u}{", r"\url{", r"\'{e}", r"\begin{center}",
                 r"\end{center}", r"\title{", r"\author{", r"\emph{", r"\foo{", r"\v", "<table><tr><td>", "</td><td>",
                 "</table>", r"\begin{tabular}{p{0.3\textwidth}|X}", r"\multirow{2}{*} ", r"\newline", r"\texttt{"]
    rng = random.Random(seed)
    return ["".join(rng.choice(fragments) + rng.choice(["", " "]) for _ in range(rng.randint(5, 60)))
            for _ in range(count)]


@pytest.fixture(scope="module")
def pages(qwen_text):
    texts = CORPUS + [qwen_text, "\\(" + qwen_text[:3000] + "\\)", "\\[" + qwen_text[3000:6000] + "\\]"]
    texts += ["\n\n".join(math_soups(300)[k:k + 30]) for k in range(0, 300, 30)] + page_soups(40)
    results = [PageResult(source="corpus.pdf", text=text, finish_reason="stop", tokens=1, seconds=0.0, page=n)
               for n, text in enumerate(texts, 1)]
    results[1].finish_reason = "repetition"
    results[2].finish_reason = "length"
    results.append(PageResult(source="corpus.pdf", text="", finish_reason="error", tokens=0, seconds=0.0,
                              page=len(results) + 1, error="boom: $ & % _ # { } \\ ~ ^"))
    results.append(PageResult(source="corpus.pdf", text="layer $ & % _ 中", finish_reason="text-layer", tokens=0,
                              seconds=0.0, page=len(results) + 1))
    return results


def test_corpus_tex_compiles_with_the_engine_it_declares(pages, tmp_path):
    tex = render_document(pages, "tex")
    engine = re.match(r"% !TEX program = (\w+)\n", tex)
    engine = engine.group(1) if engine else "pdflatex"
    assert engine == "xelatex"  # the corpus has CJK
    if shutil.which(engine) is None:
        pytest.skip(f"{engine} is not installed (Debian: texlive-xetex texlive-lang-cjk fonts-noto-cjk)")
    (tmp_path / "corpus.tex").write_text(tex, encoding="utf-8")
    run = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", "corpus.tex"], cwd=tmp_path,
                         capture_output=True, text=True, errors="replace", timeout=300)
    log = (tmp_path / "corpus.log").read_text(errors="replace") if (tmp_path / "corpus.log").exists() else run.stdout
    error = log[log.find("\n!"):][:1500] if "\n!" in log else log[-1500:]
    assert run.returncode == 0 and (tmp_path / "corpus.pdf").stat().st_size > 0, error
    if shutil.which("pdflatex"):  # what a plain `latexmk` may run instead: `?` for what it cannot set, no error
        run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "corpus.tex"], cwd=tmp_path,
                             capture_output=True, text=True, errors="replace", timeout=300)
        assert run.returncode == 0, run.stdout[run.stdout.find("\n!"):][:1500]
    # Every page marker is a comment, every problem marker is visible.
    assert re.findall(r"^% page (\d+)$", tex, flags=re.M) == [str(n) for n in range(1, len(pages) + 1)]
    for marker in ("REPETITION_CUT:2", "LENGTH_CUT:3", f"MISSING_PAGE_FAIL:{len(pages) - 1}",
                   f"TEXT_LAYER_FALLBACK:{len(pages)}", "UNREPAIRABLE_MATH:15"):
        assert f"% [{marker}]" in tex and "\\textbf{[" + marker.replace("_", "\\_") + "]}" in tex


def test_corpus_md_parses_with_every_math_span_and_table(pages):
    md = render_document(pages, "md")
    tokens = markdown.parser().parse(md)  # markdown-it + dollarmath, as the LaTeX writer reads Markdown
    found = [t.content.strip() for t in tokens if t.type == "math_block"]
    found += [c.content.strip() for t in tokens if t.type == "inline" for c in t.children if c.type == "math_inline"]
    expected_math, html, pipe = [], 0, 0
    for page in pages:
        if page.finish_reason in ("error", "text-layer"):
            continue
        repaired = mathpix.repair_page(page.text.rstrip(), page.page)  # as render_document does
        expected_math += [span.tex.replace("\n", " ") for span in repaired.math]
        expected_math += [value.tex for table in repaired.tables for row in table.rows for cell in row
                          for kind, value in cell.parts if kind == "math"]
        html += sum(1 for table in repaired.tables if table.rows and table.spans)
        pipe += sum(1 for table in repaired.tables if table.rows and not table.spans)
    found = {_spaced(m) for m in found}
    # In a pipe table `|` in math is written \vert (GFM splits cells first); whitespace runs are one space.
    missing = [m for m in expected_math if _spaced(m) not in found
               and _spaced(m.replace("\\|", "\\Vert ").replace("|", "\\vert ")) not in found]
    assert not missing, missing[:5]
    html_tables = sum(t.content.count("<table>") for t in tokens if t.type == "html_block")
    pipe_tables = sum(1 for t in tokens if t.type == "table_open")
    assert html_tables == html > 0
    assert pipe_tables >= pipe + 1 > 1  # + the model's own pipe tables
    for marker in ("REPETITION_CUT:2", "LENGTH_CUT:3", f"MISSING_PAGE_FAIL:{len(pages) - 1}",
                   f"TEXT_LAYER_FALLBACK:{len(pages)}", "UNREPAIRABLE_MATH:15"):
        assert f"[{marker}]" in md
    assert re.findall(r"^<!-- page (\d+) -->$", md, flags=re.M) == [str(n) for n in range(1, len(pages) + 1)]


def _spaced(math: str) -> str:
    return re.sub(r"\s+", " ", math).strip()
