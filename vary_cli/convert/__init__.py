"""The page pipeline: raster -> (models: preprocess -> model) -> generate -> render -> output, with
`pipeline.py` the one place that knows the order.
"""
