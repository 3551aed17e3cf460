"""How pages are decoded: the generation settings and the drafting settings, as frozen dataclasses whose
fields map one-to-one onto the CLI's options."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..errors import VaryError


@dataclass(frozen=True)
class GenerationConfig:
    """How text is generated for one page."""

    max_new_tokens: int = 2048
    """Upper bound on generated tokens per page (`--max-new-tokens`)."""
    temperature: float = 0.0
    """0 decodes greedily (the default, reproducible); > 0 samples (`--temperature`)."""
    top_p: float = 1.0
    """Nucleus sampling mass, used only when sampling (`--top-p`)."""
    seed: int | None = None
    """Seed of the sampler's generator (`--seed`); None draws one."""
    repetition_span: int = 256
    """Stop a page whose last tokens repeat one cycle for this many tokens (`--no-repetition-guard`: 0)."""
    repetition_max_period: int = 128
    """Longest cycle, in tokens, the repetition guard looks for."""
    repetition_min_repeats: int = 6
    """A cycle must also repeat at least this often, so long cycles need longer stretches."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise VaryError(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise VaryError(f"--temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise VaryError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.repetition_span < 0 or self.repetition_max_period < 1 or self.repetition_min_repeats < 2:
            raise VaryError("repetition guard: span must be >= 0, max period >= 1, min repeats >= 2")
        if self.top_p < 1 and self.temperature == 0:
            raise VaryError("--top-p needs --temperature > 0 (greedy decoding ignores it)")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def with_(self, **changes: Any) -> "GenerationConfig":
        return replace(self, **changes)


DRAFT_MODES = ("auto", "text-layer", "ngram", "off")


@dataclass(frozen=True)
class DraftConfig:
    """Speculative decoding from the page's own text (`--draft`), exact under greedy decoding.

    Each row proposes up to `max_tokens` draft tokens by looking up its last n generated tokens (n from
    `ngram_max` down to `ngram_min`) in its draft sources; one forward pass verifies every row's draft.
    Modes: "text-layer" drafts from the page's PDF text layer; "ngram" from the page's own output so far
    and the document's earlier pages; "auto" from the text layer first where the page has one, then from
    those. Under sampling (temperature > 0) drafting is off: the tokens are drawn one per pass as before.
    """

    mode: str = "auto"
    max_tokens: int = 16
    """The longest draft a row may propose; a row's draft length adapts between 1 and this."""
    start_tokens: int = 4
    """A row's first draft length; it doubles after a fully accepted draft and halves after a rejected one."""
    ngram_max: int = 4
    ngram_min: int = 2

    def __post_init__(self) -> None:
        if self.mode not in DRAFT_MODES:
            raise VaryError(f"--draft must be one of {', '.join(DRAFT_MODES)}, not {self.mode!r}")
        if not 1 <= self.start_tokens <= self.max_tokens:
            raise VaryError("drafting: need 1 <= start_tokens <= max_tokens")
        if not 1 <= self.ngram_min <= self.ngram_max:
            raise VaryError("drafting: need 1 <= ngram_min <= ngram_max")

    @property
    def on(self) -> bool:
        return self.mode != "off"


DRAFT_OFF = DraftConfig(mode="off")
