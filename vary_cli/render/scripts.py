"""Which font sets each character of a LaTeX document under xelatex: scripts, their fonts, their direction.

The default font (Latin Modern) has Latin only: Cyrillic, Greek, Arabic, Hebrew, Devanagari and the
rest printed as empty boxes. `latex.py` cuts text into runs with `runs()` and switches to a font per
script (`\\varyfont<Script>`, the first installed of `Script.fonts`, chosen by the preamble from
`preamble()`); right-to-left runs are set between XeTeX's `\\beginR`/`\\endR`, so their words come
out in order. Other symbols (arrows, ∞, ✓...) go through `\\varychar`, which takes the first of
SYMBOL_FONTS that has the glyph when the current font has not (`\\iffontchar`). CJK is xeCJK's work.
`convert/fonts.py` uses `font_choices()` to tell, before anyone compiles, which characters no installed
font has.

The font names are Debian's: fonts-noto-core (Noto Serif, Noto Naskh Arabic, Noto Serif Hebrew, ...),
fonts-dejavu-core, fonts-noto-cjk; the fallbacks after the first are for systems without Noto.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Script:
    name: str  # a letter-only name: the font command is \varyfont<name>; fontspec's Script= when `otf`
    ranges: tuple[tuple[int, int], ...]
    fonts: tuple[str, ...]  # font families, most wanted first
    rtl: bool = False
    otf: bool = True  # fontspec knows the script by this name
    # Glyphs drawn out of logical order (Indic vowel signs before their consonant): without an ActualText
    # per word, text extraction reads "किठन" for "कठिन".
    reorders: bool = False


_SERIF = ("Noto Serif", "DejaVu Serif", "FreeSerif")


def _noto(name: str, *more: str) -> tuple[str, ...]:
    return (f"Noto Serif {name}", f"Noto Sans {name}") + more + ("FreeSerif",)


# fmt: off
SCRIPTS = (
    Script("Greek",      ((0x0370, 0x03FF), (0x1F00, 0x1FFF)), _SERIF),
    Script("Cyrillic",   ((0x0400, 0x052F), (0x1C80, 0x1C8F), (0x2DE0, 0x2DFF), (0xA640, 0xA69F)), _SERIF),
    Script("Armenian",   ((0x0530, 0x058F),), _noto("Armenian", "DejaVu Sans")),
    Script("Hebrew",     ((0x0590, 0x05FF), (0xFB1D, 0xFB4F)), _noto("Hebrew", "DejaVu Sans"), rtl=True),
    Script("Arabic",     ((0x0600, 0x06FF), (0x0750, 0x077F), (0x08A0, 0x08FF), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF)),
           ("Noto Naskh Arabic", "Noto Sans Arabic", "DejaVu Sans", "FreeSerif"), rtl=True),
    Script("Syriac",     ((0x0700, 0x074F),), ("Noto Sans Syriac",), rtl=True),
    Script("Thaana",     ((0x0780, 0x07BF),), ("Noto Sans Thaana",), rtl=True),
    Script("Devanagari", ((0x0900, 0x097F), (0xA8E0, 0xA8FF)), _noto("Devanagari"), reorders=True),
    Script("Bengali",    ((0x0980, 0x09FF),), _noto("Bengali"), reorders=True),
    Script("Gurmukhi",   ((0x0A00, 0x0A7F),), _noto("Gurmukhi"), reorders=True),
    Script("Gujarati",   ((0x0A80, 0x0AFF),), _noto("Gujarati"), reorders=True),
    Script("Oriya",      ((0x0B00, 0x0B7F),), ("Noto Sans Oriya", "FreeSerif"), reorders=True),
    Script("Tamil",      ((0x0B80, 0x0BFF),), _noto("Tamil"), reorders=True),
    Script("Telugu",     ((0x0C00, 0x0C7F),), _noto("Telugu"), reorders=True),
    Script("Kannada",    ((0x0C80, 0x0CFF),), _noto("Kannada"), reorders=True),
    Script("Malayalam",  ((0x0D00, 0x0D7F),), _noto("Malayalam"), reorders=True),
    Script("Sinhala",    ((0x0D80, 0x0DFF),), _noto("Sinhala"), reorders=True),
    Script("Thai",       ((0x0E00, 0x0E7F),), _noto("Thai", "Norasi", "Garuda")),
    Script("Lao",        ((0x0E80, 0x0EFF),), _noto("Lao")),
    Script("Tibetan",    ((0x0F00, 0x0FFF),), ("Noto Serif Tibetan", "FreeSerif")),
    Script("Myanmar",    ((0x1000, 0x109F),), _noto("Myanmar", "Padauk"), reorders=True),
    Script("Georgian",   ((0x10A0, 0x10FF), (0x2D00, 0x2D2F), (0x1C90, 0x1CBF)), _noto("Georgian", "DejaVu Sans")),
    Script("Ethiopic",   ((0x1200, 0x139F), (0x2D80, 0x2DDF)), _noto("Ethiopic")),
    Script("Khmer",      ((0x1780, 0x17FF), (0x19E0, 0x19FF)), _noto("Khmer"), reorders=True),
    Script("Mongolian",  ((0x1800, 0x18AF),), ("Noto Sans Mongolian",)),
    # Korean breaks lines at spaces, as Latin does, so Hangul is a script here and not xeCJK's.
    Script("Hangul",     ((0x1100, 0x11FF), (0x3130, 0x318F), (0xAC00, 0xD7AF)),
           ("Noto Serif CJK KR", "Noto Sans CJK KR", "Baekmuk Batang", "UnBatang")),
)
# fmt: on
# What xeCJK sets (in its own font): Han, kana, CJK punctuation and full-width forms.
CJK = re.compile("[\u2e80-\u312f\u3190-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0002fa1f]")
# xeCJK's own classes include Hangul; the preamble gives it back to the default class (see Hangul above).
HANGUL_CLASS = r'\xeCJKDeclareCharClass{Default}{"1100->"11FF,"3130->"318F,"AC00->"D7AF}'
CJK_FONT = "Noto Serif CJK SC"
MAIN_FONT = "Latin Modern Roman"  # fontspec's default
# Fonts tried, in order, for a character neither the current font nor a script font has.
SYMBOL_FONTS = ("DejaVu Sans", "Noto Sans Math", "Noto Sans Symbols", "Noto Sans Symbols2", "FreeSerif")
# What Latin Modern has (fc-query lmroman10-regular.otf): no \varychar test needed. Latin-1, Latin
# Extended-A, Vietnamese, combining accents (a \varychar between a letter and its accent would part
# them), common punctuation and the euro.
_LATIN = re.compile("[\u00a0-\u017f\u0300-\u036f\u1ea0-\u1ef9\u2010-\u2022\u2026\u2030\u2032\u2033\u2039"
                    "\u203a\u20ac]")
# Characters that take the direction of the text around them: spaces, digits, punctuation, joiners.
_NEUTRAL = re.compile(r"[\s\d\u200c\u200d\u00a0!-/:-@\[-`{-~\u060c\u061b\u061f\u066b\u066c\u06d4]")
_BY_CODE: dict[int, Script] = {}


def script_of(char: str) -> Script | None:
    """The script of a character from SCRIPTS, or None (Latin, CJK, symbols, punctuation)."""
    code = ord(char)
    if code < 0x370:
        return None
    if not _BY_CODE:
        for script in SCRIPTS:
            for low, high in script.ranges:
                for point in range(low, high + 1):
                    _BY_CODE[point] = script
    return _BY_CODE.get(code)


def runs(text: str) -> list[tuple[str, Script | None]]:
    """`text` cut into (piece, script) runs: a script's run takes in the spaces, digits and punctuation
    between its letters (so `مرحبا بالعالم 2024` is one right-to-left run), and a right-to-left run also
    the punctuation that ends the text (its full stop belongs on the left); other text has None."""
    out: list[tuple[str, Script | None]] = []
    i = 0
    while i < len(text):
        script = script_of(text[i])
        if script is None:
            j = i + 1
            while j < len(text) and script_of(text[j]) is None:
                j += 1
            out.append((text[i:j], None))
            i = j
            continue
        j = end = i + 1
        while j < len(text):
            other = script_of(text[j])
            if other is script:
                end = j + 1
            elif other is not None or not _NEUTRAL.match(text[j]):
                break
            j += 1
        if script.rtl and all(_NEUTRAL.match(ch) for ch in text[end:]):
            end = len(text)
        out.append((text[i:end], script))
        i = end
    return out


def needs_fallback(char: str) -> bool:
    """Whether a character outside every script may be missing from Latin Modern (then `\\varychar`)."""
    return ord(char) > 127 and script_of(char) is None and not CJK.match(char) and not _LATIN.match(char) \
        and not _NEUTRAL.match(char)


def font_choices(char: str) -> tuple[str, tuple[str, ...]]:
    """How a character will be set: ("first", fonts) where TeX takes the first installed of `fonts`
    (a script, CJK), or ("any", fonts) where it takes the first that has the glyph (`\\varychar`)."""
    script = script_of(char)
    if script is not None:
        return "first", script.fonts
    if CJK.match(char):
        return "first", (CJK_FONT,)
    return "any", (MAIN_FONT,) + (SYMBOL_FONTS if needs_fallback(char) else ())


def preamble(scripts: set[str], symbols: bool) -> list[str]:
    """Preamble lines (xelatex branch) that define \\varyfont<Script> for each used script, and \\varychar
    (with its fonts when `symbols`)."""
    lines = []
    for script in SCRIPTS:
        if script.name not in scripts:
            continue
        option = f"[Script={script.name}]" if script.otf else ""
        chain = f"\\let\\varyfont{script.name}\\relax"
        for family in reversed(script.fonts):
            define = f"\\newfontfamily\\varyfont{script.name}{{{family}}}{option}"
            chain = f"\\IfFontExistsTF{{{family}}}{{{define}}}{{{chain}}}"
        lines.append(chain)
    if any(script.reorders for script in SCRIPTS if script.name in scripts):
        lines.append(r"\IfFileExists{accsupp.sty}{\usepackage{accsupp}}{}")
    lines.append(r"\providecommand\BeginAccSupp[1]{}\providecommand\EndAccSupp[1]{}")
    if not symbols:
        return lines + [r"\providecommand\varychar[1]{#1}"]
    for k, family in enumerate(SYMBOL_FONTS):
        name = "\\varysymbols" + "abcdefgh"[k]
        lines.append(f"\\IfFontExistsTF{{{family}}}{{\\newfontfamily{name}{{{family}}}}}{{\\let{name}\\relax}}")
    # The current font when it has the glyph, else the first symbol font that has it.
    test = "#1"
    for k in reversed(range(len(SYMBOL_FONTS))):
        test = f"\\varysymbols{'abcdefgh'[k]}\\iffontchar\\font`#1 #1\\else {test}\\fi"
    lines.append(f"\\newcommand\\varychar[1]{{\\iffontchar\\font`#1 #1\\else{{{test}}}\\fi}}")
    return lines


def actual_text(word: str) -> str:
    """accsupp's ActualText argument for a word: its UTF-16 code units in hex."""
    return word.encode("utf-16-be").hex().upper()


def fallback_preamble(scripts: set[str]) -> list[str]:
    """The same commands for engines without fontspec (pdflatex): they do nothing."""
    return [f"\\let\\varyfont{name}\\relax" for name in sorted(scripts)] + [
        r"\providecommand\varychar[1]{#1}\providecommand\BeginAccSupp[1]{}\providecommand\EndAccSupp[1]{}"]
