"""The writers: page results in, document text out; pure strings, no model, no files.

`document.py` picks the writer per format (md, mmd, tex, txt, jsonl) and places page and problem
markers; `mathpix.py` and `texmath.py` repair the model's Mathpix Markdown once per page; `markdown.py`
and `latex.py` write GitHub Markdown and LaTeX. `results.py` holds `PageResult`, what every writer reads.
"""
