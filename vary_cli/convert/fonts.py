"""Characters of a `--format tex` output that no installed font has: said in the run summary, not left silent.

`vary convert` writes a .tex; xelatex, run later, would print an empty box for a character none of its
fonts has, with only a "Missing character" line in its log. `stream._assemble` calls
`missing_glyphs_by_page` on the pages it renders as tex, and the CLI names the pages. Which font sets a
character is render/scripts.py's choice (the preamble's); whether that font has it is fontconfig's
answer (`fc-match`, which xelatex itself asks). Without fontconfig nothing is reported.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import unicodedata
from typing import Sequence

from ..render.mathpix import clean_text
from ..render.results import PageResult
from ..render.scripts import font_choices


def missing_glyphs_by_page(results: Sequence[PageResult], fmt: str) -> dict[int, str]:
    """For a tex output: page number -> the characters of that page no font xelatex would use has here."""
    if fmt != "tex" or shutil.which("fc-match") is None:
        return {}
    report = {}
    for result in results:
        if result.finish_reason != "error":
            missing = missing_glyphs(result.text)
            if missing:
                report[result.page or 1] = missing
    return report


def missing_glyphs(text: str) -> str:
    """The distinct characters of `text` (in order of appearance) that no font xelatex would pick for them
    has on this machine; "" when fontconfig is not installed."""
    if shutil.which("fc-match") is None:
        return ""
    missing = []
    for char in dict.fromkeys(clean_text(text)):
        if ord(char) < 128 or char.isspace() or unicodedata.category(char) == "Cf":  # Cf: joiners, marks
            continue
        how, families = font_choices(char)
        installed = [family for family in families if _charset(family) is not None]
        if how == "first":
            installed = installed[:1]  # the preamble takes the first installed font, whatever it has
        if not any(_covers(_charset(family), ord(char)) for family in installed):
            missing.append(char)
    return "".join(missing)


@functools.lru_cache(maxsize=None)
def _charset(family: str) -> tuple[tuple[int, int], ...] | None:
    """The code point ranges of a font family's regular face, or None when it is not installed."""
    try:
        found = subprocess.run(["fc-match", "-f", "%{family}\n%{charset}", f"{family}:style=Regular"],
                               capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    names, _, charset = found.partition("\n")
    if family.lower() not in (name.strip().lower() for name in names.split(",")):
        return None  # fontconfig offers a substitute; the preamble's \IfFontExistsTF would not
    ranges = []
    for part in charset.split():
        low, _, high = part.partition("-")
        ranges.append((int(low, 16), int(high or low, 16)))
    return tuple(ranges)


def _covers(ranges: tuple[tuple[int, int], ...] | None, code: int) -> bool:
    return bool(ranges) and any(low <= code <= high for low, high in ranges)
