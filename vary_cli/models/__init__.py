"""The Vary model families and their release I/O: modules (`vary_qwen.py`, `vary_opt.py`), architecture
config, the image preprocessing each family was trained with, the original<->ours key table, loading
(`checkpoint.py`), saving (`export.py`) and the loaded, runnable model (`loaded.py`).
"""
