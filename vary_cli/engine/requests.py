"""What goes into the engine and what comes out: a page request, its generation, its outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence


@dataclass
class PageRequest:
    """One page to generate. `key` names it to the caller; `image` is what the engine's `encode` reads (or
    the exception that kept the page from being rendered: the page then fails with it)."""

    key: Any
    image: Any
    prompt_ids: list[int]
    text_layer: str | None = None
    """The page's PDF text, a drafting source (`--draft text-layer|auto`)."""
    earlier_pages: Sequence[Sequence[int]] = ()
    """Token ids the model wrote for the document's earlier pages, a drafting source (`--draft ngram|auto`)."""
    max_new_tokens: int | None = None
    """This page's own token budget, below the engine's `max_new_tokens` (vary train's eval samples)."""
    stop_after: int | None = None
    """Bench/test hook: choose a stop id in place of token `stop_after + 1` (the same forward passes as a
    page whose text stops there), so a benchmark can draw page lengths from a distribution."""


@dataclass
class Generation:
    """What decoding produced for one page."""

    token_ids: list[int] = field(default_factory=list)
    finish_reason: str = "length"  # "stop" | "length" | "repetition"
    forward_passes: int = 0
    """Forward passes this page took part in, its prefill included."""
    draft_tokens_accepted: int = 0
    """Generated tokens that came from verified drafts (each saved one forward pass)."""


@dataclass
class PageOutcome:
    """What became of one request: its generation, or the error that failed it."""

    request: PageRequest
    generation: Generation | None
    error: BaseException | None
    seconds: float
