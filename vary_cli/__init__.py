"""vary-cli: PDFs and images to Markdown, LaTeX or text with the Vary vision-language models.

The Python API is the one the CLI calls: `load(name_or_dir, device=..., dtype=...)` returns a ready
model, `convert_document(loaded, source, output, ...)` converts one document and `ocr_images(...)`
reads images.

The package is one folder per subsystem. Folders, lowest first; each imports only from itself and the
ones above it in this list (tests/test_layering.py checks it):

    errors.py   typed errors (`VaryError` and its kinds); imports nothing of ours
    files.py    atomic file writes and durable renames
    weights/    the weights.toml registry, hub downloads with hash checks, device and dtype choice
    text/       tokenizers (Qwen-1 tiktoken, OPT GPT-2 BPE) and each release's prompt templates
    models/     Vary-Qwen and Vary-OPT modules, config, preprocessing, the key table, load, save, LoadedModel
    engine/     the one decode path: continuous batching, per-row KV cache, drafting, sampling, guard
    render/     the writers: Mathpix repair, md / mmd / tex / txt / jsonl; pure strings
    convert/    the page pipeline: raster -> preprocess -> engine -> render -> output; sharding
    eval/       the paper's metrics, benchmark readers and reports (`vary eval`)
    train/      `vary train`: data and masking, recipes, distributed wrappers, resumable loop
    data/       the data engine that writes `vary train`'s data (`vary data`)
    serve/      `vary serve`: HTTP jobs, uploads, auth, a fair page queue and the web page over the one engine
    cli/        the Typer app, one module per command group; the only folder that prints or exits
"""

import os

# Ops that Apple's MPS backend lacks run on the CPU instead of failing; torch reads this at import.
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")

__version__ = "0.1.0"


def load(name_or_dir, device: str = "auto", dtype: str = "auto"):
    """Load a model by registry name or checkpoint directory (see `checkpoint.load`)."""
    from .models.checkpoint import load as _load

    return _load(name_or_dir, device=device, dtype=dtype)


def convert_document(*args, **kwargs):
    """Convert one PDF or image file (see `convert.stream.convert_document`)."""
    from .convert.stream import convert_document as _convert

    return _convert(*args, **kwargs)


def ocr_images(*args, **kwargs):
    """Read image files, yielding results in input order (see `convert.pipeline.ocr_images`)."""
    from .convert.pipeline import ocr_images as _ocr

    return _ocr(*args, **kwargs)


__all__ = ["load", "convert_document", "ocr_images", "__version__"]
