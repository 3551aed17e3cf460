"""How a `Table` is set in LaTeX so that every cell stays on the page.

`latex.py` renders each cell to LaTeX and calls `latex_table`. The layout:

- widths the model gave (`p{0.3\\textwidth}`, `m{2cm}`, `p{142.3pt}`) are kept, rules `|` too;
- when the table's estimated natural width is more than the line, columns holding running text
  (several words, long) become wrapping columns, `>{\\raggedright\\arraybackslash}p{w}` with `w` computed
  from the cells' lengths so the table fits the line; tabularx's `X` columns always wrap;
- a short table is set in a `varyfit` box (defined in the preamble) that TeX measures: wider than the
  line, it is shrunk to the line; wider than 1.5 lines and low enough, it is turned a quarter
  (landscape) instead; taller than the page, it is shrunk to the page;
- a table of more than LONG_ROWS rows is a `longtable`, which breaks across pages; it cannot be
  boxed, so a smaller font size makes it fit.

Widths are estimated from character counts (ESTIMATE_* below); the box catches what the estimate misses.
"""

from __future__ import annotations

import re
import unicodedata

from .tables import Cell, Column, Table

LINE_EM = 34.5  # article's \linewidth at 10pt (345pt), in em
CHAR_EM = 0.5  # an average character of Latin Modern, in em; a wide (CJK) character is 1
PAD_EM = 1.2  # 2\tabcolsep on each column
LONG_ROWS = 30  # rows beyond which a table may not fit a page: longtable
WRAP_MIN_EM = 6.0  # a column narrower than this stays as it is: wrapping it would gain little
# Font sizes a longtable may take, and how much narrower each sets text than \normalsize.
# Marks a line break inside a cell's LaTeX: `\newline` in a paragraph column, a one-column tabular elsewhere.
BREAK = "\ue002"
SIZES = (("", 1.0), ("\\small", 0.9), ("\\footnotesize", 0.8), ("\\scriptsize", 0.7), ("\\tiny", 0.5))
_UNITS_EM = {"pt": 0.1, "bp": 0.1004, "mm": 0.2845, "cm": 2.845, "in": 7.227, "pc": 1.2, "dd": 0.107, "cc": 1.284,
             "em": 1.0, "ex": 0.43, "sp": 0.1 / 65536}


def latex_table(table: Table, cells: list[list[str]], nested: bool = False) -> str:
    """The table in LaTeX, from the LaTeX of its cells (rows of strings, as `table.rows`, BREAK for a line
    break); `nested` for a tabular inside a cell: top-aligned, no padding, no box."""
    columns = _layout(table)
    long = len(table.rows) > LONG_ROWS and not nested
    size = _font_size(table, columns) if long else ""
    spec = "".join(_column_spec(column) for column in columns) + table.right
    lines = []
    for k, row in enumerate(table.rows):
        if k in table.rules:
            lines.append(r"\hline")
        texts = []
        column = 0
        for cell, text in zip(row, cells[k]):
            texts.append(_cell(cell, text, columns, column, table.right))
            column += cell.colspan
        lines.append(_row(texts))
    if len(table.rows) in table.rules:
        lines.append(r"\hline")
    body = "\n".join(lines)
    if nested:
        return f"\\begin{{tabular}}[t]{{@{{}}{spec}@{{}}}}\n{body}\n\\end{{tabular}}"
    if long:
        table_tex = f"\\begin{{longtable}}{{{spec}}}\n{body}\n\\end{{longtable}}"
        return f"{{{size}\n{table_tex}}}" if size else table_tex
    return f"\\begin{{center}}\n\\begin{{varyfit}}\n\\begin{{tabular}}{{{spec}}}\n{body}\n\\end{{tabular}}\n" \
           "\\end{varyfit}\n\\end{center}"


def wraps(column: Column) -> bool:
    """Whether a column's cells are paragraphs (a p/m/b or X column), where a line break is `\\newline`."""
    return column.width is not None or column.wrap


def _row(cells: list[str]) -> str:
    text = " & ".join(cells)
    # A row that starts with `[` after the previous row's `\\` would be read as its `[length]` argument.
    return ("{}" if text.startswith("[") else "") + text + r" \\"


def _cell(cell: Cell, text: str, columns: list[Column], first: int, right: str) -> str:
    spanned = columns[first:first + cell.colspan]
    if BREAK in text:
        if spanned and wraps(spanned[0]):
            text = text.replace(BREAK, "\\newline ")
        else:
            align = cell.align or (spanned[0].align if spanned and spanned[0].align in "lcr" else "l")
            text = f"\\begin{{tabular}}[t]{{@{{}}{align}@{{}}}}" + text.replace(BREAK, " \\\\{} ") + "\\end{tabular}"
    if cell.rowspan > 1:
        text = f"\\multirow{{{cell.rowspan}}}{{{'=' if spanned and wraps(spanned[0]) else '*'}}}{{{text}}}"
    if cell.colspan > 1 or cell.align:
        last = first + cell.colspan
        # A column's left rule belongs to the first column only; the others' are the previous column's right.
        rules = spanned[0].left if first == 0 and spanned else ""
        after = columns[last].left if last < len(columns) else right
        if any(wraps(column) for column in spanned):
            share = sum(_width_em(column) or 0 for column in spanned) / LINE_EM
            inner = f">{{{_ALIGN[cell.align or 'l']}\\arraybackslash}}p{{{share:.3f}\\linewidth}}"
        else:
            inner = cell.align or (spanned[0].align if spanned and spanned[0].align in "lcr" else "c")
        text = f"\\multicolumn{{{cell.colspan}}}{{{rules}{inner}{after}}}{{{text}}}"
    return text


_ALIGN = {"l": "\\raggedright", "c": "\\centering", "r": "\\raggedleft"}


def _column_spec(column: Column) -> str:
    if column.width is None and not column.wrap:
        return column.left + column.align
    width = column.width or f"{WRAP_MIN_EM / LINE_EM:.3f}\\linewidth"
    align = f">{{{_ALIGN[column.align]}\\arraybackslash}}" if column.align in _ALIGN else ""
    return f"{column.left}{align}{column.valign}{{{width}}}"


def _layout(table: Table) -> list[Column]:
    """The columns as they will be set: the model's, with wrapping widths where the table is too wide."""
    columns = [Column(c.align, c.width, c.valign, c.wrap, c.left) for c in table.spec[:max(table.columns, 1)]]
    columns += [Column() for _ in range(table.columns - len(columns))]
    natural, shortest = [0.0] * len(columns), [0.0] * len(columns)
    for row in table.rows:
        column = 0
        for cell in row:
            if cell.colspan == 1 and column < len(columns):
                width, word = _estimate(cell)
                natural[column] = max(natural[column], width)
                shortest[column] = max(shortest[column], word)
            column += cell.colspan
    fixed = [_width_em(column) if column.width else None for column in columns]
    total = sum(f if f is not None else n for f, n in zip(fixed, natural)) + PAD_EM * len(columns)
    # Running text: a column without a width whose cells are longer than a word, and long enough to matter.
    candidates = [k for k, column in enumerate(columns) if column.wrap or fixed[k] is None and total > LINE_EM
                  and natural[k] > max(WRAP_MIN_EM, shortest[k] * 1.5)]
    if not candidates:
        return columns
    others = sum(fixed[k] if fixed[k] is not None else natural[k] for k in range(len(columns)) if k not in candidates)
    available = LINE_EM - others - PAD_EM * len(columns)
    widths = _share(available, [natural[k] for k in candidates], [shortest[k] for k in candidates])
    wrapped = others + PAD_EM * len(columns) + sum(widths)
    if wrapped > LINE_EM and total - wrapped < 0.15 * total and not any(columns[k].wrap for k in candidates):
        return columns  # it will be shrunk anyway: narrow paragraphs would only make it taller
    for k, width in zip(candidates, widths):
        columns[k].width = f"{width / LINE_EM:.3f}\\linewidth"
        columns[k].wrap = False
        if columns[k].align not in _ALIGN:
            columns[k].align = "l"  # ragged: a justified narrow column stretches its spaces badly
    return columns


def _share(available: float, natural: list[float], shortest: list[float]) -> list[float]:
    """Widths for wrapping columns: proportional to their natural widths, never under their longest word,
    never over their natural width."""
    widths = [max(word, min(n, WRAP_MIN_EM)) for n, word in zip(natural, shortest)]
    for _ in range(len(natural)):  # hand out what is left, capping columns at their natural width
        left = available - sum(widths)
        growing = [k for k in range(len(natural)) if widths[k] < natural[k]]
        if left <= 0.01 or not growing:
            break
        weight = sum(natural[k] for k in growing)
        for k in growing:
            widths[k] = min(natural[k], widths[k] + left * natural[k] / weight)
    return widths


def _font_size(table: Table, columns: list[Column]) -> str:
    """The largest size at which a longtable's estimated width fits the line."""
    width = sum(_width_em(column) or 0 for column in columns) + PAD_EM * len(columns)
    for row in table.rows:
        unfixed = 0.0
        column = 0
        for cell in row:
            if cell.colspan == 1 and column < len(columns) and not columns[column].width:
                unfixed += _estimate(cell)[0]
            column += cell.colspan
        width = max(width, unfixed + sum(_width_em(c) or 0 for c in columns) + PAD_EM * len(columns))
    for name, scale in SIZES:
        if width * scale <= LINE_EM:
            return name
    return SIZES[-1][0]


def _width_em(column: Column) -> float | None:
    """A column's set width in em (a fraction of the line, or a dimension)."""
    if column.width is None:
        return None
    found = re.fullmatch(r"\s*(\d+\.?\d*|\.\d+)?\s*\\linewidth\s*", column.width)
    if found:
        return float(found.group(1) or 1) * LINE_EM
    found = re.fullmatch(r"\s*(\d+\.?\d*|\.\d+)\s*([a-z]{2})\s*", column.width)
    return float(found.group(1)) * _UNITS_EM.get(found.group(2), 0.1) if found else None


def _estimate(cell: Cell) -> tuple[float, float]:
    """(natural width, widest unbreakable piece) of a cell in em."""
    lines: list[float] = [0.0]
    word = 0.0
    for kind, value in cell.parts:
        if kind == "text":
            lines[-1] += _text_em(str(value))
            word = max([word] + [_text_em(piece) for piece in str(value).split()])
        elif kind == "math":
            tex = re.sub(r"\\[A-Za-z]+", "x", value.tex)  # type: ignore[union-attr]
            em = len(re.sub(r"[{}^_\s]", "", tex)) * 0.6
            lines[-1] += em
            word = max(word, em)
        elif kind == "table":
            em = sum(_estimate(c)[0] for c in max(value.rows, key=len, default=[])) + PAD_EM  # type: ignore[union-attr]
            lines[-1] += em
            word = max(word, em)
        elif kind == "break":
            lines.append(0.0)
        else:
            lines[-1] += len(str(value)) * CHAR_EM
    return max(lines), word


def _text_em(text: str) -> float:
    return sum(1.0 if unicodedata.east_asian_width(ch) in "WF" else CHAR_EM for ch in text)

