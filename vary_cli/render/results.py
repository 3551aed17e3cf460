"""The record every stage after generation passes along: one page's text and how it ended.

Kept free of torch so `render/` and `convert/output.py` can use it without importing the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# "text-layer": the page's text comes from the PDF's text layer (`--fallback text-layer`), not the model.
FINISH_REASONS = ("stop", "length", "repetition", "error", "text-layer")


@dataclass
class PageResult:
    """The text of one page (of a PDF) or one image, and how its generation ended.

    `page` is 1-based, None for a single image; `finish_reason` is one of FINISH_REASONS; `error`
    holds a one-line message when `finish_reason == "error"`.
    """

    source: str
    text: str
    finish_reason: str
    tokens: int
    seconds: float
    page: int | None = None
    error: str | None = None
    forward_passes: int = 0
    """Forward passes the page's decoding took (its prefill included); fewer than `tokens` with drafting."""
    draft_tokens_accepted: int = 0
    """Tokens that came from verified drafts (`--draft`)."""

    def to_json(self) -> dict:
        return asdict(self)
