"""Autoregressive decoding for a batch of prompted pages: prefill, decode one token, sample.

Greedy by default (what the metrics and parity need); temperature / top-p sampling with a seeded CPU
generator otherwise, so a seed gives the same text on every device. Prompts are left-padded; a row
that stops leaves the batch and its KV cache rows are dropped. No file I/O. Used by `pipeline.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch

from ..errors import PromptError, VaryError
from ..models.vary_qwen import VaryQwenForCausalLM, attention_bias

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


TokenCallback = Callable[[int, int], None]  # (row, token id), called as each token is chosen


@dataclass
class Generation:
    """What decoding produced for one prompt."""

    token_ids: list[int] = field(default_factory=list)
    finish_reason: str = "length"  # "stop" | "length" | "repetition"


class RepetitionGuard:
    """Spots a token stream whose tail repeats one cycle for a long stretch: the page model is looping.

    For every period p up to `max_period` it keeps the length of the current run of tokens equal to the
    token p places earlier, so each new token costs O(max_period). A loop is declared when the tail is
    periodic over at least max(span, min_repeats * p) tokens. The threshold is long on purpose: tables
    and lists legitimately repeat short patterns a few times, a looping model repeats them for ever.
    """

    def __init__(self, span: int, max_period: int, min_repeats: int) -> None:
        self.span, self.max_period, self.min_repeats = span, max_period, min_repeats
        self.tokens: list[int] = []
        self.runs = [0] * (max_period + 1)  # runs[p]: trailing tokens with t[i] == t[i - p]

    def feed(self, token: int) -> int | None:
        """Add a token; return how many tokens to keep if the stream now loops, else None."""
        tokens = self.tokens
        tokens.append(token)
        n = len(tokens)
        for p in range(1, min(self.max_period, n - 1) + 1):
            self.runs[p] = self.runs[p] + 1 if tokens[-1] == tokens[-1 - p] else 0
            periodic = self.runs[p] + p  # length of the periodic tail
            if periodic >= max(self.span, self.min_repeats * p):
                # Keep the text before the loop and one pass of the cycle, which is usually real content.
                return n - periodic + p
        return None


def select_next(logits: torch.Tensor, gen: GenerationConfig, generator: torch.Generator | None) -> torch.Tensor:
    """Next token ids (B,) from last-position logits (B, V)."""
    if gen.greedy:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float().cpu() / gen.temperature, dim=-1)  # (B, V)
    if gen.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs >= gen.top_p
        sorted_probs[outside] = 0.0
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(logits.device)


@torch.inference_mode()
def generate(model: VaryQwenForCausalLM, prompts: list[list[int]], image_features: torch.Tensor | None,
             gen: GenerationConfig, stop_ids: set[int], pad_id: int,
             on_token: TokenCallback | None = None) -> list[Generation]:
    """Decode every prompt until a stop id or `gen.max_new_tokens`; stop ids are not returned.

    image_features: (B, N, W) from `model.encode_images`, one image per prompt, or None.
    """
    device = model.embed_tokens.weight.device
    lengths = [len(p) for p in prompts]
    width = max(lengths)
    pad = torch.tensor([width - n for n in lengths], device=device)  # (B,)
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=device)  # (B, T)
    positions = (torch.arange(width, device=device)[None] - pad[:, None]).clamp(min=0)  # (B, T)
    alphas = model.prompt_alphas(lengths)
    steps = gen.max_new_tokens
    context = getattr(model, "max_positions", None)  # models with a fixed position table (OPT: 2048)
    if context is not None:
        if width >= context:
            raise PromptError(f"the prompt has {width} tokens; this model reads at most {context}")
        steps = min(steps, context - width)  # the page ends with finish_reason "length" there
    cache = model.new_cache(len(prompts), width + steps)
    embeds = model.embed(ids, image_features)  # (B, T, W)
    dtype = embeds.dtype
    logits = model(embeds, positions, attention_bias(pad, 0, width, width, dtype), alphas, cache, last_only=True)

    generator = None
    if not gen.greedy:
        generator = torch.Generator().manual_seed(gen.seed if gen.seed is not None else torch.seed())
    results = [Generation() for _ in prompts]
    guards = [RepetitionGuard(gen.repetition_span, gen.repetition_max_period, gen.repetition_min_repeats)
              if gen.repetition_span else None for _ in prompts]
    active = list(range(len(prompts)))  # original row of each batch row
    for step in range(steps):
        next_ids = select_next(logits[:, -1].float(), gen, generator).tolist()
        keep = []
        for batch_row, (row, token) in enumerate(zip(active, next_ids)):
            if token in stop_ids:
                results[row].finish_reason = "stop"
                continue
            results[row].token_ids.append(token)
            if on_token:
                on_token(row, token)
            keep_tokens = guards[row].feed(token) if guards[row] else None
            if keep_tokens is not None:
                del results[row].token_ids[keep_tokens:]
                results[row].finish_reason = "repetition"
                continue
            keep.append(batch_row)
        if step == steps - 1 or not keep:
            break
        if len(keep) < len(active):
            rows = torch.tensor(keep, device=device)
            cache.select(rows)
            pad = pad[rows]
            active = [active[i] for i in keep]
            alphas = [alphas[i] for i in keep]
        tokens = torch.tensor([[next_ids[i]] for i in keep], device=device)  # (B, 1)
        key_len = width + step + 1
        step_positions = (key_len - 1 - pad)[:, None]  # (B, 1): each row's own position
        bias = attention_bias(pad, key_len - 1, 1, key_len, dtype)
        logits = model(model.embed(tokens, None), step_positions, bias, alphas, cache)
    return results
