"""The writers: page results in, document text out; pure strings, no model, no files.

`document.py` picks the writer per format (md, mmd, tex, txt, jsonl) and places page and problem
markers; `mathpix.py` and `texmath.py` (with `texcommands.py`, what it knows of LaTeX commands) repair
the model's Mathpix Markdown once per page, and `tables.py` parses its tables; `markdown.py` and
`latex.py` write GitHub Markdown and LaTeX, `tablelayout.py` sets tables so they fit the page.
`results.py` holds `PageResult`, what every writer reads.
"""
