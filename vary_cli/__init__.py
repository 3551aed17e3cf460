"""vary-cli: PDFs and images to Markdown, LaTeX or text with the Vary vision-language models.

The Python API is the one the CLI calls: `load(name_or_dir, device=..., dtype=...)` returns a ready
model, `convert_document(loaded, source, output, ...)` converts one document and `ocr_images(...)`
reads images.
"""

import os

# Ops that Apple's MPS backend lacks run on the CPU instead of failing; torch reads this at import.
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")

__version__ = "0.1.0"


def load(name_or_dir, device: str = "auto", dtype: str = "auto"):
    """Load a model by registry name or checkpoint directory (see `checkpoint.load`)."""
    from .checkpoint import load as _load

    return _load(name_or_dir, device=device, dtype=dtype)


def convert_document(*args, **kwargs):
    """Convert one PDF or image file (see `pipeline.convert_document`)."""
    from .pipeline import convert_document as _convert

    return _convert(*args, **kwargs)


def ocr_images(*args, **kwargs):
    """Read image files one at a time (see `pipeline.ocr_images`)."""
    from .pipeline import ocr_images as _ocr

    return _ocr(*args, **kwargs)


__all__ = ["load", "convert_document", "ocr_images", "__version__"]
