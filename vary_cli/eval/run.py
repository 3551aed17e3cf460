"""`vary eval run`: run a model on a benchmark through the convert pipeline and keep every prediction.

Page and question items (images, or single PDF pages) go through the one decode engine
(`pipeline.read_images`, continuously batched, each item with its own prompt); an item that fails (a
missing image, a page the model cannot run) or a document that does not convert is *failed*: returned
with its reason, left out of the means by the scorer, reported by the CLI (exit 1), and retried on the
next run. Each finished item is appended to a
`PageStore` resume store beside `OUT/predictions.jsonl` (fsynced), so a killed run resumes where it
stopped; `predictions.jsonl` itself (`{"id", "answer", "finish_reason"}` per line, readable by `vary eval
score`) is rewritten atomically at the end. nougat-style PDF + .mmd pairs are whole documents: each goes
through `stream.convert_document` with its own resumable output under `OUT/documents/`.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from ..convert.output import PageStore, settings_fingerprint, source_fingerprint
from ..convert.pipeline import ImageItem, default_batch_size, read_images
from ..convert.raster import open_document
from ..convert.stream import convert_document
from ..engine.config import GenerationConfig
from ..render.results import PageResult
from ..errors import InputError, OutputError, VaryError, one_line
from ..files import atomic_write_text
from ..models.loaded import LoadedModel
from .readers import Benchmark, Item, read_text

PREDICTIONS = "predictions.jsonl"
# The prompt each task gets when neither --prompt nor the item names one.
DEFAULT_PROMPT = {"ocr": "ocr", "docvqa": None, "chartqa": None}
_PAGE_MARKER = re.compile(r"^<!-- page \d+ -->\n?", re.M)


@dataclass
class RunOutcome:
    """What `run_benchmark` gives: every item's prediction, and the items that failed with why."""

    predictions: dict[str, str]
    """key -> text; a failed item's text is empty."""
    failed: dict[str, str] = field(default_factory=dict)
    """key -> one-line reason (a missing image, an error of the model); retried on the next run."""


def run_benchmark(loaded: LoadedModel, bench: Benchmark, out: Path, gen: GenerationConfig, *,
                  prompt: str | None = None, batch_size: int = 0,
                  on_item: Callable[[int, int, str], None] | None = None) -> RunOutcome:
    """Predictions of every item, generating only those not already kept under `out`."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way (FileExistsError, NotADirectoryError), permissions
        raise OutputError(f"{out}: cannot create the predictions directory ({exc.strerror or exc})") from None
    batch_size = batch_size or default_batch_size(loaded, gen.max_new_tokens)
    documents = [item for item in bench.items if item.pdf is not None and item.page is None]
    pages = [item for item in bench.items if not (item.pdf is not None and item.page is None)]
    outcome = RunOutcome({})
    for index, item in enumerate(documents, 1):
        try:
            outcome.predictions[item.key] = _run_document(loaded, item, out, gen, prompt or "markdown", batch_size)
        except VaryError as exc:  # a PDF that does not open: this item fails, the others still run
            outcome.predictions[item.key] = ""
            outcome.failed[item.key] = one_line(exc)[:300]
        if on_item:
            on_item(index, len(bench.items), item.key)
    if pages:
        results = _run_pages(loaded, bench, pages, out, gen, prompt, batch_size, on_item, len(documents))
        for key, result in results.items():
            outcome.predictions[key] = result.text
            if result.finish_reason == "error":
                outcome.failed[key] = result.error or "failed"
    return outcome


def _run_document(loaded: LoadedModel, item: Item, out: Path, gen: GenerationConfig, prompt: str,
                  batch_size: int) -> str:
    output = out / "documents" / f"{item.key}.md"
    convert_document(loaded, item.pdf, output, prompt=prompt, fmt="md", gen=gen, batch_size=batch_size)
    # Page markers are ours, not the document's; failure markers stay (they are missing text).
    return _PAGE_MARKER.sub("", read_text(output)).strip()


def _prompt_for(item: Item, bench: Benchmark, override: str | None) -> str:
    prompt = override or item.prompt or DEFAULT_PROMPT[bench.task]
    if not prompt:
        raise InputError(f"{bench.path}: item {item.key} has no question to ask; give --prompt")
    return prompt


def _run_pages(loaded: LoadedModel, bench: Benchmark, items: list[Item], out: Path, gen: GenerationConfig,
               override: str | None, batch_size: int, on_item, offset: int) -> dict[str, PageResult]:
    output = out / PREDICTIONS
    settings = {"model": str(loaded.directory), "dtype": str(loaded.dtype), "prompt": override,
                "task": bench.task, "gen": asdict(gen)}
    source = bench.path if bench.path.is_file() else bench.path / "."
    # The sidecar is the durable record (page = the item's 1-based position); it is kept after the run so
    # a longer --limit or a rerun reuses every finished item.
    store = PageStore(output, source_fingerprint(source), settings_fingerprint(settings))
    results: dict[str, PageResult] = {}
    try:
        todo: list[tuple[int, Item]] = []
        for number, item in enumerate(items, 1):
            kept = store.finished.get(number)
            if kept is not None and kept.source == item.key:
                results[item.key] = kept
            else:
                todo.append((number, item))
        done = offset + len(results)
        prompts = {item.key: _prompt_for(item, bench, override) for _, item in todo}  # a missing one fails first
        queue = (ImageItem((number, item), item.key, _image_or_error(item), prompts[item.key]) for number, item in todo)
        for (number, item), result in read_images(loaded, queue, gen, batch_size=batch_size):
            result = replace(result, page=number, text=result.text.strip())
            store.add(result)
            results[item.key] = result
            done += 1
            if on_item:
                on_item(done, offset + len(items), item.key)
        lines = [{"id": item.key, "answer": results[item.key].text, "finish_reason": results[item.key].finish_reason,
                  **({"error": results[item.key].error} if results[item.key].error else {})} for item in items]
        atomic_write_text(output, "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    finally:
        store.close()
    return results


def _image_or_error(item: Item):
    """The item's image file (opened when its turn comes), its PDF page, or the error that keeps it unread."""
    if item.image is not None:
        return item.image
    try:
        if item.pdf is not None:
            return next(open_document(item.pdf).iter_pages([item.page]))[1]
        raise InputError(f"item {item.key}: no image or pdf page to read")
    except InputError as error:
        return error
