"""The page pipeline: raster -> (models: preprocess) -> engine -> render -> output.

`pipeline.py` knows the order of the stages and reads images (`read_images`, `ocr_images`); `stream.py` runs
every document's pages as one stream through the engine (`engine/`; `convert_document` is one input), split by
`shard.py`; `output.py` keeps finished pages and writes outputs atomically. `pdf_text.py` reads a PDF's
own text in reading order (`--fallback text-layer`, `vary data pdf`); `text_layer.py` fills pages from it.
"""
