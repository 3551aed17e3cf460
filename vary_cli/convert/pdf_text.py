"""A PDF page's own text in reading order, from pdfium's text page.

The target of `vary data pdf` (data/pdf_pages.py) and the text of `vary convert --fallback text-layer`
(text_layer.py). Three modules, data flowing one way:

- pdf_words.py `page_chars`: glyphs as characters in the page's reading frame (size as drawn, the
  dominant direction, stamps dropped), word breaks from glyph gaps, accents merged into their letters.
- pdf_layout.py: same-baseline segments, a recursive XY cut into columns and strips, lines, paragraphs.
- here, `page_text`: paragraphs joined into text (blank line between), hyphenated line breaks joined
  where the joined word is the likelier one (pdf_words.join_hyphenated), ligatures (ﬁ ﬂ ...) spelled
  out, whitespace normalised. Running heads, footers and page numbers stay: they are in the image.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from .pdf_layout import leaf_lines, paragraphs, reading_order, segments
from .pdf_words import LINE_END_HYPHEN, Char, join_hyphenated, page_chars

__all__ = ["Char", "PageText", "join_lines", "page_chars", "page_text", "script_language"]

LIGATURES = {"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "st",
             "\ufb06": "st"}
DASHES = ("-", "\u2010", "\u2011", "\u2012", "\u2013")  # a line ending in one of these may go on in the next
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


@dataclass(frozen=True)
class PageText:
    """The text of a page and what was wrong with its characters."""

    text: str
    chars: int  # characters read (not counting spaces)
    broken: int  # glyphs without Unicode (pdfium's map error, U+FFFD, (cid:N))


def join_lines(texts: list[str], page_words: frozenset[str] = frozenset()) -> str:
    """A paragraph's lines as one line: hyphenated breaks joined where the joined word is the likelier
    (`join_hyphenated`, with the page's own words as evidence), a dash between digits closed up
    ("737–" + "9"), CJK lines joined without a space."""
    text = ""
    for line in texts:
        line = line.strip()
        if not line:
            continue
        if not text:
            text = line
        elif text.endswith((LINE_END_HYPHEN, "-", "\u00ad")) and len(text) > 1 and text[-2].isalpha() \
                and line[0].islower():
            head = text[:-1]
            if join_hyphenated(head.rsplit(None, 1)[-1], line.split(None, 1)[0], page_words):
                text = head + line  # "differ-" + "ent" -> "different"
            else:
                text = head + "-" + line  # "problem-" + "solving" -> "problem-solving"
        elif text.endswith(DASHES) and len(text) > 1 and text[-2].isdigit() and line[0].isdigit():
            text += line  # "737–" + "9" -> "737–9": a range or a number cut at its dash
        elif _is_cjk(text[-1]) and _is_cjk(line[0]):
            text += line
        else:
            text += " " + line
    return text.replace(LINE_END_HYPHEN, "-")


def page_text(chars: list[Char]) -> PageText:
    """The text of a page from its characters: reading order, paragraphs, cleaned."""
    lines = leaf_lines(reading_order(segments(chars)))
    grouped = [[line.text for line in para] for para in paragraphs(lines)]
    words = frozenset(w.lower() for para in grouped for line in para for w in re.findall(r"[\w-]+", line))
    paras = [_clean(join_lines(para, words)) for para in grouped]
    text = "\n\n".join(p for p in paras if p)
    broken = sum(c.broken for c in chars) + text.count("\ufffd") + len(re.findall(r"\(cid:\d+\)", text))
    return PageText(text, sum(1 for c in text if not c.isspace()), broken)


def _clean(text: str) -> str:
    for ligature, letters in LIGATURES.items():
        text = text.replace(ligature, letters)
    # Two single quotes drawn as a double quote (typesetters' ‘‘quoted’’): the reader sees “quoted”.
    text = text.replace("\u2018\u2018", "\u201c").replace("\u2019\u2019", "\u201d")
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
