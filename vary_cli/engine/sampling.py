"""Choosing the next token: greedy (the default, what the metrics and parity need), or temperature / top-p
sampling with a seeded CPU generator, so a seed gives the same text on every device."""

from __future__ import annotations

import torch

from .config import GenerationConfig


def new_generator(gen: GenerationConfig) -> torch.Generator | None:
    """The sampler's generator (None when greedy): seeded by `--seed`, else drawn."""
    if gen.greedy:
        return None
    return torch.Generator().manual_seed(gen.seed if gen.seed is not None else torch.seed())


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
