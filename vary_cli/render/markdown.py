"""GitHub-flavoured Markdown from a repaired page: `$` math, pipe tables, HTML tables where cells span.

`render.render_document` calls `render_page` for `--format md`. The page's Markdown already has
`$...$` and `$$...$$` math (see `mathpix.repair_page`); this module puts the tables and the
unrepairable-math markers in place of their placeholders:

- a table without spanning cells becomes a pipe table (its first row is the header, as GFM needs one);
  a `|` in a cell is escaped, and inside math written `\\vert`/`\\Vert`, since GFM splits cells before
  it sees math;
- a table with `\\multicolumn`/`\\multirow` becomes an HTML `<table>` with colspan/rowspan; each
  non-empty cell's content sits between blank lines so GitHub and markdown-it parse its math;
- unrepairable math becomes `[UNREPAIRABLE_MATH:N]` followed by the model's text in a code span.

The output parses with markdown-it + dollarmath (tests/render/test_documents.py checks that every
math span and table survives). `parser()` is that reader, the one the LaTeX writer uses too, with a
work-around for dollarmath reading `$x$` at the very start of a paragraph: its digit check reads the
character before the `$` as `src[pos - 1]`, which at position 0 is the paragraph's *last* character, so
`$0.25$ 1000` stayed text (mdit-py-plugins 0.4-0.7, `math_inline_dollar`).
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt
from markdown_it.rules_inline import StateInline
from mdit_py_plugins.dollarmath import dollarmath_plugin
from mdit_py_plugins.dollarmath.index import math_inline_dollar
from mdit_py_plugins.footnote import footnote_plugin

from .mathpix import PLACEHOLDER, BrokenMath, RepairedPage
from .tables import Cell, Table


def render_page(page: RepairedPage) -> str:
    """The page as GitHub-flavoured Markdown."""
    def substitute(found: re.Match) -> str:
        index = int(found.group(2))
        if found.group(1) == "T":
            return table_markdown(page.tables[index], page.marker)
        return broken_markdown(page.broken[index], page.marker)

    return PLACEHOLDER.sub(substitute, page.markdown)


def parser() -> MarkdownIt:
    """CommonMark + GFM tables and footnotes + dollarmath (`$` not before a space or after a digit), as our
    Markdown is read."""
    md = MarkdownIt("commonmark").enable(["table", "strikethrough"]).use(footnote_plugin)
    md.use(dollarmath_plugin, allow_space=False, allow_digits=False)
    md.inline.ruler.at("math_inline", _from_the_start(math_inline_dollar(allow_space=False, allow_digits=False)))
    return md


def _from_the_start(rule):
    """The dollarmath rule, run at position 0 on the text with a space before it (see the module docstring)."""
    def wrapped(state: StateInline, silent: bool) -> bool:
        if state.pos != 0:
            return rule(state, silent)
        src, pos_max = state.src, state.posMax
        state.src, state.pos, state.posMax = " " + src, 1, pos_max + 1
        try:
            return rule(state, silent)
        finally:
            state.src, state.posMax = src, pos_max
            state.pos -= 1
    return wrapped


def escape_text(text: str) -> str:
    """Plain text as Markdown that shows it as it is (punctuation that Markdown reads is backslash-escaped)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def broken_markdown(broken: BrokenMath, marker: str) -> str:
    raw = " ".join(broken.raw.split())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", raw)), default=0) + 1)
    return f"{marker} {fence} {raw} {fence}"


def table_markdown(table: Table, marker: str) -> str:
    if not table.rows:
        return ""
    return html_table(table, marker) if table.spans else pipe_table(table, marker)


def pipe_table(table: Table, marker: str) -> str:
    width = table.columns
    lines = []
    for k, row in enumerate(table.rows):
        cells = [_cell_markdown(cell, marker, in_pipe_table=True) for cell in row]
        cells += [""] * (width - len(cells))
        lines.append("| " + " | ".join(cells) + " |")
        if k == 0:
            lines.append("|" + "---|" * width)
    return "\n".join(lines)


def html_table(table: Table, marker: str) -> str:
    lines = ["<table>"]
    covered: dict[int, int] = {}  # column -> rows still covered by a \multirow above
    for row in table.rows:
        lines.append("<tr>")
        column = 0
        for cell in row:
            if covered.get(column, 0) > 0:
                covered[column] -= 1
                if cell.empty:  # LaTeX writes an empty cell under a \multirow; HTML leaves it out
                    column += 1
                    continue
            attributes = "".join(f' {name}="{value}"' for name, value in
                                 (("colspan", cell.colspan), ("rowspan", cell.rowspan)) if value > 1)
            body = _cell_markdown(cell, marker, in_pipe_table=False)
            lines.append(f"<td{attributes}>\n\n{body}\n\n</td>" if body else f"<td{attributes}></td>")
            if cell.rowspan > 1:
                for spanned in range(column, column + cell.colspan):
                    covered[spanned] = cell.rowspan - 1
            column += cell.colspan
        for spanned in covered:
            if spanned >= column and covered[spanned] > 0:
                covered[spanned] -= 1
        lines.append("</tr>")
    lines.append("</table>")
    return "\n".join(lines)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|$#~])")


def _cell_markdown(cell: Cell, marker: str, in_pipe_table: bool) -> str:
    parts = []
    for kind, value in cell.parts:
        if kind == "text":
            parts.append(_MARKDOWN_SPECIAL.sub(r"\\\1", str(value)))
        elif kind == "math":
            tex = value.tex.replace("\n", " ")  # type: ignore[union-attr]
            if in_pipe_table:
                tex = tex.replace("\\|", "\\Vert ").replace("|", "\\vert ")
            parts.append(f" ${tex.strip()}$ ")
        elif kind == "break":
            parts.append(" <br> ")  # GFM keeps a cell on one line; `<br>` breaks it where it is shown
        elif kind == "table":  # a nested tabular: one line per row
            rows = [" ".join(_cell_markdown(c, marker, in_pipe_table) for c in row)
                    for row in value.rows]  # type: ignore[union-attr]
            parts.append(" " + " <br> ".join(row for row in rows if row.strip()) + " ")
        else:
            raw = " ".join(str(value).split())
            parts.append(f"{marker} `{raw.replace('`', '')}`")
    text = re.sub(r"\s+", " ", "".join(parts)).strip()
    return re.sub(r"^(<br> ?)+|( ?<br>)+$", "", text)
