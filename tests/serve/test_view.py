"""view.py: a page's Markdown as HTML with MathML, tables as tables, and nothing the model wrote runs."""

from vary_cli.serve.view import page_html, sanitize


def test_math_becomes_mathml_and_tables_stay_tables():
    out = page_html("Energy $E = mc^2$ holds.\n\n$$\n\\frac{a}{b}\n$$\n\n| x | y |\n|---|---|\n| 1 | $z$ |\n")
    assert out.count("<math") == 3 and 'display="block"' in out and "<mfrac>" in out
    assert "<table>" in out and "<td>1</td>" in out
    assert "$" not in out


def test_html_tables_with_spans_and_math_in_cells():
    md = '<table>\n<tr>\n<td colspan="2">\n\n$a+b$\n\n</td>\n</tr>\n</table>\n'
    out = page_html(md)
    assert '<td colspan="2">' in out and "<math" in out


def test_unreadable_math_is_shown_as_source():
    assert page_html("bad $\\frac{a}{$ math") == '<p>bad <code class="math-source">\\frac{a}{</code> math</p>\n'


def test_scripts_handlers_and_links_are_dropped():
    out = page_html('<script>alert(1)</script><img src=x onerror="alert(2)"><p onclick="x()">hi</p>'
                    '<a href="javascript:alert(3)">link</a><style>body{}</style>')
    assert "alert" not in out and "onerror" not in out and "onclick" not in out and "<img" not in out
    assert "<p>hi</p>" in out and "link" in out and "body{}" not in out
    assert sanitize("a < b & c") == "a &lt; b &amp; c"

