"""A PDF page's glyphs as characters with word breaks, for the reading-order extractor (pdf_text.py).

pdfium gives every glyph with its Unicode, origin, loose box (advance width x ascent..descent), font
size and matrix. `page_chars` turns them into `Char`s in the page's own reading frame:

- **Size as drawn.** `FPDFText_GetFontSize` is the size before the text matrix scales it (1 pt read
  where 8.5 pt is drawn is common), so the size here is that times the matrix's vertical scale.
- **Dominant direction.** The page is read along the direction most of its glyphs run (a landscape
  table drawn rotated, a page skewed by a scanner-like transform); coordinates are rotated into that
  frame. Only glyphs rotated against it are dropped: arXiv's vertical side stamp, not the page.
- **Word breaks from gaps.** pdfium's own generated spaces are dropped; a space is put wherever the
  PDF draws one or the gap between two glyphs of a line is wider than `WORD_GAP` of the font size (what
  pdftotext does: many PDFs position words and draw no space at all).
- **Accents.** A spacing or combining accent drawn as its own glyph over a letter ("Min´a´c") is
  merged into the letter (NFC) when their boxes overlap.

`join_hyphenated` decides whether a line-end hyphen joins two parts of one word.
"""

from __future__ import annotations

import ctypes
import math
import re
import unicodedata
from functools import lru_cache
from typing import NamedTuple

LINE_END_HYPHEN = "\ufffe"  # pdfium's marker for a hyphen that ends a line (FPDFText_IsHyphen)
WORD_GAP = 0.13  # a gap wider than this many font sizes between two glyphs of a line is a word break
STAMP_ANGLE = 0.1  # radians: glyphs turned further than this from the page's direction are stamps
# Spacing accents as fonts draw them (TeX's \' \" \^ ...), each with its combining form.
ACCENTS = {"\u00b4": "\u0301", "`": "\u0300", "\u02c6": "\u0302", "^": "\u0302", "\u02dc": "\u0303", "~": "\u0303",
           "\u00a8": "\u0308", "\u00af": "\u0304", "\u02c9": "\u0304", "\u02d8": "\u0306", "\u02d9": "\u0307",
           "\u02da": "\u030a", "\u02dd": "\u030b", "\u02c7": "\u030c", "\u00b8": "\u0327", "\u02db": "\u0328"}
DOTLESS = {"\u0131": "i", "\u0237": "j"}  # TeX puts accents on dotless i and j


class Char(NamedTuple):
    """One character: `x0`..`x1` along its line, `baseline` and drawn font `size` in PDF points, in the
    page's reading frame (x grows along the text, y upward). A tuple: a dense page has 10,000 of them."""

    text: str
    x0: float
    x1: float
    baseline: float
    size: float
    broken: bool = False  # pdfium found no Unicode for the glyph


# A glyph as read: (code, angle, origin x, origin y, loose box left, right, bottom, top, size, broken),
# angle being the direction of its baseline in radians in [0, 2pi), all in page space; None is a space
# the PDF draws (a word break).
_Glyph = tuple


def page_chars(textpage) -> list[Char]:
    """The characters of a pypdfium2 `PdfTextPage` in reading frame, with word breaks and merged accents."""
    return with_word_breaks(merge_accents(_to_frame(_glyphs(textpage))))


def _glyphs(textpage) -> list[_Glyph | None]:
    """Every glyph of the page in stream order, with as few pdfium calls as the page allows (each costs
    microseconds, and a dense page has 10,000 glyphs)."""
    import pypdfium2.raw as pdfium_c

    handle = textpage.raw
    count = pdfium_c.FPDFText_CountChars(handle)
    codes = textpage.get_text_range(0, count) if count else ""
    if len(codes) != count:  # characters outside the BMP came as surrogate pairs: read them one by one
        codes = "".join(chr(pdfium_c.FPDFText_GetUnicode(handle, i) or 0xFFFD) for i in range(count))
    matrix, rect = pdfium_c.FS_MATRIX(), pdfium_c.FS_RECTF()
    x, y = ctypes.c_double(), ctypes.c_double()
    loose_box, origin, map_error = (pdfium_c.FPDFText_GetLooseCharBox, pdfium_c.FPDFText_GetCharOrigin,
                                    pdfium_c.FPDFText_HasUnicodeMapError)
    out: list[_Glyph | None] = []
    run_height, size, angle = None, 1.0, 0.0
    for index, char in enumerate(codes):
        code = ord(char)
        if code in (0x0D, 0x0A):  # pdfium's generated line ends: lines come from the geometry instead
            continue
        if code in (0x20, 0x09, 0xA0, 0x3000):
            if not pdfium_c.FPDFText_IsGenerated(handle, index):
                out.append(None)  # pdfium's own inferred spaces are dropped: gaps decide (with_word_breaks)
            continue
        loose_box(handle, index, rect)
        origin(handle, index, x, y)
        height = rect.top - rect.bottom
        if height != run_height:
            # A new font, size or direction: the loose box height (ascent - descent, as drawn) is the same
            # for every glyph of a run, so the matrix and size are read once a run.
            pdfium_c.FPDFText_GetMatrix(handle, index, matrix)
            size = pdfium_c.FPDFText_GetFontSize(handle, index) * (math.hypot(matrix.c, matrix.d) or 1.0)
            size = size or abs(height) or 1.0
            angle = math.atan2(matrix.b, matrix.a) % (2 * math.pi)
            run_height = height
        broken = code == 0xFFFD or map_error(handle, index) == 1
        out.append((code, angle, x.value, y.value, rect.left, rect.right, rect.bottom, rect.top, size, broken))
    return out


def dominant_angle(angles: list[float]) -> float:
    """The direction most glyphs run in: the mode of their angles (0.02 rad bins), refined by a mean."""
    if not angles:
        return 0.0
    bins: dict[int, int] = {}
    for angle in angles:
        key = round(angle / 0.02)
        bins[key] = bins.get(key, 0) + 1
    if len(bins) == 1 and 0 in bins:
        return 0.0
    steps = round(2 * math.pi / 0.02)
    folded: dict[int, int] = {}
    for key, n in bins.items():
        folded[key % steps] = folded.get(key % steps, 0) + n
    mode = max(folded, key=folded.get) * 0.02
    near = [_turn(a - mode) for a in angles if abs(_turn(a - mode)) < 0.03]
    return mode + sum(near) / len(near)


def _turn(angle: float) -> float:
    """An angle difference in (-pi, pi]."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


def _to_frame(glyphs: list[_Glyph | None]) -> list[Char | None]:
    """Glyphs as `Char`s in the frame of the page's dominant direction; glyphs turned against it dropped."""
    theta = dominant_angle([g[1] for g in glyphs if g is not None])
    cos, sin = math.cos(theta), math.sin(theta)
    upright = theta == 0.0
    out: list[Char | None] = []
    for glyph in glyphs:
        if glyph is None:
            out.append(None)
            continue
        code, angle, ox, oy, left, right, bottom, top, size, broken = glyph
        if angle != theta and abs(_turn(angle - theta)) > STAMP_ANGLE:
            continue  # a stamp or a vertical label: not read as part of the page
        if code in (0x02, 0xFFFE):
            text = LINE_END_HYPHEN  # join_lines removes it when the word goes on in the next line
        else:
            text = chr(code) if 0 < code < 0x110000 else "\ufffd"
        if upright and angle == 0.0:
            out.append(Char(text, left, max(right, left), oy, size, broken))
            continue
        u = ox * cos + oy * sin
        out.append(Char(text, u, u + _advance(right - left, top - bottom, theta), oy * cos - ox * sin, size, broken))
    return out


def _advance(width: float, height: float, theta: float) -> float:
    """A glyph's advance along the text, from its loose box: the bounding box of the turned advance x
    height rectangle (width W = w|cos| + h|sin|, height H = w|sin| + h|cos|), solved for w."""
    cos, sin = abs(math.cos(theta)), abs(math.sin(theta))
    if sin < 1e-3:
        return max(width, 0.0)
    if cos < 1e-3:
        return max(height, 0.0)
    det = cos * cos - sin * sin
    if abs(det) < 0.3:  # near 45 degrees the system is ill-conditioned: take the smaller side
        return max(min(width, height), 0.0)
    return max((width * cos - height * sin) / det, 0.0)


def with_word_breaks(chars: list[Char | None]) -> list[Char]:
    """The characters with a space Char at each drawn space (None) and each gap wider than a word gap.

    Where every letter nearby overlaps its neighbour (some fonts' loose boxes are a quarter of an em too
    wide, in italics most), a gap is measured from that usual overlap instead of from zero."""
    glyphs = [c for c in chars if c is not None]
    missing = -math.inf
    gaps = [missing, missing]
    for prev, char in zip(glyphs, glyphs[1:]):
        same_line = abs(char.baseline - prev.baseline) < 0.5 * (char.size if char.size > prev.size else prev.size)
        gaps.append(char.x0 - prev.x1 if same_line else missing)
    gaps += [missing, missing]
    out: list[Char] = []
    pending = False  # a drawn space since the last glyph
    position = 0  # gaps[position] is the gap before the current glyph (gaps has two pads at each end)
    last_text = " "
    for char in chars:
        if char is None:
            pending = True
            continue
        position += 1
        if last_text != " ":
            gap = gaps[position]
            if not pending and gap != missing:
                size = char.size if char.size > out[-1].size else out[-1].size
                if gap > (WORD_GAP - 0.3) * size:
                    usual = max(gaps[position - 2], gaps[position - 1], gaps[position + 1], gaps[position + 2])
                    usual = max(usual, -0.3 * size) if usual < 0 and usual != missing else 0.0
                    pending = gap - usual > WORD_GAP * size
            if pending:
                last = out[-1]
                out.append(Char(" ", last.x1, last.x1, last.baseline, last.size))
        out.append(char)
        last_text = char.text
        pending = False
    return out


def merge_accents(chars: list[Char | None]) -> list[Char | None]:
    """Accent glyphs drawn over a letter merged into it: "´" over "a" becomes "á". TeX draws the accent
    just before its letter, but some PDFs draw a word's accents after the word, so the letter is looked
    for in the next glyph and among the last line's worth."""
    texts = "".join(c.text for c in chars if c is not None)
    if not any(c in ACCENTS or unicodedata.combining(c) for c in set(texts)):
        return chars  # most pages: nothing to merge
    out: list[Char | None] = []
    index = 0
    while index < len(chars):
        char = chars[index]
        mark = None if char is None else ACCENTS.get(char.text) or (
            char.text if unicodedata.combining(char.text[:1] or " ") else None)
        if mark is not None:
            nxt = chars[index + 1] if index + 1 < len(chars) else None
            if nxt is not None and _over(char, nxt):
                out.append(_accented(nxt, mark))
                index += 2
                continue
            back = next((i for i in range(len(out) - 1, max(len(out) - 80, -1), -1)
                         if out[i] is not None and _over(char, out[i])), None)
            if back is not None:
                out[back] = _accented(out[back], mark)
                index += 1
                continue
        out.append(char)
        index += 1
    return out


def _over(accent: Char, letter: Char) -> bool:
    """The accent's box overlaps the letter's by at least half the narrower of the two."""
    if not letter.text.isalpha() or abs(accent.baseline - letter.baseline) > 1.2 * letter.size:
        return False
    overlap = min(accent.x1, letter.x1) - max(accent.x0, letter.x0)
    return overlap >= 0.5 * max(min(accent.x1 - accent.x0, letter.x1 - letter.x0), 1e-6)


def _accented(letter: Char, mark: str) -> Char:
    base = DOTLESS.get(letter.text, letter.text)
    return letter._replace(text=unicodedata.normalize("NFC", base + mark))


# -- hyphenation ------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _frequencies():
    """English word frequencies (pyspellchecker's list, from OpenSubtitles counts), loaded once."""
    from spellchecker import SpellChecker

    return SpellChecker(language="en", distance=1).word_frequency


def _frequency(word: str) -> int:
    return _frequencies()[word.lower()] if word else 0


def join_hyphenated(left: str, right: str, page_words: frozenset[str] = frozenset()) -> bool:
    """Whether "left-" at a line end and "right" on the next line are one word ("differ-"+"ent") rather
    than a hyphenated compound ("problem-"+"solving").

    The rule: the page itself decides first (the joined word, or the hyphenated one, written elsewhere on
    it); otherwise the join wins when either part is not an English word (a syllable break: "differ" +
    "ent", "arti" + "cles"), or when the joined word is at least 1% as frequent as the rarer part (a
    compound is rarer than its parts; "problemsolving" is no word at all).
    """
    left_word = re.sub(r"^.*[^\w]", "", left)
    right_word = re.sub(r"[^\w].*$", "", right)
    if not left_word or not right_word:
        return True
    joined, hyphenated = (left_word + right_word).lower(), f"{left_word}-{right_word}".lower()
    if joined in page_words:
        return True
    if hyphenated in page_words:
        return False
    left_f, right_f = _frequency(left_word), _frequency(right_word)
    if left_f == 0 or right_f == 0:
        return True
    return _frequency(joined) >= 0.01 * min(left_f, right_f)
