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
from .textmode import COMMANDS, markdown_text, reference, unicode_text

UNREPAIRABLE_MARKER = "[UNREPAIRABLE_MATH:{page}]"
# Placeholders in RepairedPage.markdown: private-use characters the model text is cleaned of.
PLACEHOLDER = re.compile("\ue000([TU])(\\d+)\ue001")

DISPLAY_ENVS = {"equation", "equation*", "align", "align*", "gather", "gather*", "multline", "multline*",
                "eqnarray", "eqnarray*", "displaymath", "flalign", "flalign*", "alignat", "alignat*",
                "array", "matrix", "pmatrix", "bmatrix", "Bmatrix", "vmatrix", "Vmatrix", "cases", "aligned",
                "gathered", "split", "subequations"}
_OPENER = re.compile(r"\\begin\{(tabular\*?|tabularx|longtable)\}|\\begin\{([A-Za-z]+\*?)\}|"
                     r"(\\\\)(?:\[\s*-?\d*\.?\d+\s*[a-z]{2}\s*\])?|^ {0,3}(`{3,}|~{3,})|\\\(|\\\[|"
                     r"(?<!\\)\$\$|(?<!\\)\$|(`+)|(<table\b[^<>]*>)|"
                     r"\\(?!begin\b|end\b|[vuHckrdbt]\{)([A-Za-z]+)\*?\s*(?:\[[^\]\n]*\]\s*)?(?=\{)", re.M)
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
    walk = _Walk(text, result)
    pos = 0
    while True:
        match = _OPENER.search(text, pos)
        if walk.closers and walk.closers[-1].at <= (match.start() if match else len(text)):
            pos = walk.close(pos)
            text = walk.text
            continue
        if match is None:
            break
        pos = walk.step(pos, match)
        text = walk.text
    walk.emit(text[pos:])
    notes = "".join(f"\n\n[^{label}]: {note}" for label, note in walk.footnotes)
    result.markdown = re.sub(r"\\\n(?=[ \t]*(\n|$))", "\n", re.sub(r"\n{3,}", "\n\n", "".join(walk.pieces) + notes))
    result.markdown = result.markdown.strip("\n")
    return result


@dataclass
class _Closer:
    """An open command argument (`\\section*{`, `\\textbf{`, `\\footnote{`): where it ends and what to write there."""

    at: int  # position of its closing brace (the paragraph's end when it has none)
    kind: tuple
    mark: int  # index in pieces where its content starts
    consume: int = 1  # characters to skip at `at` (its brace)
    suffix: str = ""


class _Walk:
    """The state of `repair_page`'s walk over the page: Markdown pieces so far, open lists and commands."""

    def __init__(self, text: str, result: RepairedPage) -> None:
        self.text = text
        self.result = result
        self.lists: list[str] = []  # itemize/enumerate environments open in the text, outermost first
        self.pieces: list[str] = []
        self.closers: list[_Closer] = []
        self.footnotes: list[tuple[str, str]] = []

    def emit(self, text: str) -> None:
        line_start = not self.pieces or "".join(self.pieces[-2:]).endswith("\n")  # after a table or display, say
        self.pieces.append(markdown_text(self.lists, line_start, text))

    def in_heading(self) -> bool:
        """Inside a heading, emphasis, footnote or link: one line, so display math is set inline there."""
        return any(closer.kind[0] in ("heading", "footnote", "style", "href") for closer in self.closers)

    def step(self, pos: int, match: re.Match) -> int:
        """Handle the opener `match` found at or after `pos`; the position to go on from."""
        text, result, pieces = self.text, self.result, self.pieces
        token = match.group()
        if match.group(3):  # `\\` (a LaTeX line break): a hard break in Markdown, a space in a heading
            self.emit(text[pos:match.start()].rstrip(" \t"))
            pieces.append(" " if self.in_heading() else "\\\n")
            return match.end()
        if match.group(7):
            return self.command(pos, match)
        if match.group(4):  # a code fence: verbatim to its closing fence, escaped when there is none
            fence = match.group(4)
            close = re.compile(f"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.M)
            close = close.search(text, match.end())
            code = text[match.start():close.end()] if close else match.group().replace(fence, "\\" + fence, 1)
            self.emit(text[pos:match.start()])
            pieces[-1] += code
            return close.end() if close else match.end()
        if match.group(5):  # a Markdown code span: kept as it is, `$` and all
            close = re.compile(f"(?<!`){re.escape(token)}(?!`)")
            close = close.search(text, match.end(), _paragraph_end(text, match.end()))
            if len(token) >= 3:  # ``` inside a line: escaped, for our line breaks could make it a fence
                close = None
            # A run that closes nowhere is escaped, or Markdown would pair it with a backtick in later math.
            code = text[match.start():close.end()] if close else "\\`" * len(token)
            self.emit(text[pos:match.start()])
            pieces[-1] += code
            return close.end() if close else match.end()
        if match.group(2) and match.group(2) not in DISPLAY_ENVS:  # itemize, center...: text (textmode.py)
            self.emit(text[pos:match.end()])
            return match.end()
        end, body_start, body_end = _span_end(text, match)
        if end is None:  # a `$` or `$$` that closes nowhere is a literal dollar
            self.emit(text[pos:match.end()])
            return match.end()
        self.emit(text[pos:match.start()])
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
            pieces.append(_math_markdown(body, display and not self.in_heading(), result, in_table_row=row))
        if text[end:end + 1].isdigit() and token in ("\\(", "$"):
            pieces.append(" ")  # nor `$x$2`
        return end

    def command(self, pos: int, match: re.Match) -> int:
        """`\\name{...}` in text (textmode.COMMANDS): what its argument becomes, and where the walk goes on."""
        text, pieces = self.text, self.pieces
        kind = COMMANDS.get(match.group(7), ("keep",))
        brace = match.end() + text[match.end():].index("{")
        close = _closing_brace(text, brace)
        self.emit(text[pos:match.start()])
        if kind[0] in ("drop", "ref", "url"):
            body = text[brace + 1:close if close is not None else brace + 1]
            end = close + 1 if close is not None else brace + 1
            if kind[0] == "ref":
                pieces.append(reference(kind[1], body))
            elif kind[0] == "url":
                url = " ".join(body.split())
                pieces.append(f"<{url}>" if re.fullmatch(r"[A-Za-z][\w+.-]*:[^\s<>]*", url) else unicode_text(url))
            return end
        at, consume = (close, 1) if close is not None else (_paragraph_end(text, brace), 0)
        closer = _Closer(at=at, kind=kind, mark=len(pieces), consume=consume)
        if kind[0] == "heading":
            # A Markdown heading is one line: the argument's line breaks become spaces (same length).
            self.text = text = text[:brace] + text[brace:at].replace("\n", " ") + text[at:]
            pieces.append(f"\n\n{'#' * kind[1]} ")
            closer.suffix = "\n\n"
        elif kind[0] == "block":
            pieces.append("\n\n")
            closer.suffix = "\n\n"
        elif kind[0] == "style":
            pieces.append(kind[1])
            closer.suffix = kind[1]
        elif kind[0] == "href":
            url = " ".join(text[brace + 1:at].split())
            second = re.compile(r"\s*\{").match(text, at + consume)
            if second is None or close is None:
                pieces.append(unicode_text(url))
                return at + consume
            closer.suffix = f"]({url.replace(')', '%29').replace(' ', '%20')})"
            pieces.append("[")
            brace = second.end() - 1
            second_close = _closing_brace(text, brace)
            closer.at, closer.consume = (second_close, 1) if second_close is not None else \
                (_paragraph_end(text, brace), 0)
        closer.mark = len(pieces)  # the content starts after the opening mark
        self.closers.append(closer)
        return brace + 1

    def close(self, pos: int) -> int:
        """Write the end of the innermost open command (see `command`); the position after its brace."""
        closer = self.closers.pop()
        if closer.at > pos:
            self.emit(self.text[pos:closer.at])
        pieces = self.pieces
        content = "".join(pieces[closer.mark:])
        kind = closer.kind[0]
        # Headings, emphasis, links and footnotes hold one line: around a table or paragraphs they are dropped.
        blocks = "\ue000T" in content or "\n\n" in content.strip()
        if kind == "footnote" and not blocks:
            del pieces[closer.mark:]
            label = f"p{self.result.page}-{len(self.footnotes) + 1}"
            note = " ".join(content.split())
            if note:
                self.footnotes.append((label, note))
                pieces.append(f"[^{label}]")
        elif kind in ("heading", "style", "href") and (blocks or kind == "style" and not content.strip()):
            pieces[closer.mark - 1] = "\n\n" if kind == "heading" else ""
            pieces.append("\n\n" if kind == "heading" else "")
        elif kind == "style":
            # Emphasis must hug its text: `** a **` is not bold. Spaces move outside the marks.
            if content[:1].isspace():
                pieces[closer.mark - 1] = " " + pieces[closer.mark - 1]
            pieces[closer.mark:] = [content.strip()]
            pieces.append(closer.suffix + (" " if content[-1:].isspace() else ""))
        elif kind != "footnote":
            if kind == "heading":
                pieces[closer.mark:] = [content.strip()]
            pieces.append(closer.suffix)
        return max(pos, closer.at + closer.consume)


def _nougat_fixes(text: str) -> str:
    # An equation number written beside a display (nougat's markdown_compatible does the same).
    text = re.sub(r"^" + _EQUATION_NUMBER + r"\s*\\\[(.+?)\\\]\s*$", r"\\[\2 \\tag{\1}\\]", text, flags=re.M)
    text = re.sub(r"^\\\[(.+?)\\\]\s*" + _EQUATION_NUMBER + r"\s*$", r"\\[\1 \\tag{\2}\\]", text, flags=re.M)
    text = re.sub(r"^\$\$(.+?)\$\$\s*" + _EQUATION_NUMBER + r"\s*$", r"$$\1 \\tag{\2}$$", text, flags=re.M)
    text = re.sub(r"\\mbox\{ ?\\boldmath\$(.*?)\$\}", r"\\mathbf{\1}", text)
    # The float around a tabular: the tabular and the caption are kept, the float commands are not.
    return re.sub(r"\\(?:begin|end)\{table\*?\}(?:\[[a-zA-Z!]*\])?|\\centering\b", "\n", text)


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


def _closing_brace(text: str, brace: int) -> int | None:
    """The position of the `}` that closes the `{` at `brace` (escaped braces skipped), or None."""
    depth, i = 0, brace
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return i
        i += 1
    return None


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
