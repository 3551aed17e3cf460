"""The one place that knows the order of the stages: raster -> preprocess -> engine -> render -> output.

Every page any command reads goes through the one decode engine (engine/batcher.py) by way of this
module: `make_engine` builds it for a loaded model, `page_request` turns a page image into its request
(the model family's `prepare_page`: pixels and prompt ids), `page_result` turns an outcome into the
`PageResult` every later stage takes. `read_images` runs images through it (`vary ocr`, `eval run`,
`vary train --eval-generate`); `stream.convert_many` runs documents (`vary convert`, the Python API's
`convert_document`). Neither prints: they report through a `Progress` object the caller passes in. A page
that fails becomes a PageResult with `finish_reason="error"` while the rest go on.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch

from ..engine.batcher import Engine
from ..engine.config import DRAFT_OFF, DraftConfig, GenerationConfig
from ..engine.requests import PageOutcome, PageRequest
from ..errors import InputError, one_line
from ..models.loaded import LoadedModel, PageOptions
from ..models.preprocess import load_image
from ..render.document import render_document, render_jsonl
from ..render.results import PageResult
from .raster import Document
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


def make_engine(loaded: LoadedModel, gen: GenerationConfig, batch_size: int = 1, *, draft: DraftConfig = DRAFT_OFF,
                refill: bool = True, progress: Progress | None = None) -> Engine:
    """The decode engine for `loaded`: its page encoding, stop ids and tokenizer (for text-layer drafts)."""
    on_token = (lambda _key, _token: progress.token()) if progress else None
    return Engine(loaded.model, loaded.encode_inputs, gen, loaded.stop_ids, batch_size, refill=refill,
                  on_token=on_token, draft=draft, tokenize=loaded.tokenizer.encode)


def page_request(loaded: LoadedModel, key: Any, image: Any, prompt: str, *, text_layer: str | None = None,
                 earlier_pages: Sequence[Sequence[int]] = (), max_new_tokens: int | None = None) -> PageRequest:
    """The engine's request for one page image (or the exception that kept it from being read: the page
    then fails with it). Preprocessing happens here, on the CPU, before the page joins a batch."""
    if isinstance(image, BaseException):
        return PageRequest(key, image, [])
    try:
        inputs, prompt_ids = loaded.prepare_page(image, prompt)
    except (InputError, ValueError, OSError) as error:  # a page the preprocessing cannot read
        return PageRequest(key, error, [])
    return PageRequest(key, inputs, prompt_ids, text_layer=text_layer, earlier_pages=earlier_pages,
                       max_new_tokens=max_new_tokens)


def page_result(loaded: LoadedModel, source: str, page: int | None, outcome: PageOutcome) -> PageResult:
    """The PageResult of an engine outcome: the decoded text, or the page's one-line error."""
    if outcome.error is not None:
        return PageResult(source=source, page=page, text="", finish_reason="error", tokens=0,
                          seconds=round(outcome.seconds, 3), error=one_line(outcome.error)[:300])
    generation = outcome.generation
    return PageResult(source=source, page=page, text=loaded.tokenizer.decode(generation.token_ids),
                      finish_reason=generation.finish_reason, tokens=len(generation.token_ids),
                      seconds=round(outcome.seconds, 3), forward_passes=generation.forward_passes,
                      draft_tokens_accepted=generation.draft_tokens_accepted)


@dataclass
class ImageItem:
    """One image to read: `image` is a path (opened when its turn comes), an image, or the exception that
    kept it from being read. `source` names it in its PageResult."""

    key: Any
    source: str
    image: Any
    prompt: str
    max_new_tokens: int | None = None


def read_images(loaded: LoadedModel, items: Iterable[ImageItem], gen: GenerationConfig, *, batch_size: int = 1,
                draft: DraftConfig = DRAFT_OFF, progress: Progress | None = None) -> Iterator[tuple[Any, PageResult]]:
    """(key, PageResult) of each image as its page stops (not in input order); images are opened lazily,
    as rows of the batch free up. An image that cannot be read is an error result."""
    def requests() -> Iterator[PageRequest]:
        for item in items:
            image = item.image
            if isinstance(image, (str, Path)):
                try:
                    image = load_image(image)
                except InputError as error:
                    image = error
            yield page_request(loaded, item, image, item.prompt, max_new_tokens=item.max_new_tokens)

    engine = make_engine(loaded, gen, batch_size, draft=draft, progress=progress)
    for outcome in engine.run(requests()):
        item = outcome.request.key
        yield item.key, page_result(loaded, item.source, None, outcome)


def ocr_images(loaded: LoadedModel, images: Iterable[Path], prompt: str, gen: GenerationConfig,
               progress: Progress | None = None, *, batch_size: int = 1,
               draft: DraftConfig = DRAFT_OFF) -> Iterator[PageResult]:
    """Read each image file and yield its PageResult (`page` None), in input order."""
    finished: dict[int, PageResult] = {}
    next_index = 0
    items = (ImageItem(index, str(path), path, prompt) for index, path in enumerate(images))
    for index, result in read_images(loaded, items, gen, batch_size=batch_size, draft=draft, progress=progress):
        finished[index] = result
        while next_index in finished:
            yield finished.pop(next_index)
            next_index += 1


def render_results(ordered: list[PageResult], fmt: str, source: Path, document: Document,
                   fallback: str | None) -> str:
    """A document's output text from its pages in order; with `fallback="text-layer"`, failed and looping
    PDF pages are written from the PDF's own text (text_layer.py)."""
    if fallback == "text-layer" and document.kind == "pdf":
        ordered = fill_from_text_layer(ordered, source)
    return render_jsonl(ordered) if fmt == "jsonl" else render_document(ordered, fmt)


def page_settings(loaded: LoadedModel, prompt: str, gen: GenerationConfig) -> dict:
    """Everything that changes a page's text; resume stores written under other settings are ignored.

    Batch size, scheduler and shard count are not in it: they do not change any page's text.
    """
    settings = {"model": str(loaded.directory), "dtype": str(loaded.dtype), "prompt": prompt,
                "gen": asdict(gen), "raster": "short-side-1024"}
    if loaded.options != PageOptions():  # GOT's tiles, box, colour (absent otherwise: older stores stay valid)
        settings["page"] = asdict(loaded.options)
    return settings


def default_batch_size(loaded: LoadedModel, max_new_tokens: int) -> int:
    """Pages per batch from the device's free memory: each page's KV cache and decode activations.

    Batching pays on every device: decoding reads the weights once per step for the whole batch
    (bench/: 16 -> 44 decode tokens/s from batch 1 to 8 on a 2-core CPU). The vision towers take one page
    at a time on a CPU (see `LoadedModel.encode_inputs`), so only GPUs count their activations per page.
    """
    free = _free_memory(loaded.device)
    if free is None:
        return 1
    # The LLM's layers only (CLIP's attention has q_proj weights too): Qwen `layers.N`, OPT `decoder.layers.N`.
    layers = sum(1 for name, _ in loaded.model.named_parameters()
                 if re.fullmatch(r"(decoder\.)?layers\.\d+\.self_attn\.q_proj\.weight", name))
    width = loaded.model.get_submodule("lm_head").in_features
    tokens = loaded.longest_prompt("ocr") + max_new_tokens  # GOT's tiles lengthen its prompt
    element = torch.finfo(loaded.dtype).bits // 8
    kv = 2 * layers * width * tokens * element  # keys and values of every layer
    per_page = kv + 16 * tokens * width * element
    if loaded.device.type != "cpu":
        per_page += 600 * 2**20 * loaded.most_tiles  # SAM's global attention at 1024x1024, batched on GPUs
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
