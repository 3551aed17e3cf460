"""LaTeX text-mode commands in the model's text, turned into Markdown or plain Unicode text.

Vary (like Mathpix, nougat and GOT) writes LaTeX structure in its Markdown: `\\title{}`, `\\section*{}`,
`\\textbf{}`, `\\footnote{}`, `\\begin{center}`, `\\label{}`, `\\ref{}`, `\\'{e}`. None of it may reach a
reader as source. `mathpix.repair_page` walks the page and uses this module:

- `COMMANDS` says what a command with an argument becomes: a heading, an emphasis, a footnote, a link,
  its argument's text (`\\mbox`, `\\underline`, an unknown `\\foo{x}` -> `x`), a reference shown as its
  key (`\\ref{sec:2}` -> `[sec:2]`, `\\cite{a,b}` -> `[a, b]`, as pandoc writes them without a
  bibliography) or nothing (`\\label`, `\\vspace`);
- `markdown_text` turns the rest of a text run into Markdown: lists (itemize, enumerate, description),
  environments that only place text (center, figure, minipage...) dropped, theorem-like ones as a bold
  name, `\\\\` as a hard line break, and every other command through `unicode_text`;
- `unicode_text`: text accents (`\\'{e}`, `\\v c`) and symbol commands (`\\S`, `\\ldots`, `\\ss`) as
  Unicode, `~` and spacing commands as spaces, and any command left over dropped, so that no command
  name is printed. `tables.plain_text` uses it for table cells.
"""

from __future__ import annotations

import re
import unicodedata

from .texcommands import REFERENCES

# What a command with a braced argument becomes: ("heading", level), ("style", mark), ("footnote",),
# ("keep",) its argument, ("drop",) nothing, ("ref", "[]" or "()"), ("url",), ("href",).
HEADINGS = {"part": 1, "chapter": 1, "title": 1, "section": 2, "subsection": 3, "subsubsection": 4, "paragraph": 5,
            "subparagraph": 6}
COMMANDS: dict[str, tuple] = {
    **{name: ("heading", level) for name, level in HEADINGS.items()},
    "textbf": ("style", "**"), "textit": ("style", "*"), "emph": ("style", "*"), "textsl": ("style", "*"),
    "footnote": ("footnote",), "thanks": ("footnote",), "footnotetext": ("footnote",),
    "url": ("url",), "href": ("href",),
    **{name: ("ref", brackets) for name, brackets in REFERENCES.items()},
    **{name: ("drop",) for name in (
        "label vspace hspace includegraphics bibliographystyle bibliography pagestyle thispagestyle setlength "
        "setcounter addtocounter newcommand renewcommand usepackage documentclass input include color "
        "definecolor").split()},
    "author": ("block",), "date": ("block",), "affil": ("block",), "address": ("block",), "caption": ("block",),
}
# Environments that only place their content; their markers are dropped (a paragraph break stays).
PLACING = set("center flushleft flushright figure figure* table table* minipage quote quotation verse "
              "small footnotesize large Large document multicols wrapfigure adjustbox landscape".split())
THEOREMS = set("theorem lemma corollary proposition definition remark example proof claim conjecture "
               "assumption note observation".split())
# Symbol commands in text, and what they print.
SYMBOLS = {
    "ldots": "…", "dots": "…", "textellipsis": "…", "textendash": "–", "textemdash": "—", "S": "§", "P": "¶",
    "textsection": "§", "dag": "†", "ddag": "‡", "textdagger": "†", "copyright": "©", "textcopyright": "©",
    "textregistered": "®", "texttrademark": "™", "pounds": "£", "textsterling": "£", "euro": "€",
    "texteuro": "€", "textdegree": "°", "LaTeX": "LaTeX", "TeX": "TeX", "ss": "ß", "ae": "æ", "AE": "Æ",
    "oe": "œ", "OE": "Œ", "o": "ø", "O": "Ø", "aa": "å", "AA": "Å", "l": "ł", "L": "Ł", "i": "ı", "j": "ȷ",
    "textbackslash": "\\", "textasciitilde": "~", "textasciicircum": "^", "textbar": "|", "textless": "<",
    "textgreater": ">", "textbullet": "•", "textperiodcentered": "·", "checkmark": "✓", "textmu": "µ",
    "textperthousand": "‰", "textquotedblleft": "“", "textquotedblright": "”", "textquoteleft": "‘",
    "textquoteright": "’", "guillemotleft": "«", "guillemotright": "»", "textpm": "±", "texttimes": "×",
    "quad": " ", "qquad": " ", "enspace": " ", "thinspace": " ",
    "par": "\n\n", "noindent": "", "indent": "", "centering": "", "raggedright": "", "raggedleft": "",
    "maketitle": "", "tableofcontents": "", "newpage": "\n\n", "clearpage": "\n\n", "pagebreak": "\n\n",
    "smallskip": "\n\n", "medskip": "\n\n", "bigskip": "\n\n", "vfill": "", "hfill": " ", "item": "",
}
# Text accents: the command and the combining mark it puts on the next letter.
ACCENTS = {"'": "\u0301", "`": "\u0300", "^": "\u0302", '"': "\u0308", "~": "\u0303", "=": "\u0304", ".": "\u0307",
           "v": "\u030c", "u": "\u0306", "H": "\u030b", "c": "\u0327", "k": "\u0328", "r": "\u030a", "d": "\u0323",
           "b": "\u0331", "t": "\u0361"}
_ACCENT = re.compile(r"\\(['`^\"~=.]|[vuHckrdbt](?![A-Za-z]))\s*(?:\{\s*(\\[ij]\b|[^{}\\\s])\s*\}|(\\[ij]\b|[A-Za-z]))")
_STRUCTURE = re.compile(r"\\(begin|end)\s*\{([A-Za-z]+\*?)\}(?:\{[^{}]*\})?|\s*\\item\b(?:\[([^\]]*)\])?\s*")
_LISTS = {"itemize", "enumerate", "description"}


def unicode_text(latex: str, markdown: bool = True) -> str:
    """Text-mode LaTeX as the Unicode text it prints (see the module docstring). With `markdown`, escapes
    such as `\\%` stay (they are Markdown escapes too) and a symbol that Markdown reads is escaped;
    without, escapes are undone (plain text)."""

    def command(found: re.Match) -> str:
        token = found.group()
        if found.group(1) in ("newline", "linebreak"):
            return "\\\n" if markdown else "\n"  # a hard line break in Markdown
        if found.group(1):
            value = SYMBOLS.get(found.group(1), "")
            return re.sub(r"([\\`*_\[\]<>|$#~])", r"\\\1", value) if markdown else value
        if token in ("{", "}"):
            return ""
        if token[1:] in _ESCAPED:
            return token if markdown else token[1:]
        return "" if token in ("\\!", "\\/") else " "

    return _COMMAND.sub(command, _ACCENT.sub(_accent, latex))


_ESCAPED = set("%&_#${}")
_COMMAND = re.compile(r"\\([A-Za-z]+)\*?(?:\{\})?|\\[%&_#${}]|\\[,;:>!/ ]|~|[{}]")


def _accent(found: re.Match) -> str:
    letter = found.group(2) or found.group(3)
    letter = {"\\i": "i", "\\j": "j"}.get(letter, letter)
    return unicodedata.normalize("NFC", letter + ACCENTS[found.group(1)])


def markdown_text(lists: list[str], line_start: bool, text: str) -> str:
    """Model text outside math as Markdown: lists, environments and commands as the module docstring says,
    and a bare `$` escaped (it would open math). `lists` holds the list environments open on the page."""

    def structure(found: re.Match) -> str:
        edge, env, label = found.groups()
        if env == "abstract":
            return "\n\n## Abstract\n\n" if edge == "begin" else "\n\n"
        if env in _LISTS:
            if edge == "begin":
                lists.append(env)
            elif env in lists:
                del lists[len(lists) - 1 - lists[::-1].index(env):]
            return "\n\n"
        if edge is not None:
            name = env.rstrip("*")
            return f"\n\n**{name.capitalize()}.** " if edge == "begin" and name in THEOREMS else "\n\n"
        # \item: a list marker indented under the markers of the lists around it
        indent = sum(3 if kind == "enumerate" else 2 for kind in lists[:-1])
        marker = "1. " if lists and lists[-1] == "enumerate" else "- "
        return "\n" + " " * indent + marker + (f"**{label}** " if label else "")

    text = ("\n" if line_start else "") + unicode_text(_STRUCTURE.sub(structure, text))
    # Lines Markdown would read as an indented code block or an HTML block would swallow the math that
    # follows them: indentation of four or more becomes three (list items keep theirs; three still continues
    # a list item's paragraph) and a leading `<` is escaped.
    text = re.sub(r"\n[ \t]+(?![ \t]|[-*+][ \t]|\d{1,9}[.)][ \t])",
                  lambda m: m.group() if len(m.group().expandtabs(4)) <= 4 else "\n   ", text)
    text = re.sub(r"(\n {0,3})<", r"\1\\<", text)
    return re.sub(r"(?<!\\)\$", r"\\$", text[1:] if line_start else text)


def reference(kind: str, argument: str) -> str:
    """`\\ref{key}` -> `\\[key\\]`, `\\eqref{key}` -> `(key)`, `\\cite{a,b}` -> `\\[a, b\\]` (Markdown-escaped)."""
    keys = ", ".join(key.strip() for key in argument.split(",") if key.strip())
    keys = re.sub(r"([\\`*_\[\]<>|$#~])", r"\\\1", keys)
    return f"\\[{keys}\\]" if kind == "[]" else f"({keys})"
