"""The page pipeline: raster -> (models: preprocess -> model) -> generate -> render -> output.

`pipeline.py` knows the order for one document (`convert_document`, `ocr_images`); `stream.py` runs
every document's pages as one stream through `continuous.py`'s batcher, split between processes by
`shard.py`. Rendering: `render.py` picks the writer; `mathpix.py` / `texmath.py` repair the model's
Mathpix Markdown once per page, `markdown.py` and `latex.py` write GitHub Markdown and LaTeX.
`pdf_text.py` reads a PDF's own text in reading order (`--fallback text-layer`, and `vary data pdf`).
"""
