"""The shared clean-up of one page of Mathpix Markdown (Vary's output), run once before either writer.

`render.render_document` calls `repair_page` for every page it writes as `md` or `tex`; the result
goes to `markdown.render_page` and `latex.render_page`. The page text is split into text, math and
tables:

- math: `\\( \\)` and `$ $` inline; `\\[ \\]`, `$$ $$` and math environments (`equation`, `align`,
  `array`, ...) displayed. Each span is repaired by `texmath.repair_math`; a delimiter the model never
  closed ends at the next blank line. What cannot be repaired becomes a `[UNREPAIRABLE_MATH:N]` marker.
- tables: `\\begin{tabular}`, `tabularx`, `longtable` (an unclosed one runs to the end of the page) and
  olmOCR's HTML `<table>`s are parsed by tables.py into rows and cells with their spans and column
  widths, the `table` float around them dropped and its `\\caption` kept as text.
- nougat's `markdown_compatible` fixes: an equation number beside a display, `(1) \\[x\\]` or
  `\\[x\\] (1)`, becomes `\\tag{1}`; `\\mbox{\\boldmath$x$}` becomes `\\mathbf{x}` (`\\bm` is renamed
  in texmath).

The result, `RepairedPage.markdown`, is CommonMark with `$...$` / `$$...$$` math (a literal `$` in
the text escaped as `\\$`) and a placeholder for each table and each unrepairable span, which the
writers replace.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from .tables import Table, braced, parse_html_table, parse_tabular
from .texmath import MathRepair, UnrepairableMath, repair_math

UNREPAIRABLE_MARKER = "[UNREPAIRABLE_MATH:{page}]"
# Placeholders in RepairedPage.markdown: private-use characters the model text is cleaned of.
PLACEHOLDER = re.compile("\ue000([TU])(\\d+)\ue001")

DISPLAY_ENVS = {"equation", "equation*", "align", "align*", "gather", "gather*", "multline", "multline*",
                "eqnarray", "eqnarray*", "displaymath", "flalign", "flalign*", "alignat", "alignat*",
                "array", "matrix", "pmatrix", "bmatrix", "Bmatrix", "vmatrix", "Vmatrix", "cases", "aligned",
                "gathered", "split", "subequations"}
_OPENER = re.compile(r"\\begin\{(tabular\*?|tabularx|longtable)\}|\\begin\{([A-Za-z]+\*?)\}|(\\\\)|^ {0,3}(`{3,}|~{3,})|\\\(|\\\[|"
                     r"(?<!\\)\$\$|(?<!\\)\$|(`+)|(<table\b[^<>]*>)", re.M | re.I)
_EQUATION_NUMBER = r"\(\s*([\d.]+[a-zA-Z]?)\s*\)"


@dataclass
class BrokenMath:
    """Math no repair could save: the model's text, kept for a comment or a code span."""

    raw: str
    display: bool
    reason: str


@dataclass
class RepairedPage:
    """One page after the shared repair; see the module docstring."""

    page: int
    markdown: str
    tables: list[Table] = field(default_factory=list)
    broken: list[BrokenMath] = field(default_factory=list)
    commands: set[str] = field(default_factory=set)
    math: list[MathRepair] = field(default_factory=list)  # every span written as `$`/`$$` math, in order

    @property
    def marker(self) -> str:
        return UNREPAIRABLE_MARKER.format(page=self.page)


def clean_text(text: str) -> str:
    """Drop what no writer can carry: control characters, lone surrogates, our placeholder characters."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n\n")
    return "".join(ch for ch in text if ch in "\n\t" or (unicodedata.category(ch) not in ("Cc", "Cs", "Co")
                                                      and ch not in "\ufffe\uffff"))


def repair_page(text: str, page: int) -> RepairedPage:
    """Split one page of model text into Markdown, math and tables, repairing each; see the module docstring."""
    result = RepairedPage(page=page, markdown="")
    text = "\n" + _nougat_fixes(clean_text(text))  # every line, the first too, starts after a newline
    lists: list[str] = []  # itemize/enumerate environments open in the text, outermost first
    pieces: list[str] = []
    pos = 0
    while True:
        match = _OPENER.search(text, pos)
        if match is None:
            break
        token = match.group()
        if match.group(3):  # `\\` (a LaTeX line break): text, or `\\[2pt]` would open math
            pieces.append(_markdown_text(lists, pieces, text[pos:match.end()]))
            pos = match.end()
            continue
        if match.group(4):  # a code fence: verbatim to its closing fence, escaped when there is none
            fence = match.group(4)
            close = re.compile(f"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.M).search(text, match.end())
            code = text[match.start():close.end()] if close else match.group().replace(fence, "\\" + fence, 1)
            pieces.append(_markdown_text(lists, pieces, text[pos:match.start()]) + code)
            pos = close.end() if close else match.end()
            continue
        if match.group(5):  # a Markdown code span: kept as it is, `$` and all
            close = re.compile(f"(?<!`){re.escape(token)}(?!`)").search(text, match.end(), _paragraph_end(text, match.end()))
            if len(token) >= 3:  # ``` inside a line: escaped, for our line breaks could make it a fence
                close = None
            # A run that closes nowhere is escaped, or Markdown would pair it with a backtick in later math.
            code = text[match.start():close.end()] if close else "\\`" * len(token)
            pieces.append(_markdown_text(lists, pieces, text[pos:match.start()]) + code)
            pos = close.end() if close else match.end()
            continue
        if match.group(2) and match.group(2) not in DISPLAY_ENVS:  # itemize, abstract...: left as text
            pieces.append(_markdown_text(lists, pieces, text[pos:match.end()]))
            pos = match.end()
            continue
        end, body_start, body_end = _span_end(text, match)
        if end is None:  # a `$` or `$$` that closes nowhere is a literal dollar
            pieces.append(_markdown_text(lists, pieces, text[pos:match.end()]))
            pos = match.end()
            continue
        pieces.append(_markdown_text(lists, pieces, text[pos:match.start()]))
        if pieces[-1][-1:].isdigit() and token in ("\\(", "$"):
            pieces.append(" ")  # GitHub does not take `1$x$` as math
        if match.group(1) or match.group(6):
            body = text[body_start:body_end]
            if match.group(1) in ("tabularx", "tabular*"):
                body = body[braced(body, 0)[1]:]  # the table's width: ours is the line's
            table = parse_tabular(body, result.commands) if match.group(1) else parse_html_table(body, result.commands)
            result.tables.append(table)
            pieces.append(f"\n\n\ue000T{len(result.tables) - 1}\ue001\n\n")
        else:
            display = token not in ("\\(", "$")
            body = text[match.start():body_end] if match.group(2) else text[body_start:body_end]
            # A line that starts with `|`, or any line after a delimiter row `|---|` in the same paragraph, is
            # a pipe-table row in GFM.
            paragraph = "".join(pieces[-8:]).rsplit("\n\n", 1)[-1]
            row = paragraph.rsplit("\n", 1)[-1].lstrip().startswith("|") or \
                re.search(r"^ {0,3}\|?\s*:?-+:?\s*\|[-:|\s]*$", paragraph, re.M) is not None
            pieces.append(_math_markdown(body, display, result, in_table_row=row))
        pos = end
        if text[pos:pos + 1].isdigit() and token in ("\\(", "$"):
            pieces.append(" ")  # nor `$x$2`
    pieces.append(_markdown_text(lists, pieces, text[pos:]))
    result.markdown = re.sub(r"\n{3,}", "\n\n", "".join(pieces)).strip("\n")
    return result


def _nougat_fixes(text: str) -> str:
    # An equation number written beside a display (nougat's markdown_compatible does the same).
    text = re.sub(r"^" + _EQUATION_NUMBER + r"\s*\\\[(.+?)\\\]\s*$", r"\\[\2 \\tag{\1}\\]", text, flags=re.M)
    text = re.sub(r"^\\\[(.+?)\\\]\s*" + _EQUATION_NUMBER + r"\s*$", r"\\[\1 \\tag{\2}\\]", text, flags=re.M)
    text = re.sub(r"^\$\$(.+?)\$\$\s*" + _EQUATION_NUMBER + r"\s*$", r"$$\1 \\tag{\2}$$", text, flags=re.M)
    text = re.sub(r"\\mbox\{ ?\\boldmath\$(.*?)\$\}", r"\\mathbf{\1}", text)
    # The float around a tabular: the tabular and the caption are kept, the float commands are not.
    text = re.sub(r"\\(?:begin|end)\{table\*?\}(?:\[[a-zA-Z!]*\])?|\\centering\b", "\n", text)
    return re.sub(r"\\caption\{([^{}]*)\}", r"\n\n\1\n\n", text)


def _span_end(text: str, match: re.Match) -> tuple[int | None, int, int]:
    """(end of the whole span, start and end of its body); the end is None for a dollar that never closes."""
    token = match.group()
    start = match.end()
    if match.group(6):
        close = re.compile(r"</table\s*>", re.I).search(text, start)
        return (close.end(), start, close.start()) if close else (len(text), start, len(text))
    if match.group(1) or match.group(2):
        name = match.group(1) or match.group(2)
        close = _matching_end(text, start, name)
        if close is not None:
            return close[1], start, close[0] if match.group(1) else close[1]
        stop = len(text) if match.group(1) else _paragraph_end(text, start)
        return stop, start, stop
    if token in ("\\(", "\\["):
        closer = "\\)" if token == "\\(" else "\\]"
        stop = _paragraph_end(text, start)
        close = text.find(closer, start, stop)
        return (close + 2, start, close) if close >= 0 else (stop, start, stop)
    if token == "$$":
        close = text.find("$$", start)
        return (close + 2, start, close) if close >= 0 else (None, start, start)
    # A single `$` opens math when followed by a non-space, and closes at a `$` after a non-space that is
    # not followed by a digit, within the paragraph (pandoc's rule; "$5 and $10" stays text).
    if start >= len(text) or text[start].isspace():
        return None, start, start
    close = re.compile(r"(?<!\\)\$").search(text, start, _paragraph_end(text, start))
    if close is None or text[close.start() - 1].isspace() or text[close.end():close.end() + 1].isdigit():
        return None, start, start
    return close.end(), start, close.start()


def _matching_end(text: str, start: int, name: str) -> tuple[int, int] | None:
    pattern = re.compile(r"\\(begin|end)\{" + re.escape(name) + r"\}")
    depth = 1
    for found in pattern.finditer(text, start):
        depth += 1 if found.group(1) == "begin" else -1
        if depth == 0:
            return found.start(), found.end()
    return None


def _paragraph_end(text: str, start: int) -> int:
    found = re.compile(r"\n[ \t]*\n").search(text, start)
    return found.start() if found else len(text)


_STRUCTURE = re.compile(r"\\(title|section|subsection|subsubsection|paragraph)\*?\{([^{}]*)\}|"
                        r"\\(textbf|textit|emph)\{([^{}]*)\}|\\(begin|end)\{(itemize|enumerate|abstract)\}|"
                        r"\s*\\item\b(?:\[([^\]]*)\])?\s*")
_HEADING = {"title": "#", "section": "##", "subsection": "###", "subsubsection": "####", "paragraph": "#####"}


def _markdown_text(lists: list[str], pieces: list[str], text: str) -> str:
    """Model text outside math as Markdown: Mathpix's LaTeX structure commands (`\\section{}`, `\\textbf{}`,
    itemize/enumerate, abstract) become their Markdown forms, and a bare `$` is escaped (it would open math)."""

    def structure(found: re.Match) -> str:
        heading, title, style, body, edge, env, label = found.groups()
        if heading:
            return f"\n\n{_HEADING[heading]} {title.strip()}\n\n"
        if style:
            mark = "**" if style == "textbf" else "*"
            return f"{mark}{body.strip()}{mark}" if body.strip() else ""
        if env == "abstract":
            return "\n\n## Abstract\n\n" if edge == "begin" else "\n\n"
        if edge == "begin":
            lists.append(env)
            return "\n\n"
        if edge == "end":
            if env in lists:
                del lists[len(lists) - 1 - lists[::-1].index(env):]
            return "\n\n"
        # \item: a list marker indented under the markers of the lists around it
        indent = sum(3 if kind == "enumerate" else 2 for kind in lists[:-1])
        marker = "1. " if lists and lists[-1] == "enumerate" else "- "
        return "\n" + " " * indent + marker + (f"**{label}** " if label else "")

    line_start = not pieces or "".join(pieces[-2:]).endswith("\n")  # after a table or display, say
    text = ("\n" if line_start else "") + _STRUCTURE.sub(structure, text)
    # Lines Markdown would read as an indented code block or an HTML block would swallow the math that
    # follows them: indentation of four or more becomes three (list items keep theirs; three still continues
    # a list item's paragraph) and a leading `<` is escaped.
    text = re.sub(r"\n[ \t]+(?![ \t]|[-*+][ \t]|\d{1,9}[.)][ \t])",
                  lambda m: m.group() if len(m.group().expandtabs(4)) <= 4 else "\n   ", text)
    text = re.sub(r"(\n {0,3})<", r"\1\\<", text)
    return re.sub(r"(?<!\\)\$", r"\\$", text[1:] if line_start else text)


def _math_markdown(body: str, display: bool, result: RepairedPage, in_table_row: bool = False) -> str:
    try:
        repaired = repair_math(body, display)
    except UnrepairableMath as error:
        result.broken.append(BrokenMath(raw=body.strip(), display=display, reason=str(error)))
        mark = f"\ue000U{len(result.broken) - 1}\ue001"
        return f"\n\n{mark}\n\n" if display else mark
    if not repaired.tex:
        return " "
    result.commands |= repaired.commands
    if in_table_row and not display:  # a pipe-table row splits cells at `|` before it sees math
        repaired.tex = repaired.tex.replace("\\|", "\\Vert ").replace("|", "\\vert ").strip()
    result.math.append(repaired)
    if display:
        return f"\n\n$$\n{repaired.tex}\n$$\n\n"
    return "$" + repaired.tex.replace("\n", " ") + "$"
