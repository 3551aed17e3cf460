"""Tables of a page: the model's `tabular`s (and olmOCR's HTML tables) parsed into rows of cells.

`mathpix.repair_page` calls `parse_tabular` for each `\\begin{tabular}` / `tabularx` / `longtable` it
finds and `parse_html_table` for each `<table>`; `markdown.py` and `latex.py` write the resulting
`Table`. What the parse keeps:

- the column spec, as `Column`s: `l c r`, `p{}`/`m{}`/`b{}` widths (`0.3\\textwidth`, `142.3pt`, `2cm`),
  tabularx's `X`, rules `|`, and array's `>{\\centering}` alignments; `*{3}{c}` is expanded, and what
  no writer can use (`@{...}`, `!{...}`, siunitx `S`, dcolumn `D{.}{.}{2}`) becomes a plain column;
- rows split at `\\\\` and cells at `&` outside braces, math and nested environments, so a nested
  `tabular` stays inside its cell (as a nested `Table` part) and `$$\\begin{array}..\\\\..$$` stays whole;
- `\\multicolumn`/`\\multirow` spans, also when their last argument has no braces (`\\multirow{2}{*} 0.015`);
- a `$` that opens no math in its cell (`(AUD $'000)`) as a literal dollar: math needs a closing `$`
  in the same cell, after a non-space and not before a digit (pandoc's rule);
- `\\\\` inside a cell's braces (`\\makecell{a \\\\ b}`) as a line break.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from .texmath import UnrepairableMath, repair_math

RULE = re.compile(r"\\(?:hline|toprule|midrule|bottomrule|cline\s*\{[^{}]*\}|cmidrule(?:\([^()]*\))?\s*\{[^{}]*\})")
# A width for p{}/m{}/b{}: a dimension, or a fraction of the line (`0.3\textwidth`, `.5\linewidth`).
WIDTH = re.compile(r"\s*(?:(?:\d+\.?\d*|\.\d+)\s*(?:pt|mm|cm|in|ex|em|bp|pc|dd|cc|sp)|"
                   r"(\d+\.?\d*|\.\d+)?\s*\\(?:textwidth|linewidth|columnwidth|hsize|textheight|paperwidth))\s*")
MAX_COLUMNS = 100


@dataclass
class Column:
    """One column of a spec: alignment, a fixed width (p/m/b) or a wrapping share (X), rules on its left."""

    align: str = "l"  # l, c or r; j for a p/m/b column without an alignment (LaTeX justifies it)
    width: str | None = None  # a TeX width such as "0.3\\linewidth" or "2cm" for a p/m/b column
    valign: str = "p"  # p, m or b, with a width
    wrap: bool = False  # tabularx's X: wraps at a width the writer chooses
    left: str = ""  # rules before the column: "", "|" or "||"


@dataclass
class Cell:
    """One table cell as parts: ("text", str), ("math", MathRepair), ("broken", raw), ("break", "") or
    ("table", Table) for a nested tabular."""

    parts: list[tuple[str, object]]
    colspan: int = 1
    rowspan: int = 1
    align: str | None = None  # a \multicolumn's own alignment (l, c or r)

    @property
    def empty(self) -> bool:
        return all(kind == "text" and not str(value).strip() for kind, value in self.parts)


@dataclass
class Table:
    """A tabular: rows of cells as LaTeX writes them (a cell under a \\multirow is an empty cell)."""

    rows: list[list[Cell]]
    spec: list[Column] = field(default_factory=list)  # at least `columns` long once parsed
    right: str = ""  # rules after the last column
    rules: set[int] = field(default_factory=set)  # a rule is drawn above row i (len(rows): below the last)

    @property
    def columns(self) -> int:
        return max((sum(cell.colspan for cell in row) for row in self.rows), default=0)

    @property
    def spans(self) -> bool:
        return any(cell.colspan > 1 or cell.rowspan > 1 for row in self.rows for cell in row)


def parse_tabular(source: str, commands: set[str]) -> Table:
    """Rows and cells of a tabular body, starting after `\\begin{tabular}` (or tabularx's width argument).

    The control words of the cells' math are added to `commands`.
    """
    pos = re.compile(r"\s*(\[[a-z]*\])?").match(source).end()  # \begin{tabular}[t]{..}
    spec, pos = braced(source, pos)
    rows: list[list[Cell]] = []
    rules: set[int] = set()
    for raw_row in split_top(source[pos:], "\\\\"):
        raw_row = re.sub(r"^\s*\[[^\]]*\]", "", raw_row)  # `\\[2pt]`
        raw_row = re.sub(r"^\s*\\(?:endhead|endfirsthead|endfoot|endlastfoot)\b", "", raw_row)  # longtable
        if RULE.search(raw_row):
            rules.add(len(rows))
            raw_row = RULE.sub(" ", raw_row)
        if not raw_row.strip():
            continue
        rows.append([_parse_cell(raw, commands) for raw in split_top(raw_row, "&")])
    table = Table(rows=rows, rules=rules)
    table.spec, table.right = parse_spec(spec or "")
    table.spec += [Column() for _ in range(table.columns - len(table.spec))]
    return table


def parse_spec(spec: str) -> tuple[list[Column], str]:
    """The columns of a tabular spec and the rules after the last; see the module docstring."""
    columns: list[Column] = []
    rules, align = "", None
    for kind, arg in _spec_tokens(spec, depth=0):
        if kind == "|":
            rules = (rules + "|")[:2]
        elif kind == ">":
            found = re.search(r"\\(centering|raggedright|raggedleft)", arg)
            align = {"centering": "c", "raggedright": "l", "raggedleft": "r"}[found.group(1)] if found else align
        elif kind in "pmb":
            width = _width(arg)
            columns.append(Column(align or "j", width, kind, left=rules) if width else
                           Column(align or "j", left=rules, wrap=True))
            rules, align = "", None
        elif kind == "X":
            columns.append(Column(align or "j", wrap=True, left=rules))
            rules, align = "", None
        elif kind in "lcr":
            columns.append(Column(align or kind, left=rules))
            rules, align = "", None
        if len(columns) >= MAX_COLUMNS:
            break
    return columns, rules


def _spec_tokens(spec: str, depth: int) -> list[tuple[str, str]]:
    """(kind, argument) pairs: `|`, `l c r`, `p m b X` (p's argument), `>` (its argument); others dropped."""
    tokens: list[tuple[str, str]] = []
    i = 0
    while i < len(spec):
        char = spec[i]
        i += 1
        if char in "pmb>":
            arg, i = braced(spec, i)
            tokens.append((char, arg or ""))
        elif char in "@!<":
            _, i = braced(spec, i)
        elif char == "*" and depth < 3:
            count, i = braced(spec, i)
            inner, i = braced(spec, i)
            repeat = int(count) if count and count.strip().isdigit() else 1
            tokens += _spec_tokens(inner or "", depth + 1) * min(repeat, MAX_COLUMNS)
        elif char == "D":  # dcolumn: D{.}{.}{2} aligns on the decimal point
            for _ in range(3):
                _, i = braced(spec, i)
            tokens.append(("c", ""))
        elif char == "[":  # an option (siunitx's S[table-format=2.1])
            close = spec.find("]", i)
            i = close + 1 if close >= 0 else len(spec)
        elif char in "|lcrX":
            tokens.append((char, ""))
        elif char.isalpha():  # siunitx S, custom L/C/R/Y... columns: a plain column with a similar look
            tokens.append(({"L": "l", "R": "r"}.get(char, "c"), ""))
        elif char == "{":  # an argument we could not read
            _, i = braced(spec, i - 1)
    return tokens


def _width(arg: str) -> str | None:
    found = WIDTH.fullmatch(arg)
    if not found:
        return None
    # Our document has one column, so every line-relative width is the line's own.
    return re.sub(r"\\(?:textwidth|columnwidth|hsize|paperwidth|textheight)", r"\\linewidth", arg.strip())


def split_top(text: str, separator: str) -> list[str]:
    """Split at `separator` outside braces, environments and math (`\\&` and `\\\\` inside cells stay)."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        if depth == 0 and text.startswith(separator, i):
            parts.append(text[start:i])
            i += len(separator)
            start = i
            continue
        nesting = _nesting(text, i, depth)
        if nesting:
            i, depth = nesting
        elif text[i] in "\\$":
            end = _math_end(text, i)
            i = end if end else i + (2 if text[i] == "\\" else 1)
        else:
            i += 1
    parts.append(text[start:])
    return parts


_ENV_EDGE = re.compile(r"\\(begin|end)\s*\{[^{}]*\}")


def _nesting(text: str, i: int, depth: int) -> tuple[int, int] | None:
    """At text[i], an environment's `\\begin{}`/`\\end{}` or a brace: (the position after it, the new
    nesting depth); None for anything else."""
    found = _ENV_EDGE.match(text, i)
    if found:
        return found.end(), depth + 1 if found.group(1) == "begin" else max(0, depth - 1)
    if text[i] in "{}":
        return i + 1, depth + 1 if text[i] == "{" else max(0, depth - 1)
    return None


def _math_end(text: str, i: int) -> int | None:
    """The end of the math span that opens at text[i] (`$`, `$$`, `\\(`, `\\[`) in a cell, or None.

    A span ends in its cell: a `&` or `\\\\` outside braces and environments before its closer means
    the opener was text (a currency `$`).
    """
    for opener, closer in (("$$", "$$"), ("\\(", "\\)"), ("\\[", "\\]"), ("$", "$")):
        if text.startswith(opener, i):
            break
    else:
        return None
    start = i + len(opener)
    if opener == "$" and (start >= len(text) or text[start].isspace()):
        return None
    depth, j = 0, start
    while j < len(text):
        if text.startswith(closer, j) and depth == 0:
            if opener == "$" and (text[j - 1].isspace() or text[j + 1:j + 2].isdigit()):
                return None
            return j + len(closer)
        nesting = _nesting(text, j, depth)
        if nesting:
            j, depth = nesting
            continue
        if depth == 0 and (text.startswith("\\\\", j) or text[j] == "&" or text.startswith("\n\n", j)):
            return None
        j += 2 if text[j] == "\\" else 1
    return None


def braced(text: str, pos: int) -> tuple[str | None, int]:
    """The content of the `{...}` group at `pos` (after spaces), and the position after it."""
    found = re.compile(r"\s*\{").match(text, pos)
    if not found:
        return None, pos
    depth, i = 1, found.end()
    while i < len(text) and depth:
        if text[i] == "\\":
            i += 2
            continue
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[found.end():i - 1 if depth == 0 else i], i


def _parse_cell(raw: str, commands: set[str]) -> Cell:
    colspan = rowspan = 1
    align = None
    raw = raw.strip()
    for _ in range(2):  # \multicolumn{2}{c}{\multirow{3}{*}{x}} and the other way round
        found = re.match(r"\\multicolumn\s*", raw)
        if found:
            count, pos = braced(raw, found.end())
            spec, pos = braced(raw, pos)
            colspan = _count(count)
            columns, _ = parse_spec(spec or "")
            align = columns[0].align if columns else None
            raw = _last_argument(raw, pos)
        found = re.match(r"\\multirow\s*(\[[^\]]*\])?", raw)
        if found:
            count, pos = braced(raw, found.end())
            pos = re.compile(r"\s*(\[[^\]]*\])?").match(raw, pos).end()
            _, pos = braced(raw, pos)
            pos = re.compile(r"\s*(\[[^\]]*\])?").match(raw, pos).end()
            rowspan = _count(count)
            raw = _last_argument(raw, pos)
    return Cell(parts=cell_parts(raw, commands), colspan=colspan, rowspan=rowspan, align=align)


def _last_argument(raw: str, pos: int) -> str:
    """A span's content: its braced last argument, or, when the model left the braces out, the rest of the cell."""
    body, end = braced(raw, pos)
    if body is not None and not raw[end:].strip():
        return body.strip()
    return raw[pos:].strip()


def _count(text: str | None) -> int:
    return min(int(text), MAX_COLUMNS) if text and text.strip().isdigit() and int(text) > 0 else 1


def cell_parts(raw: str, commands: set[str]) -> list[tuple[str, object]]:
    """Cell text as parts: math repaired, nested tabulars parsed, line breaks kept, other LaTeX reduced to text."""
    parts: list[tuple[str, object]] = []
    pos = i = 0
    while i < len(raw):
        nested = re.compile(r"\\begin\s*\{(tabular\*?|array)\}").match(raw, i)
        end = None if nested else _math_end(raw, i) if raw[i] in "$\\" else None
        if nested:
            close = _matching_end(raw, nested.end(), nested.group(1))
            body_end, end = close if close else (len(raw), len(raw))
            parts += _text_parts(raw[pos:i])
            parts.append(("table", parse_tabular(raw[nested.end():body_end], commands)))
        elif end:
            parts += _text_parts(raw[pos:i])
            opener = "$$" if raw.startswith("$$", i) else raw[i:i + 2] if raw[i] == "\\" else "$"
            body = raw[i + len(opener):end - len(opener)]
            try:
                repaired = repair_math(body, display=False)
                commands |= repaired.commands
                parts.append(("math", repaired) if repaired.tex else ("text", " "))
            except UnrepairableMath:
                parts.append(("broken", body))
        else:
            i += 2 if raw[i] == "\\" else 1
            continue
        pos = i = end
    parts += _text_parts(raw[pos:])
    return [part for part in parts if part[0] != "text" or part[1]]


def _matching_end(text: str, start: int, name: str) -> tuple[int, int] | None:
    depth = 1
    for found in re.finditer(r"\\(begin|end)\s*\{" + re.escape(name) + r"\}", text[start:]):
        depth += 1 if found.group(1) == "begin" else -1
        if depth == 0:
            return start + found.start(), start + found.end()
    return None


def _text_parts(latex: str) -> list[tuple[str, object]]:
    """Text with `\\\\` (inside `\\makecell{..}` and the like) and `\\newline` as line breaks."""
    pieces = re.split(r"\\\\(?:\[[^\]]*\])?|\\newline\b", latex)
    parts: list[tuple[str, object]] = []
    for k, piece in enumerate(pieces):
        if k:
            parts.append(("break", ""))
        parts.append(("text", plain_text(piece)))
    return parts


_TEXT_ESCAPES = {"\\%": "%", "\\&": "&", "\\_": "_", "\\#": "#", "\\$": "$", "\\{": "{", "\\}": "}",
                 "\\textbackslash": "\\", "~": " ", "\\ ": " ", "\\,": " "}


def plain_text(latex: str) -> str:
    """LaTeX cell text as plain text: escapes undone, commands (\\textbf, \\makecell...) and braces dropped."""
    text = re.sub(r"\\textbackslash\b|\\[%&_#${} ,]|~|\\[A-Za-z]+\*?(?:\[[^\]]*\])?|[{}]",
                  lambda m: _TEXT_ESCAPES.get(m.group(), ""), latex)
    return re.sub(r"\s+", " ", text)


def parse_html_table(html: str, commands: set[str]) -> Table:
    """An HTML `<table>` (olmOCR writes them) as a Table: `<td>`/`<th>` with colspan/rowspan, `<br>` breaks.

    HTML leaves out the cells a rowspan covers; LaTeX writes them empty, so they are put back.
    """
    reader = _HtmlTable()
    reader.feed(html)
    reader.close()
    rows: list[list[Cell]] = []
    covered: dict[tuple[int, int], bool] = {}
    for r, raw_row in enumerate(reader.rows):
        row: list[Cell] = []
        column = 0
        for text, colspan, rowspan in raw_row:
            while covered.get((r, column)):
                row.append(Cell(parts=[]))
                column += 1
            cell = Cell(parts=cell_parts(text, commands), colspan=colspan, rowspan=rowspan)
            for dr in range(1, rowspan):
                for dc in range(colspan):
                    covered[(r + dr, column + dc)] = True
            row.append(cell)
            column += colspan
        while covered.get((r, column)):
            row.append(Cell(parts=[]))
            column += 1
        rows.append(row)
    table = Table(rows=[row for row in rows if row], rules={1} if reader.header_rows else set())
    table.spec = [Column() for _ in range(table.columns)]
    return table


class _HtmlTable(HTMLParser):
    """Collects rows of (cell text, colspan, rowspan); a cell's text keeps `$` math, `<br>` becomes `\\\\`."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[tuple[str, int, int]]] = []
        self.cell: list[str] | None = None
        self.span = (1, 1)
        self.header_rows = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        values = dict(attrs)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            if not self.rows:
                self.rows.append([])
            self._close_cell()
            self.cell = []
            self.span = (_count(values.get("colspan")), _count(values.get("rowspan")))
            if tag == "th" and len(self.rows) == 1:
                self.header_rows = 1
        elif tag == "br" and self.cell is not None:
            self.cell.append(" \\\\ ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th", "tr", "table"):
            self._close_cell()

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            # HTML text is not LaTeX: its specials are escaped, except `$` and `\(` math, which olmOCR writes.
            self.cell.append(re.sub(r"([%&#_{}~])", r"\\\1", data))

    def _close_cell(self) -> None:
        if self.cell is not None:
            self.rows[-1].append(("".join(self.cell), *self.span))
            self.cell = None
