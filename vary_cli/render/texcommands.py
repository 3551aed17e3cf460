"""What the writers know about LaTeX commands and environments: data only, no logic.

`texmath.repair_math` reads these tables to repair a math span (which environments may appear in
math and what they become, how many arguments a command takes, which commands are errors in math,
which text-mode commands are safe). Kept apart so the repair reads as an algorithm.
"""

from __future__ import annotations

import re

# Environments accepted inside math, after ALIASES. Display-only environments are renamed to the
# inner forms that amsmath allows anywhere in math; equation-like ones become a plain group.
MATH_ENVS = {"matrix", "pmatrix", "bmatrix", "Bmatrix", "vmatrix", "Vmatrix", "smallmatrix", "array",
             "subarray", "cases", "aligned", "gathered", "group"}
ALIASES = {"align": "aligned", "align*": "aligned", "eqnarray": "aligned", "eqnarray*": "aligned",
           "flalign": "aligned", "flalign*": "aligned", "alignat": "aligned", "alignat*": "aligned",
           "alignedat": "aligned", "split": "aligned", "gather": "gathered", "gather*": "gathered", "multline": "gathered",
           "multline*": "gathered", "dcases": "cases", "rcases": "cases", "equation": "group",
           "equation*": "group", "displaymath": "group", "math": "group", "subequations": "group",
           "tabular": "array", "tabular*": "array", "array*": "array"}
# Columns an environment takes per row; more `&` than that is a TeX error ("Extra &").
COLUMN_LIMIT = {"cases": 2, "gathered": 1, "group": 1}
# Environments whose first argument is a column count, dropped with the rename to `aligned`.
COUNTED = {"alignat", "alignat*", "alignedat"}
SPEC_ENVS = {"array", "subarray"}
RULED_ENVS = SPEC_ENVS | {"matrix", "pmatrix", "bmatrix", "Bmatrix", "vmatrix", "Vmatrix", "cases"}

DELIMITERS = set("()[]|./<>") | {
    "\\{", "\\}", "\\|", "\\langle", "\\rangle", "\\lfloor", "\\rfloor", "\\lceil", "\\rceil", "\\vert",
    "\\Vert", "\\lvert", "\\rvert", "\\lVert", "\\rVert", "\\uparrow", "\\downarrow", "\\updownarrow",
    "\\Uparrow", "\\Downarrow", "\\Updownarrow", "\\backslash", "\\lbrace", "\\rbrace", "\\lbrack",
    "\\rbrack", "\\ulcorner", "\\urcorner", "\\llcorner", "\\lrcorner", "\\lgroup", "\\rgroup",
    "\\lmoustache", "\\rmoustache", "\\arrowvert", "\\Arrowvert", "\\bracevert"}
BIG = {f"\\{size}{side}" for size in ("big", "Big", "bigg", "Bigg") for side in ("", "l", "r", "m")}

# Mandatory arguments of common commands: missing ones are filled with `{}`.
ARGS = {name: 1 for name in (
    "sqrt hat widehat tilde widetilde bar vec dot ddot dddot acute grave breve check mathring overline "
    "underline overrightarrow overleftarrow overleftrightarrow underrightarrow underleftarrow "
    "overbrace underbrace mathbf mathrm mathit mathsf mathtt mathcal mathbb mathfrak mathnormal "
    "boldsymbol pmb operatorname text textrm textbf textit textsf texttt textnormal textup emph mbox "
    "xrightarrow xleftarrow boxed pmod pod phantom hphantom vphantom mathop mathbin mathrel mathord "
    "mathopen mathclose mathpunct mathinner substack label"
).split()} | {name: 2 for name in "frac dfrac tfrac cfrac binom dbinom tbinom overset underset stackrel".split()}
# Their arguments are set in text mode: `_ ^ &` there must be escaped.
TEXT_ARGS = {"text", "textrm", "textbf", "textit", "textsf", "texttt", "textnormal", "textup", "emph", "mbox"}
# What text mode accepts; any other control word inside `\text{}` makes us set the argument as math.
TEXT_SAFE = TEXT_ARGS | set(
    "ldots dots quad qquad LaTeX TeX S P dag ddag copyright pounds textbackslash textasciitilde "
    "textasciicircum textbar textless textgreater textendash textemdash textdegree ss ae oe o l i j aa AA "
    "AE OE O L underline".split())
TEXT_SYMBOLS = set("{}%#&$_ ,@/-'\"^~=.`")
MATH_FONT_FOR_TEXT = {"textbf": "\\mathbf", "textit": "\\mathit", "texttt": "\\mathtt", "textsf": "\\mathsf",
                      "emph": "\\mathit"}
OPERATORS = set(
    "sum prod coprod int iint iiint oint bigcup bigcap bigvee bigwedge bigoplus bigotimes bigodot "
    "biguplus bigsqcup lim limsup liminf max min sup inf det Pr gcd arg deg dim hom ker exp log ln "
    "injlim projlim varlimsup varliminf varinjlim varprojlim mathop operatorname".split())
# Commands that are errors in math (paragraph, sectioning, preamble, alignment rules outside an
# alignment, TeX primitives that read a number) or dangerous (file and catcode access). They are
# printed as their name instead.
UNSAFE = set(
    "par item section subsection subsubsection paragraph subparagraph chapter part caption footnote "
    "title author date maketitle affil address email institute keywords "
    "footnotetext footnotemark thanks input include includeonly write immediate openout openin read "
    "def gdef edef xdef let futurelet newcommand renewcommand providecommand DeclareMathOperator "
    "newenvironment renewenvironment catcode lccode uccode mathcode delcode sfcode documentclass "
    "usepackage RequirePackage newline linebreak pagebreak newpage clearpage vspace noalign hline cline "
    "toprule midrule bottomrule cmidrule addlinespace multicolumn multirow omit span cr crcr halign "
    "valign kern mkern hskip mskip vskip raise lower char mathchar delimiter radical mathaccent hbox "
    "vbox vtop vcenter moveleft moveright penalty count dimen skip toks advance multiply divide "
    "setcounter addtocounter setlength addtolength stepcounter refstepcounter expandafter csname "
    "endcsname noexpand afterassignment aftergroup special shipout output everypar everymath "
    "begingroup endgroup bgroup egroup iffalse iftrue ifx fi else or loop repeat makeatletter "
    "makeatother tag nonumber notag intertext shortintertext includegraphics verb url href "
    "color textcolor colorbox displaylimits over atop above choose brace brack overwithdelims "
    "atopwithdelims abovewithdelims c u v H t r b d k relax left right middle".split()) - {"left", "right", "middle", "relax"}
# Commands dropped without a trace: equation numbering that our output does not use.
DROPPED = {"\\nonumber", "\\notag", "\\displaylimits", "\\boldmath", "\\unboldmath"}
RENAMED = {"\\bm": "\\mathbf", "\\mathscr": "\\mathcal", "\\mathbbm": "\\mathbb", "\\bold": "\\mathbf",
           "\\Bbb": "\\mathbb", "\\dfrac": "\\dfrac"}
# Text accents are errors in math; the math accent with the same look replaces them.
ACCENTS = {"\\'": "\\acute", '\\"': "\\ddot", "\\^": "\\hat", "\\~": "\\tilde", "\\=": "\\bar",
           "\\.": "\\dot", "\\`": "\\grave"}
CONTROL_SYMBOLS = set(",;!:{}|\\ %#&$_>*/-@")
MAX_DEPTH = 40  # TeX's grouping and input stacks are deeper, but nothing real nests this far
DIMENSION = re.compile(r"\s*-?(\d+\.?\d*|\.\d+)\s*(pt|mm|cm|in|ex|em|bp|pc|dd|cc|sp|mu)\s*")
# References: shown as their key, in brackets or parentheses (the labels they point to are not kept).
REFERENCES = {"ref": "[]", "autoref": "[]", "cref": "[]", "Cref": "[]", "pageref": "[]", "eqref": "()", "cite": "[]",
              "citep": "[]", "citet": "[]", "citealp": "[]"}
