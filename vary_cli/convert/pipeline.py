"""The one place that knows the order of the stages: raster -> preprocess -> model -> generate -> render -> output.

`ocr_images()` serves `vary ocr`; `convert_document()` serves `vary convert` and the Python API. Both
report progress through a `Progress` object the caller passes in; neither prints. Pages go through the
vision towers and generation in batches; a batch that fails is retried page by page, and a page that
still fails becomes a PageResult with `finish_reason="error"` while the rest of the document goes on.
Finished pages are kept in a PageStore as they complete, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import torch

from ..models.loaded import LoadedModel
from ..engine.generate import GenerationConfig
from ..errors import InputError, VaryError, one_line
from ..engine.generate import generate
from ..files import atomic_write_text
from .fonts import missing_glyphs_by_page
from .output import PageStore, settings_fingerprint, source_fingerprint
from ..models.preprocess import load_image
from .raster import Document, open_document, select_pages
from ..render.document import render_document, render_jsonl
from ..render.results import PageResult
from .text_layer import fill_from_text_layer


class Progress:
    """Callbacks of a conversion; the CLI subclasses this to draw progress bars. Default: silent."""

    def document_started(self, source: Path, pages: int, already_done: int) -> None: ...

    def pages_planned(self, pages: int, already_done: int) -> None:
        """A multi-document run (`stream.convert_many`) starts: its pages over all documents."""

    def message(self, text: str) -> None:
        """A one-line notice (a document that cannot be opened, an incomplete output)."""

    def page_done(self, result: PageResult) -> None: ...

    def token(self) -> None: ...

    def document_done(self, report: "DocumentReport") -> None: ...


@dataclass
class DocumentReport:
    """How one document's conversion ended."""

    source: Path
    output: Path | None
    pages: int = 0
    failed_pages: int = 0
    resumed_pages: int = 0
    skipped: bool = False
    error: str | None = None
    results: list[PageResult] = field(default_factory=list)
    # tex: page -> characters no installed font has (their glyphs will be missing from the PDF)
    missing_glyphs: dict[int, str] = field(default_factory=dict)


def generate_pages(loaded: LoadedModel, images: list, prompt: str, gen: GenerationConfig,
                   progress: Progress | None = None) -> list[tuple[list[int], str]]:
    """(token ids, finish reason) for each page image, generated together as one batch."""
    prompt_ids = loaded.prompt_ids(prompt)
    features = loaded.encode_pages(images, prompt)  # (B, N, W)
    on_token = (lambda _row, _token: progress.token()) if progress else None
    generations = generate(loaded.model, [prompt_ids] * len(images), features, gen, loaded.stop_ids,
                           loaded.pad_id, on_token)
    return [(g.token_ids, g.finish_reason) for g in generations]


def _page_results(loaded: LoadedModel, source: str, batch: list[tuple[int | None, object]], prompt: str,
                  gen: GenerationConfig, progress: Progress | None) -> list[PageResult]:
    """PageResults of a batch of (page number, image); a failing batch is retried one page at a time."""
    started = time.perf_counter()
    try:
        outputs = generate_pages(loaded, [image for _, image in batch], prompt, gen, progress)
        seconds = (time.perf_counter() - started) / len(batch)
        return [_result(loaded, source, number, ids, reason, seconds)
                for (number, _), (ids, reason) in zip(batch, outputs)]
    except (RuntimeError, VaryError, ValueError) as exc:  # out of memory, bad page data, ...
        if len(batch) > 1:
            _free_device_memory(loaded.device)
            return [r for item in batch for r in _page_results(loaded, source, [item], prompt, gen, progress)]
        return [PageResult(source=source, page=batch[0][0], text="", finish_reason="error", tokens=0,
                           seconds=round(time.perf_counter() - started, 3), error=one_line(exc)[:300])]


def _result(loaded: LoadedModel, source: str, page: int | None, ids: list[int], reason: str,
            seconds: float) -> PageResult:
    return PageResult(source=source, page=page, text=loaded.tokenizer.decode(ids), finish_reason=reason,
                      tokens=len(ids), seconds=round(seconds, 3))


def ocr_images(loaded: LoadedModel, images: Iterable[Path], prompt: str, gen: GenerationConfig,
               progress: Progress | None = None) -> Iterator[PageResult]:
    """Read each image file, one at a time, and yield its PageResult (`page` None)."""
    for path in images:
        started = time.perf_counter()
        ((tokens, reason),) = generate_pages(loaded, [load_image(path)], prompt, gen, progress)
        yield _result(loaded, str(path), None, tokens, reason, time.perf_counter() - started)


def render_results(ordered: list[PageResult], fmt: str, source: Path, document: Document,
                   fallback: str | None) -> str:
    """A document's output text from its pages in order; with `fallback="text-layer"`, failed and looping
    PDF pages are written from the PDF's own text (text_layer.py)."""
    if fallback == "text-layer" and document.kind == "pdf":
        ordered = fill_from_text_layer(ordered, source)
    return render_jsonl(ordered) if fmt == "jsonl" else render_document(ordered, fmt)


def convert_document(loaded: LoadedModel, source: Path, output: Path | None, *, prompt: str, fmt: str,
                     gen: GenerationConfig, pages: list[tuple[int, int | None]] | None = None,
                     batch_size: int = 1, recompute: bool = False, progress: Progress | None = None,
                     document: Document | None = None, fallback: str | None = None) -> tuple[DocumentReport, str]:
    """Convert one PDF or image file; returns its report and the rendered text.

    With `output` set, finished pages are kept in a resume store beside it as they complete and the
    document is written atomically at the end; a finished output is skipped unless `recompute`. An
    output with failed pages is written (with their markers) but not finished: running again retries
    those pages only.
    With `output` None (stdout) nothing is written and nothing is resumed.
    With `fallback="text-layer"`, failed and looping PDF pages are written from the PDF's text layer
    (see text_layer.py); the report still counts them as the model left them.

    Raises:
        InputError: the document cannot be opened, or `pages` is out of range.
    """
    from .output import is_finished

    progress = progress or Progress()
    report = DocumentReport(source=source, output=output)
    if output is not None and not recompute and is_finished(output):
        report.skipped = True
        progress.document_done(report)
        return report, ""
    document = document or open_document(source)
    wanted = select_pages(pages, document.page_count, str(source))
    single = document.is_single_image
    settings = page_settings(loaded, prompt, gen)
    store = None
    if output is not None:
        store = PageStore(output, source_fingerprint(source), settings_fingerprint(settings), resume=not recompute)
    try:
        done = dict(store.finished) if store else {}
        key = (lambda n: None if single else n)
        results = {n: done[key(n)] for n in wanted if key(n) in done}
        report.resumed_pages = len(results)
        progress.document_started(source, len(wanted), len(results))
        todo = [n for n in wanted if key(n) not in done]
        for batch in _batches(document, todo, batch_size):
            broken = [PageResult(source=str(source), page=key(n), text="", finish_reason="error", tokens=0,
                                 seconds=0.0, error=one_line(image)[:300]) for n, image in batch
                      if isinstance(image, Exception)]
            good = [(key(n), image) for n, image in batch if not isinstance(image, Exception)]
            for result in broken + (_page_results(loaded, str(source), good, prompt, gen, progress) if good else []):
                if store:
                    store.add(result)
                results[result.page or 1] = result
                progress.page_done(result)
        ordered = [results[n] for n in wanted]
        text = render_results(ordered, fmt, source, document, fallback)
        report.missing_glyphs = missing_glyphs_by_page(ordered, fmt)
        if output is not None:
            atomic_write_text(output, text)
            if not any(r.finish_reason == "error" for r in ordered):
                # With failed pages the resume state stays, so the output counts as unfinished and the
                # next run redoes the failed pages alone.
                store.finish()
    finally:
        if store:
            store.close()
    report.results = ordered
    report.pages = len(ordered)
    report.failed_pages = sum(r.finish_reason == "error" for r in ordered)
    progress.document_done(report)
    return report, text


def page_settings(loaded: LoadedModel, prompt: str, gen: GenerationConfig) -> dict:
    """Everything that changes a page's text; resume stores written under other settings are ignored.

    Batch size, scheduler and shard count are not in it: they do not change any page's text.
    """
    return {"model": str(loaded.directory), "dtype": str(loaded.dtype), "prompt": prompt,
            "gen": asdict(gen), "raster": "short-side-1024"}


def _batches(document: Document, numbers: list[int], size: int) -> Iterator[list[tuple[int, object]]]:
    """Rendered pages in groups of `size`; only one group's images are in memory at a time.

    A page that cannot be rendered comes as its InputError instead of an image.
    """
    batch: list[tuple[int, object]] = []
    for number in numbers:
        try:
            batch.append(next(document.iter_pages([number])))
        except InputError as exc:
            batch.append((number, exc))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _free_device_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()



def default_batch_size(loaded: LoadedModel, max_new_tokens: int) -> int:
    """Pages per batch from the device's free memory: each page's KV cache and decode activations.

    Batching pays on every device: decoding reads the weights once per step for the whole batch
    (bench/: 16 -> 44 decode tokens/s from batch 1 to 8 on a 2-core CPU). The vision towers take one page
    at a time on a CPU (see `LoadedModel.encode_pages`), so only GPUs count their activations per page.
    """
    free = _free_memory(loaded.device)
    if free is None:
        return 1
    # The LLM's layers only (CLIP's attention has q_proj weights too): Qwen `layers.N`, OPT `decoder.layers.N`.
    layers = sum(1 for name, _ in loaded.model.named_parameters()
                 if re.fullmatch(r"(decoder\.)?layers\.\d+\.self_attn\.q_proj\.weight", name))
    width = loaded.model.get_submodule("lm_head").in_features
    tokens = len(loaded.prompt_ids("ocr")) + max_new_tokens
    element = torch.finfo(loaded.dtype).bits // 8
    kv = 2 * layers * width * tokens * element  # keys and values of every layer
    per_page = kv + 16 * tokens * width * element
    if loaded.device.type != "cpu":
        per_page += 600 * 2**20  # SAM's global attention at 1024x1024, batched on GPUs
    return max(1, min(16 if loaded.device.type == "cuda" else 8, int(free * 0.5) // per_page))


def _free_memory(device: torch.device) -> int | None:
    """Bytes free for activations on `device`, None where it can't be told (then batch 1)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        try:  # Linux; elsewhere (macOS) this sysconf name is missing
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None  # MPS shares memory with the system and reports no free figure
