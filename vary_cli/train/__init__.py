"""`vary train`: data and masking (`dataset.py`), the recipes of each stage, distributed wrappers,
resumable state, the loop (`loop.py`) and `vary graft-vocabulary` (`graft.py`).
"""
