"""A page's Markdown as safe HTML for the web page: tables as tables, math as MathML.

The web page shows each finished page beside its image. Its Markdown (what `--format md` writes for the
page, from render/) is parsed here with markdown-it, the parser render/ itself targets (CommonMark, GFM
tables, `$` math), and every `$...$` / `$$...$$` span becomes MathML with latex2mathml, which browsers
typeset themselves: nothing is fetched from a CDN and no math library is shipped to the browser. Math
latex2mathml cannot read is shown as its LaTeX source in a code span.

The model's text may hold any HTML, so the result is rebuilt from an allow-list of tags and attributes
(text, tables, lists, MathML); everything else is dropped, and a script's or style's content with it.
The page also sends a Content-Security-Policy that forbids inline scripts (app.py).
"""

from __future__ import annotations

import html
from functools import lru_cache
from html.parser import HTMLParser

_TEXT_TAGS = {"p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "em", "strong", "del", "s", "code", "pre",
              "blockquote", "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td", "sup", "sub", "span",
              "div", "b", "i", "u"}
_MATH_TAGS = {"math", "mrow", "mi", "mn", "mo", "ms", "mtext", "mspace", "mfrac", "msub", "msup", "msubsup",
              "mover", "munder", "munderover", "msqrt", "mroot", "mtable", "mtr", "mtd", "mstyle", "menclose",
              "mpadded", "mphantom", "merror", "semantics", "annotation", "mmultiscripts", "mprescripts", "none"}
_ATTRIBUTES = {"colspan", "rowspan", "align", "class", "display", "xmlns", "mathvariant", "stretchy", "fence",
               "separator", "lspace", "rspace", "accent", "accentunder", "columnalign", "rowalign",
               "columnlines", "rowlines", "columnspacing", "rowspacing", "width", "height", "depth",
               "linethickness", "minsize", "maxsize", "movablelimits", "symmetric", "notation", "encoding",
               "displaystyle", "scriptlevel", "start", "largeop"}
_DROP_CONTENT = {"script", "style", "iframe", "object", "embed", "template", "noscript", "textarea", "title"}
_VOID = {"br", "hr", "mspace", "none", "mprescripts"}


def page_html(markdown: str) -> str:
    """Safe HTML of one page's Markdown, with MathML for its math (see the module docstring)."""
    return sanitize(_parser().render(markdown))


def math_ml(tex: str, display: bool) -> str:
    """MathML for a LaTeX formula, or the formula as code when latex2mathml cannot read it."""
    from latex2mathml.converter import convert

    try:
        return convert(tex, display="block" if display else "inline")
    except Exception:  # noqa: BLE001 - latex2mathml raises bare Exceptions of many kinds on bad input
        return f'<code class="math-source">{html.escape(tex)}</code>'


@lru_cache(maxsize=1)
def _parser():
    from markdown_it import MarkdownIt
    from mdit_py_plugins.dollarmath import dollarmath_plugin

    md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    md.use(dollarmath_plugin, allow_space=False, allow_digits=False)

    def inline(renderer, tokens, index, options, env):
        return math_ml(tokens[index].content, display=False)

    def block(renderer, tokens, index, options, env):
        return f'<div class="math-block">{math_ml(tokens[index].content.strip(), display=True)}</div>\n'

    md.add_render_rule("math_inline", inline)
    md.add_render_rule("math_inline_double", block)
    md.add_render_rule("math_block", block)
    md.add_render_rule("math_block_label", block)
    return md


def sanitize(markup: str) -> str:
    """`markup` rebuilt from allowed tags and attributes only; text re-escaped."""
    cleaner = _Cleaner()
    cleaner.feed(markup)
    cleaner.close()
    return "".join(cleaner.out)


class _Cleaner(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.dropping = 0  # depth inside a tag whose content is dropped

    def handle_starttag(self, tag, attrs) -> None:
        if tag in _DROP_CONTENT:
            self.dropping += 1
            return
        if self.dropping or tag not in _TEXT_TAGS | _MATH_TAGS:
            return
        kept = "".join(f' {name}="{html.escape(value or "", quote=True)}"' for name, value in attrs
                       if name in _ATTRIBUTES and "javascript:" not in (value or "").lower())
        self.out.append(f"<{tag}{kept}>")

    def handle_startendtag(self, tag, attrs) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID and tag in _TEXT_TAGS | _MATH_TAGS and not self.dropping:
            self.out.append(f"</{tag}>")

    def handle_endtag(self, tag) -> None:
        if tag in _DROP_CONTENT:
            self.dropping = max(0, self.dropping - 1)
            return
        if not self.dropping and tag in _TEXT_TAGS | _MATH_TAGS and tag not in _VOID:
            self.out.append(f"</{tag}>")

    def handle_data(self, data) -> None:
        if not self.dropping:
            self.out.append(html.escape(data, quote=False))
