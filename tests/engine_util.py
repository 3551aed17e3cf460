"""Decoding in tests: the one engine (vary_cli/engine/batcher.py) run on given prompts and image features."""

import torch

from vary_cli.engine.batcher import Engine
from vary_cli.engine.config import DRAFT_OFF, DraftConfig, GenerationConfig
from vary_cli.engine.requests import Generation, PageRequest


def decode(model, prompts: list[list[int]], features: torch.Tensor | None, gen: GenerationConfig,
           stop_ids: set[int], batch_size: int | None = None, draft: DraftConfig = DRAFT_OFF,
           text_layers: list[list[int]] | None = None, on_token=None) -> list[Generation]:
    """Every prompt decoded by the engine (all in one batch by default), in prompt order.

    `features` (B, N, W) holds one page's image features per prompt (or one for all, or None);
    `text_layers` gives each page a "text layer" as token ids (the engine tokenizes text layers with
    the tokenize callback, which here reads the ids back from a string of them)."""
    def image(i):
        if features is None:
            return None
        return features[i:i + 1] if features.shape[0] == len(prompts) else features[:1]

    def encode(images):
        return None if images[0] is None else torch.cat(images)

    engine = Engine(model, encode, gen, stop_ids, batch_size or len(prompts), on_token=on_token, draft=draft,
                    tokenize=lambda text: [int(t) for t in text.split()])
    requests = [PageRequest(i, image(i), prompt,
                            text_layer=" ".join(map(str, text_layers[i])) if text_layers else None)
                for i, prompt in enumerate(prompts)]
    outcomes = {o.request.key: o for o in engine.run(requests)}
    for outcome in outcomes.values():
        if outcome.error is not None:
            raise outcome.error
    return [outcomes[i].generation for i in range(len(prompts))]
