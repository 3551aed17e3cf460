"""A complete LaTeX document from repaired pages, one that a TeX engine compiles whatever the model wrote.

`render.render_document` calls `render_page` for each page of `--format tex` and `document` once to
wrap the pages. A page's Markdown (see `mathpix.repair_page`) is parsed with markdown-it-py and the
dollarmath and footnote plugins (`markdown.parser`), and its tokens are mapped: headings ->
`\\section*` ... `\\subparagraph*`, lists -> itemize/enumerate (at most four deep, as LaTeX allows),
bold/italic -> `\\textbf`/`\\emph`, code -> `\\texttt`, footnotes -> `\\footnote`, pipe tables and the
model's tabulars -> `tabular` or `longtable` (rebuilt from the parsed cells, with `\\multicolumn`/
`\\multirow`, and set to fit the page by tablelayout.py). Text outside math is escaped (the ten
specials, plus `< > |`, which the default OT1 font would set as other glyphs); math passes through as
repaired, its non-ASCII characters set as `\\text`.

The engine is declared on the first line when the text needs one that reads Unicode:
`% !TEX program = xelatex` (latexmk, TeXstudio, VS Code's LaTeX Workshop read it) with fontspec, a
font per script (scripts.py) and xeCJK with Noto Serif CJK when there is Chinese or Japanese text. A
glyph missing from the fonts is a warning in xelatex, never an error (`vary convert` names such pages,
see convert/fonts.py). Plain-ASCII documents stay with pdflatex. Every control word used in math is
declared with `\\providecommand`, which leaves defined commands alone and makes an unknown one print its
name. Unrepairable math is a visible `[UNREPAIRABLE_MATH:N]` with the model's text in a comment after
the paragraph.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from markdown_it.token import Token

from .markdown import parser
from .mathpix import PLACEHOLDER, RepairedPage
from .tablelayout import BREAK, latex_table
from . import scripts
from .scripts import actual_text, needs_fallback, runs
from .tables import Cell, Column, Table
from .texmath import UnrepairableMath, repair_math

_ESCAPES = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
            "%": r"\%", "_": r"\_", "^": r"\^{}", "~": r"\textasciitilde{}", "<": r"\textless{}",
            ">": r"\textgreater{}", "|": r"\textbar{}"}
_SPECIAL = re.compile(r"[\\{}$&#%_^~<>|]")
_HEADINGS = {"h1": "section", "h2": "subsection", "h3": "subsubsection", "h4": "paragraph",
             "h5": "subparagraph", "h6": "subparagraph"}
MAX_LIST_DEPTH = 4  # itemize/enumerate nest four deep; quote is a list too (six in all)


def escape(text: str) -> str:
    """Plain text as LaTeX source that prints it (the ten specials and `< > |`), each script in its font
    (`\\varyfont<Script>`, right-to-left ones between `\\beginR`/`\\endR`) and rare symbols through
    `\\varychar` (see scripts.py). Accents written apart are joined to their letters first (NFC)."""
    parts = []
    for piece, script in runs(unicodedata.normalize("NFC", text)):
        if script is None:
            parts.append("".join(_outside_scripts(ch) for ch in _escape(piece)))
            continue
        if script.reorders:  # each word carries its text in logical order, for copy and search
            escaped = "".join(word if not word or word.isspace() else
                              f"\\BeginAccSupp{{method=hex,unicode,ActualText={actual_text(word)}}}"
                              f"{_escape_in_script(word)}\\EndAccSupp{{}}" for word in re.split(r"(\s+)", piece))
        else:
            escaped = _escape_in_script(piece)
        rtl = ("\\beginR", "\\endR") if script.rtl else ("", "")
        parts.append(f"{{\\varyfont{script.name}{rtl[0]}{{}}{escaped}{rtl[1]}}}")
    return "".join(parts)


def _outside_scripts(char: str) -> str:
    if char == "\u00ad":
        return "\\-"  # a soft hyphen is where a word may break
    if unicodedata.category(char) == "Cf":
        return ""  # marks that draw nothing (zero-width space, direction marks) have no glyph to miss
    return f"\\varychar{{{char}}}" if needs_fallback(char) else char


def _escape(text: str) -> str:
    return _SPECIAL.sub(lambda m: _ESCAPES[m.group()], text)


def _escape_in_script(text: str) -> str:
    """A script run's text: its digits and punctuation through `\\varychar`, for script fonts may lack
    them (Noto Serif Hebrew has no full stop)."""
    return "".join(_ESCAPES[ch] if ch in _ESCAPES else f"\\varychar{{{ch}}}" if ch.isascii() and not ch.isspace()
                   and not ch.isalpha() else ch for ch in text)


def math_text(tex: str) -> str:
    """Repaired math with its non-ASCII characters set as text (`\\text{...}`), where the script fonts
    and xeCJK reach them: the math fonts have Latin and Greek letters only as commands."""
    return re.sub(r"[^\x00-\x7f]+", lambda m: "\\text{" + escape(m.group()) + "}", tex)


def comment(text: str) -> str:
    """`text` as `%` comment lines (each line of it commented)."""
    return "\n".join("% " + line for line in text.splitlines() or [""])


@dataclass
class TexPage:
    """A page's LaTeX body and the control words its math uses (for the preamble)."""

    body: str
    commands: set[str] = field(default_factory=set)


def render_page(page: RepairedPage) -> TexPage:
    """The page body in LaTeX; see the module docstring."""
    writer = _Writer(page)
    tokens = writer.footnotes(parser().parse(page.markdown))
    writer.blocks(tokens)
    writer.flush_comments()
    return TexPage(body=re.sub(r"\n{3,}", "\n\n", "".join(writer.out)).strip(), commands=writer.commands)


def document(bodies: list[str], commands: set[str]) -> str:
    """A complete document around the page bodies: the preamble, and the engine line when needed."""
    text = "\n".join(bodies)
    unicode = any(ord(ch) > 127 for ch in text)
    lines = []
    if unicode:
        lines.append("% !TEX program = xelatex")
    used = set(re.findall(r"\\varyfont([A-Za-z]+)", text))
    lines += [r"\documentclass{article}",
              # Written for xelatex, and safe under the engine a plain `latexmk` may pick instead: lualatex
              # gets fontspec only where luaotfload is installed; under pdflatex a character it cannot set
              # prints as `?` with a warning instead of an error.
              r"\ifdefined\XeTeXversion",
              r"\usepackage{fontspec}\TeXXeTstate=1"]
    lines += scripts.preamble(used, symbols="\\varychar" in text)
    if scripts.CJK.search(text):
        # xeCJK breaks lines between CJK characters and switches to a CJK font (Debian fonts-noto-cjk);
        # CJKspace keeps the spaces the text has between CJK words (Korean has them).
        lines.append(r"\IfFileExists{xeCJK.sty}{\usepackage{xeCJK}\xeCJKsetup{CJKspace=true}" + scripts.HANGUL_CLASS +
                     r"\IfFontExistsTF{Noto Serif CJK SC}{\setCJKmainfont{Noto Serif CJK SC}}{}}{}")
    lines += [r"\else\ifdefined\directlua",
              r"\IfFileExists{luaotfload-main.lua}{\usepackage{fontspec}}{}",
              r"\else",
              r"\usepackage[T1]{fontenc}\IfFileExists{lmodern.sty}{\usepackage{lmodern}}{}",
              r"\makeatletter\def\UTFviii@undefined@err#1{?\@latex@warning{Unicode character not set up"
              r" for pdflatex; compile with xelatex}}\makeatother",
              r"\fi"]
    lines += scripts.fallback_preamble(used) + [r"\let\beginR\relax\let\endR\relax", r"\fi"]
    lines += [
              r"\usepackage{amsmath,amssymb}", r"\usepackage{graphicx}", r"\usepackage{booktabs}",
              r"\usepackage{array,longtable}",
              r"\IfFileExists{multirow.sty}{\usepackage{multirow}}{\providecommand{\multirow}[3]{##3}}"]
    lines += _FIT_TABLE
    lines += [
        r"\setcounter{MaxMatrixCols}{100}",
        # amsmath's nested accents (\hat{\hat{a}\bar{b}}) read these before they are set.
        r"\makeatletter\providecommand\macc@kerna{0pt}\providecommand\macc@kernb{0pt}"
        r"\providecommand\macc@nucleus{}\makeatother",
    ]
    lines += [f"\\providecommand{{\\{name}}}{{\\ensuremath{{\\backslash\\mathrm{{{name}}}}}}}"
              for name in sorted(commands)]
    lines += [r"\begin{document}", text.strip() or r"\mbox{}", r"\end{document}"]
    return "\n".join(lines) + "\n"


# A table in `varyfit` is measured: wider than the line it is shrunk to the line, or, wider than 1.5 lines
# and lower than the line is wide, turned a quarter (landscape); then taller than the page, shrunk to it.
_FIT_TABLE = [
    r"\newsavebox\varyfitbox\newlength\varyfitheight\newif\ifvaryturn",
    r"\newenvironment{varyfit}{\begin{lrbox}{\varyfitbox}}{\end{lrbox}\varyfitplace}",
    r"\newcommand\varyfitplace{\varyturnfalse\setlength\varyfitheight{\ht\varyfitbox}"
    r"\addtolength\varyfitheight{\dp\varyfitbox}"
    r"\ifdim\wd\varyfitbox>1.5\linewidth\ifdim\varyfitheight<\linewidth\varyturntrue\fi\fi"
    r"\ifvaryturn\sbox\varyfitbox{\rotatebox{90}{\usebox\varyfitbox}}"
    r"\else\ifdim\wd\varyfitbox>\linewidth\sbox\varyfitbox{\resizebox{\linewidth}{!}{\usebox\varyfitbox}}\fi\fi"
    r"\setlength\varyfitheight{\ht\varyfitbox}\addtolength\varyfitheight{\dp\varyfitbox}"
    r"\ifdim\varyfitheight>\textheight\resizebox*{!}{\textheight}{\usebox\varyfitbox}\else\usebox\varyfitbox\fi}",
]


def table_latex(table: Table, marker: str) -> str:
    """A table rebuilt from parsed cells (see tablelayout.py for widths, wrapping and shrinking)."""
    if not table.columns:
        return ""
    return latex_table(table, [[_cell_latex(cell, marker) for cell in row] for row in table.rows])


def _cell_latex(cell: Cell, marker: str) -> str:
    parts = []
    for kind, value in cell.parts:
        if kind == "text":
            parts.append(escape(str(value)))
        elif kind == "math":
            parts.append(f"${math_text(value.tex)}$")  # type: ignore[union-attr]
        elif kind == "break":
            parts.append(BREAK)
        elif kind == "table":
            nested: Table = value  # type: ignore[assignment]
            cells = [[_cell_latex(c, marker) for c in row] for row in nested.rows]
            parts.append(latex_table(nested, cells, nested=True) if nested.columns else "")
        else:
            parts.append(r"\textbf{" + escape(marker) + "}")
    return re.sub(f"\\s*{BREAK}\\s*", BREAK, "".join(parts)).strip(BREAK + " \n")


class _Writer:
    """Walks markdown-it's tokens and appends LaTeX to `out`."""

    def __init__(self, page: RepairedPage) -> None:
        self.page = page
        self.out: list[str] = []
        self.pending: list[str] = []  # comments wait for the end of the block (a % inside \section{} would eat the })
        self.lists: list[str] = []  # open list environments, outermost first
        self.skipped = 0  # lists nested too deep to open
        self.commands: set[str] = set(page.commands)
        self.notes: dict[int, str] = {}  # footnote id -> its text in LaTeX

    def footnotes(self, tokens: list[Token]) -> list[Token]:
        """Render the footnotes' texts (for `\\footnote{}` at their references); the tokens without them."""
        kept, note = [], None
        for token in tokens:
            if token.type == "footnote_open":
                note = token.meta["id"]
                self.notes[note] = ""
            elif token.type == "footnote_close":
                note = None
            elif note is not None and token.type == "inline":
                self.notes[note] += (" " if self.notes[note] else "") + self.inline(token.children or [])
            elif note is None and not token.type.startswith("footnote_block"):
                kept.append(token)
        return kept

    def flush_comments(self) -> None:
        if self.pending:
            self.out.append("\n" + "\n".join(self.pending) + "\n")
            self.pending.clear()

    def blocks(self, tokens: list[Token]) -> None:
        i = 0
        while i < len(tokens):
            token = tokens[i]
            kind = token.type
            if kind == "inline":
                self.out.append(self.inline(token.children or []))
            elif kind == "paragraph_close":
                self.out.append("\n\n" if not self.lists or not token.hidden else "\n")
                self.flush_comments()
            elif kind == "heading_open":
                # Inside a list or quote a sectioning command is an error ("perhaps a missing \item").
                self.out.append("\\par\\textbf{" if self.lists else f"\\{_HEADINGS.get(token.tag, 'paragraph')}*{{")
            elif kind == "heading_close":
                self.out.append("}\\par\n\n" if self.lists else "}\n\n")
                self.flush_comments()
            elif kind in ("bullet_list_open", "ordered_list_open"):
                if len(self.lists) < MAX_LIST_DEPTH:
                    name = "itemize" if kind == "bullet_list_open" else "enumerate"
                    self.lists.append(name)
                    self.out.append(f"\\begin{{{name}}}\n")
                else:
                    self.skipped += 1
            elif kind in ("bullet_list_close", "ordered_list_close"):
                if self.skipped:
                    self.skipped -= 1
                else:
                    self.out.append(f"\\end{{{self.lists.pop()}}}\n\n")
                    self.flush_comments()
            elif kind == "list_item_open":
                self.out.append("\\item{} ")
            elif kind == "blockquote_open":
                self.out.append("\\begin{quote}\n" if len(self.lists) < MAX_LIST_DEPTH else "")
                self.lists.append("quote" if len(self.lists) < MAX_LIST_DEPTH else "")
            elif kind == "blockquote_close":
                name = self.lists.pop()
                self.out.append(f"\\end{{{name}}}\n\n" if name else "")
            elif kind in ("math_block", "math_block_label"):
                self.out.append(self.math(token.content, display=True) + "\n\n")
            elif kind in ("fence", "code_block"):
                lines = [r"\noindent\texttt{" + escape(line).replace(" ", "~") + r"}\par"
                         for line in token.content.rstrip("\n").split("\n")]
                self.out.append("{\\raggedright\n" + "\n".join(lines) + "\n}\n\n")
            elif kind == "html_block":
                self.out.append(escape(token.content) + "\n\n")
            elif kind == "hr":
                self.out.append("\\par\\noindent\\rule{\\linewidth}{0.4pt}\\par\n\n")
            elif kind == "table_open":
                end = next(j for j in range(i, len(tokens)) if tokens[j].type == "table_close")
                self.out.append(self.pipe_table(tokens[i:end]) + "\n\n")
                i = end
            i += 1

    def pipe_table(self, tokens: list[Token]) -> str:
        """A GFM pipe table: its first row is the header, ruled off as booktabs would; widths as any table."""
        rows: list[list[Cell]] = []
        texts: list[list[str]] = []
        aligns: list[str] = []
        for token in tokens:
            if token.type == "tr_open":
                rows.append([])
                texts.append([])
            elif token.type in ("th_open", "td_open") and len(rows) == 1:
                style = str(token.attrs.get("style", ""))
                aligns.append({"center": "c", "right": "r"}.get(style.rpartition(":")[2], "l"))
            elif token.type == "inline" and rows:
                rows[-1].append(Cell(parts=[("text", token.content)]))  # for the width estimate
                texts[-1].append(self.inline(token.children or []))
        table = Table(rows=rows, spec=[Column(align) for align in aligns], rules={0, 1, len(rows)})
        table.spec += [Column() for _ in range(table.columns - len(table.spec))]
        return latex_table(table, texts)

    def inline(self, tokens: list[Token]) -> str:
        parts = []
        for token in tokens:
            kind = token.type
            if kind == "text":
                parts.append(self.text(token.content))
            elif kind == "math_inline" or kind == "math_inline_double":
                parts.append(self.math(token.content, display=False))
            elif kind == "strong_open":
                parts.append(r"\textbf{")
            elif kind == "em_open":
                parts.append(r"\emph{")
            elif kind in ("strong_close", "em_close"):
                parts.append("}")
            elif kind == "code_inline":
                parts.append(r"\texttt{" + escape(token.content) + "}")
            elif kind == "softbreak":
                parts.append("\n")
            elif kind == "hardbreak":  # \leavevmode: `\\` with no line begun is an error; {}: `\\[x]` reads a length
                parts.append("\\leavevmode\\\\{}\n")
            elif kind == "footnote_ref":
                parts.append("\\protect\\footnote{" + self.notes.get(token.meta["id"], "") + "}")
            elif kind == "html_inline":
                parts.append(escape(token.content))
            elif kind == "image":
                parts.append(r"\textit{[image" + (": " + escape(token.content) if token.content else "") + "]}")
        return "".join(parts)

    def math(self, source: str, display: bool) -> str:
        """Math as markdown-it found it, repaired again: the page's spans come through unchanged (the repair
        is idempotent), and a `$...$` that markdown-it found where the page split saw text is made safe too."""
        try:
            repaired = repair_math(source, display)
        except UnrepairableMath as error:
            self.pending.append(comment(f"{self.page.marker} {error}; the model wrote:\n{source.strip()}"))
            return r"\textbf{" + escape(self.page.marker) + "}"
        self.commands |= repaired.commands
        if not repaired.tex:
            return ""
        tex = math_text(repaired.tex)
        return f"\\[\n{tex}\n\\]" if display else f"${tex}$"

    def text(self, text: str) -> str:
        """Escaped text with the tables and unrepairable-math markers in place of their placeholders."""
        parts = []
        pos = 0
        for found in PLACEHOLDER.finditer(text):
            parts.append(escape(text[pos:found.start()]))
            index = int(found.group(2))
            if found.group(1) == "T":
                parts.append("\n" + table_latex(self.page.tables[index], self.page.marker) + "\n")
            else:
                broken = self.page.broken[index]
                parts.append(r"\textbf{" + escape(self.page.marker) + "}")
                self.pending.append(comment(f"{self.page.marker} {broken.reason}; the model wrote:\n{broken.raw}"))
            pos = found.end()
        parts.append(escape(text[pos:]))
        return "".join(parts)
