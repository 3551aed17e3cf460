"""Reading order of a page's characters: lines, an XY cut into columns and strips, paragraphs.

Used by pdf_text.py on the characters of pdf_words.py, in named steps:

1. `segments`: runs of characters on one baseline, cut where the stream jumps back or across a gap
   wider than a font size (the gutter between two columns drawn row by row).
2. `reading_order`: a recursive XY cut. A region with a vertical gutter (an x range no segment
   covers) is cut into columns, left to right. Otherwise it is cut into horizontal strips at the
   y gaps between lines, and consecutive strips whose union still has a gutter are regrouped first,
   so a full-width title stays above the two columns under it instead of splitting them into rows.
3. `leaf_lines` and `paragraphs`: each leaf's lines top to bottom, grouped into paragraphs where the
   spacing grows, the font size changes or a line is indented after a finished sentence.

Pure functions on `Char` lists, so the layout rules are tested without PDFs.
"""

from __future__ import annotations

import bisect
import statistics
from dataclasses import dataclass, field
from functools import cached_property

from .pdf_words import Char

SENTENCE_END = tuple(".!?:;。！？：；")


@dataclass
class Segment:
    """Characters on one baseline with no wide gap between them (its measures are computed once, after
    `segments` has finished building it)."""

    chars: list[Char] = field(default_factory=list)

    @cached_property
    def x0(self) -> float:
        return min(c.x0 for c in self.chars)

    @cached_property
    def x1(self) -> float:
        return max(c.x1 for c in self.chars)

    @cached_property
    def baseline(self) -> float:
        return statistics.median(c.baseline for c in self.chars)

    @cached_property
    def size(self) -> float:
        return statistics.median(c.size for c in self.chars if c.text != " ") if self.text.strip() else 1.0

    @cached_property
    def core(self) -> tuple[float, float]:
        # The band from just under the baseline to the x-height: lines with normal leading never overlap
        # in it, while super- and subscripts overlap their own line.
        return self.baseline - 0.1 * self.size, self.baseline + 0.6 * self.size

    @cached_property
    def text(self) -> str:
        return "".join(c.text for c in self.chars)


@dataclass(frozen=True)
class Line:
    """A line of text as read, with its geometry for paragraph breaks."""

    text: str
    x0: float
    x1: float
    baseline: float
    size: float


def segments(chars: list[Char]) -> list[Segment]:
    """Cut the character stream into same-baseline runs without gaps wider than a font size."""
    out: list[Segment] = []
    current = Segment()
    last: Char | None = None  # the last non-space character of the current segment
    for char in chars:
        if char.text == " " or not char.text.strip():
            if current.chars:
                current.chars.append(char)
            continue
        if last is not None:
            size = max(last.size, char.size)
            new_line = abs(char.baseline - last.baseline) > 0.6 * size
            jumped = char.x0 < last.x1 - 0.5 * size or char.x0 - last.x1 > 1.2 * size
            if new_line or jumped:
                out.append(current)
                current = Segment()
        current.chars.append(char)
        last = char
    if current.chars:
        out.append(current)
    for segment in out:  # spaces at the ends carry nothing
        while segment.chars and segment.chars[-1].text == " ":
            segment.chars.pop()
    return [s for s in out if s.chars]


def reading_order(segs: list[Segment]) -> list[list[Segment]]:
    """The XY-cut leaves in reading order, each a list of segments (`leaf_lines` orders inside a leaf)."""
    if not segs:
        return []
    # A column gutter: 0.7 font sizes, as pdftotext's minColSpacing (dense pages keep ~1 size between columns).
    gutter = 0.7 * statistics.median(s.size for s in segs)
    leaves: list[list[Segment]] = []
    _cut(segs, gutter, leaves)
    return leaves


def _cut(segs: list[Segment], gutter: float, leaves: list[list[Segment]]) -> None:
    columns = _columns(segs, gutter)
    if len(columns) > 1:
        rows = _grid_rows(segs, gutter)
        if len(rows) > 1:
            for row in rows:
                _cut(row, gutter, leaves)
            return
        for block, is_table in _table_blocks(columns):
            if is_table:
                leaves.append(block)  # read row by row: a name, its party, its votes
            else:
                _cut(block, gutter, leaves)
        return
    strips = _strips(segs)
    if len(strips) == 1:
        leaves.append(strips[0])
        return
    # Consecutive strips that keep a common gutter are one multi-column block: two columns whose lines
    # sit row by row, under a title that spans them. A strip that crosses the gutter (a centred line, a
    # title) starts a new block; one that stays on one side of it (a column's short last line) joins.
    groups: list[list[Segment]] = [strips[0]]
    gaps = _gaps(strips[0], gutter)
    for strip in strips[1:]:
        own = _gaps(strip, gutter)
        if gaps and own:  # both have gutters: they must share one (a heading's gap and the lines under it)
            kept = [(max(a, c), min(b, d)) for a, b in gaps for c, d in own if min(b, d) - max(a, c) >= gutter]
        elif gaps:
            kept = _narrow(gaps, strip, gutter)
        else:
            kept = _narrow(own, groups[-1], gutter) if own else []
        if kept:
            groups[-1] = groups[-1] + strip
            gaps = kept
        else:
            groups.append(strip)
            gaps = own
    if len(groups) == 1:  # every strip shares a gutter, yet the whole has none: cannot happen, but stop
        leaves.append(segs)
        return
    for group in groups:
        _cut(group, gutter, leaves)


def _table_blocks(columns: list[list[Segment]]) -> list[tuple[list[Segment], bool]]:
    """The columns, each narrow one whose lines sit on the lines of the column to its left (a table's
    value column: a party, a count) merged into that column as one table block."""
    blocks: list[tuple[list[Segment], bool]] = [(columns[0], False)]
    for column in columns[1:]:
        left = blocks[-1][0]
        size = statistics.median(s.size for s in column)
        narrow = max(s.x1 - s.x0 for s in column) <= 8 * size
        baselines = sorted(s.baseline for s in left)
        on_rows = sum(_near(baselines, s.baseline, 0.3 * s.size) for s in column)
        if narrow and len(column) >= 3 and on_rows >= 0.7 * len(column):
            blocks[-1] = (left + column, True)
        else:
            blocks.append((column, False))
    return blocks


def _near(ordered: list[float], value: float, tolerance: float) -> bool:
    index = bisect.bisect_left(ordered, value - tolerance)
    return index < len(ordered) and ordered[index] <= value + tolerance


def _gaps(segs: list[Segment], gutter: float) -> list[tuple[float, float]]:
    """The gutters of a region: the free x ranges between its columns."""
    columns = _columns(segs, gutter)
    return [(max(s.x1 for s in left), min(s.x0 for s in right)) for left, right in zip(columns, columns[1:])]


def _narrow(gaps: list[tuple[float, float]], segs: list[Segment], gutter: float) -> list[tuple[float, float]]:
    """The gaps that `segs` leave open (each narrowed by the segments beside it, still `gutter` wide)."""
    kept = []
    for low, high in gaps:
        middle = (low + high) / 2
        for seg in segs:
            if seg.x0 < middle < seg.x1:
                break  # crosses it
            if seg.x1 <= middle:
                low = max(low, seg.x1)
            else:
                high = min(high, seg.x0)
        else:
            if high - low >= gutter:
                kept.append((low, high))
    return kept


def _grid_rows(segs: list[Segment], gutter: float) -> list[list[Segment]]:
    """A region with columns cut into rows instead, where a wide empty band (over 2.5 font sizes: more
    than a paragraph break) crosses every column and each row has columns of its own: a grid of boxes,
    read row by row (1 2 / 3 4), not a page of columns whose paragraphs happen to line up."""
    strips = _strips(segs)
    if len(strips) == 1:
        return [segs]
    band = 2.5 * statistics.median(s.size for s in segs)
    rows: list[list[Segment]] = [strips[0]]
    for above, strip in zip(strips, strips[1:]):
        if min(s.core[0] for s in above) - max(s.core[1] for s in strip) >= band:
            rows.append(list(strip))
        else:
            rows[-1] = rows[-1] + strip
    if len(rows) > 1 and all(len(_columns(row, gutter)) > 1 for row in rows):
        return rows
    return [segs]


def _columns(segs: list[Segment], gutter: float) -> list[list[Segment]]:
    """The segments split at every x range at least `gutter` wide that none of them covers."""
    spans = sorted((s.x0, s.x1, i) for i, s in enumerate(segs))
    columns: list[list[Segment]] = [[]]
    reach = spans[0][1]
    for x0, x1, index in spans:
        if x0 - reach >= gutter and columns[-1]:
            columns.append([])
        columns[-1].append(segs[index])
        reach = max(reach, x1)
    return columns


def _strips(segs: list[Segment]) -> list[list[Segment]]:
    """The segments split, top to bottom, wherever no segment's core spans a y position."""
    ordered = sorted(segs, key=lambda s: -s.core[1])
    strips: list[list[Segment]] = [[ordered[0]]]
    floor = ordered[0].core[0]
    for seg in ordered[1:]:
        low, high = seg.core
        if high < floor:
            strips.append([])
        strips[-1].append(seg)
        floor = min(floor, low)
    return strips


def leaf_lines(leaves: list[list[Segment]]) -> list[Line]:
    """Each leaf's segments as lines: clustered by baseline, top to bottom, segments left to right."""
    lines: list[Line] = []
    for leaf in leaves:
        rows: list[list[Segment]] = []
        for seg in sorted(leaf, key=lambda s: -s.baseline):
            if rows and abs(rows[-1][0].baseline - seg.baseline) <= 0.5 * max(seg.size, rows[-1][0].size):
                rows[-1].append(seg)
            else:
                rows.append([seg])
        for row in rows:
            row.sort(key=lambda s: s.x0)
            text = row[0].text
            for before, after in zip(row, row[1:]):
                gap = after.x0 - before.x1
                text += (" " if gap > 0.15 * after.size else "") + after.text
            lines.append(Line(text, row[0].x0, max(s.x1 for s in row), row[0].baseline,
                              statistics.median(s.size for s in row)))
    return lines


def paragraphs(lines: list[Line]) -> list[list[Line]]:
    """Lines grouped into paragraphs by spacing, font size, indentation and column breaks."""
    if not lines:
        return []
    # The body's line pitch: the lower quartile of the drops between consecutive lines of one size (not
    # the median: on a short page the paragraph gaps can be half of all drops).
    pitches = sorted(a.baseline - b.baseline for a, b in zip(lines, lines[1:])
                     if abs(a.size - b.size) <= 0.5 and 0 < a.baseline - b.baseline < 3 * a.size)
    pitch = pitches[len(pitches) // 4] if pitches else 1.2 * statistics.median(line.size for line in lines)
    out = [[lines[0]]]
    for prev, line in zip(lines, lines[1:]):
        size = max(prev.size, line.size)
        drop = prev.baseline - line.baseline
        if drop <= 0:  # back up the page: the next column. A sentence running on continues the paragraph.
            new = prev.text.rstrip().endswith(SENTENCE_END) or abs(prev.size - line.size) > 0.5
        else:
            # An indented line after a finished sentence starts a paragraph; without the sentence end
            # it is more likely a centred title's second line.
            indented = line.x0 - prev.x0 > 1.0 * size and prev.text.rstrip().endswith(SENTENCE_END)
            new = drop > 1.4 * max(pitch, 1.0 * size) or abs(prev.size - line.size) > 0.5 or indented
        if new:
            out.append([line])
        else:
            out[-1].append(line)
    return out
