"""A PDF page's own text in reading order, from pdfium's text page.

The target of `vary data pdf` (data/pdf_pages.py) and the text of `vary convert --fallback text-layer`
(text_layer.py).

pdfium gives every character with its origin (baseline), font size and the spaces and line ends it
infers. From those this module builds, in named steps:

1. `page_chars`: the characters, without rotated ones (arXiv's vertical side stamp is not in the
   page as read) and pdfium's generated line ends; its end-of-line hyphen marker (U+FFFE) kept as "-".
2. `segments`: runs of characters on one baseline, cut where the stream jumps back or across a gap
   wider than a font size (the gutter between two columns drawn row by row).
3. `reading_order`: a recursive XY cut. A region with a vertical gutter (an x range no segment
   covers) is cut into columns, left to right. Otherwise it is cut into horizontal strips at the
   y gaps between lines, and consecutive strips whose union still has a gutter are regrouped first,
   so a full-width title stays above the two columns under it instead of splitting them into rows.
4. `page_text`: lines joined into paragraphs (blank line between), a paragraph ending where the
   spacing grows, the font size changes or a line is indented; hyphenated line breaks joined,
   ligatures (ﬁ ﬂ ...) spelled out, whitespace normalised.

Pure functions on `Char` lists apart from `page_chars`, so the layout rules are tested without PDFs.
"""

from __future__ import annotations

import ctypes
import math
import re
import statistics
import unicodedata
from dataclasses import dataclass, field
from functools import cached_property

LIGATURES = {"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "st",
             "\ufb06": "st"}
LINE_END_HYPHEN = "\ufffe"  # pdfium's marker for a hyphen that ends a line (FPDFText_IsHyphen)
SENTENCE_END = tuple(".!?:;。！？：；")
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


@dataclass(frozen=True)
class Char:
    """One character: `x0`..`x1` horizontally, `baseline` and font `size` in PDF points (y grows upward)."""

    text: str
    x0: float
    x1: float
    baseline: float
    size: float
    broken: bool = False  # pdfium found no Unicode for the glyph


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


@dataclass(frozen=True)
class PageText:
    """The text of a page and what was wrong with its characters."""

    text: str
    chars: int  # characters read (not counting spaces)
    broken: int  # glyphs without Unicode (pdfium's map error, U+FFFD, (cid:N))


def page_chars(textpage) -> list[Char]:
    """The characters of a pypdfium2 `PdfTextPage`, upright ones only, pdfium's line ends dropped."""
    import pypdfium2.raw as pdfium_c

    handle = textpage.raw
    count = pdfium_c.FPDFText_CountChars(handle)
    left, right, bottom, top = (ctypes.c_double() for _ in range(4))
    x, y = ctypes.c_double(), ctypes.c_double()
    chars: list[Char] = []
    for index in range(count):
        code = pdfium_c.FPDFText_GetUnicode(handle, index)
        if code in (0x0D, 0x0A):  # pdfium's generated line ends: lines come from the geometry instead
            continue
        if code in (0x20, 0x09, 0xA0):
            # A space, drawn or inferred by pdfium from a gap: only its place in the stream matters, so it
            # sits where the previous character ends (and costs no more pdfium calls, on ~15% of a page).
            if chars:
                chars.append(Char(" ", chars[-1].x1, chars[-1].x1, chars[-1].baseline, chars[-1].size))
            continue
        angle = pdfium_c.FPDFText_GetCharAngle(handle, index)
        if angle > 0.05 and abs(angle - 2 * math.pi) > 0.05:
            continue  # rotated text (margins' vertical stamps); not read as part of the page
        pdfium_c.FPDFText_GetCharBox(handle, index, left, right, bottom, top)
        pdfium_c.FPDFText_GetCharOrigin(handle, index, x, y)
        size = pdfium_c.FPDFText_GetFontSize(handle, index) or (top.value - bottom.value) or 1.0
        broken = pdfium_c.FPDFText_HasUnicodeMapError(handle, index) == 1 or code == 0xFFFD
        if code in (0x02, 0xFFFE):
            text = LINE_END_HYPHEN  # join_lines removes it when the word goes on in the next line
        else:
            text = chr(code) if 0 < code < 0x110000 else "\ufffd"
        x0 = min(left.value, x.value)
        chars.append(Char(text, x0, max(right.value, x0), y.value, size, broken))
    return chars


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
    gutter = 1.0 * statistics.median(s.size for s in segs)
    leaves: list[list[Segment]] = []
    _cut(segs, gutter, leaves)
    return leaves


def _cut(segs: list[Segment], gutter: float, leaves: list[list[Segment]]) -> None:
    columns = _columns(segs, gutter)
    if len(columns) > 1:
        for column in columns:
            _cut(column, gutter, leaves)
        return
    strips = _strips(segs)
    if len(strips) == 1:
        leaves.append(strips[0])
        return
    groups: list[list[Segment]] = [strips[0]]
    for strip in strips[1:]:
        if len(_columns(groups[-1] + strip, gutter)) > 1:
            groups[-1] = groups[-1] + strip
        else:
            groups.append(strip)
    if len(groups) == 1:  # every strip shares a gutter, yet the whole has none: cannot happen, but stop
        leaves.append(segs)
        return
    for group in groups:
        _cut(group, gutter, leaves)


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
            new = _clean(prev.text).rstrip().endswith(SENTENCE_END) or abs(prev.size - line.size) > 0.5
        else:
            # An indented line after a finished sentence starts a paragraph; without the sentence end
            # it is more likely a centred title's second line.
            indented = line.x0 - prev.x0 > 1.0 * size and _clean(prev.text).endswith(SENTENCE_END)
            new = drop > 1.4 * max(pitch, 1.0 * size) or abs(prev.size - line.size) > 0.5 or indented
        if new:
            out.append([line])
        else:
            out[-1].append(line)
    return out


def join_lines(texts: list[str]) -> str:
    """A paragraph's lines as one line: hyphenated breaks joined, CJK lines joined without a space."""
    text = ""
    for line in texts:
        line = line.strip()
        if not line:
            continue
        if not text:
            text = line
        elif text.endswith((LINE_END_HYPHEN, "-", "\u00ad")) and len(text) > 1 and text[-2].isalpha() \
                and line[0].islower():
            text = text[:-1] + line  # "epsi-" + "lon" -> "epsilon"
        elif _is_cjk(text[-1]) and _is_cjk(line[0]):
            text += line
        else:
            text += " " + line
    return text.replace(LINE_END_HYPHEN, "-")


def page_text(chars: list[Char]) -> PageText:
    """The text of a page from its characters: reading order, paragraphs, cleaned."""
    lines = leaf_lines(reading_order(segments(chars)))
    paras = [_clean(join_lines([line.text for line in para])) for para in paragraphs(lines)]
    text = "\n\n".join(p for p in paras if p)
    broken = sum(c.broken for c in chars) + text.count("\ufffd") + len(re.findall(r"\(cid:\d+\)", text))
    return PageText(text, sum(1 for c in text if not c.isspace()), broken)


def _clean(text: str) -> str:
    for ligature, letters in LIGATURES.items():
        text = text.replace(ligature, letters)
    text = text.translate(_ZERO_WIDTH)
    text = "".join(" " if unicodedata.category(c) in ("Zs", "Cc") and c != LINE_END_HYPHEN else c for c in text)
    return re.sub(r" {2,}", " ", text).strip()


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x3000 <= code <= 0x303F
            or 0xFF00 <= code <= 0xFFEF or 0xF900 <= code <= 0xFAFF)


def script_language(text: str) -> str:
    """"zh" when at least 30% of the letters are CJK, "en" when most are Latin, else "other"."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return "other"
    cjk = sum(_is_cjk(c) for c in letters)
    if cjk >= 0.3 * len(letters):
        return "zh"
    latin = sum(c.isascii() or unicodedata.name(c, "").startswith("LATIN") for c in letters)
    return "en" if latin >= 0.7 * len(letters) else "other"
