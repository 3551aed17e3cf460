"""Canned-output mock models that speak the engine's model protocol (embed, forward, new_cache, prompt_alphas).

`TableModel` chooses each next token from the token it is fed (a fixed table), so its greedy output is
known in advance, pages start from their prompt's last token, and drafts can be built to be right, wrong
or right for a while; it writes its inputs into the cache the way real attention layers do.
"""

import torch

VOCAB = 128


class _Cache:
    def __init__(self, batch, capacity):
        self.keys = [torch.zeros(batch, 1, capacity, 1)]
        self.values = [torch.zeros(batch, 1, capacity, 1)]
        self.length = 0

    def update(self, layer, key, value):
        end = self.length + key.shape[2]
        self.keys[layer][:, :, self.length:end] = key
        self.values[layer][:, :, self.length:end] = value
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, n):
        self.length += n


class TableModel(torch.nn.Module):
    """next token = table[fed token]; `scores` (V, V) is its logit table (10 for the chosen token)."""

    def __init__(self, table: dict[int, int], max_positions: int | None = None):
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(VOCAB, 1)
        self.scores = torch.full((VOCAB, VOCAB), -1.0)
        for token in range(VOCAB):
            self.scores[token, table.get(token, 99)] = 10.0
        if max_positions is not None:
            self.max_positions = max_positions
        self.passes = []  # (rows, tokens per row) of every forward pass
        self.read = []  # positions whose logits each pass returned

    def embed(self, ids, features):
        return ids[..., None].float()  # (B, T, 1): the token ids themselves

    def prompt_alphas(self, lengths):
        return [1.0] * len(lengths)

    def new_cache(self, batch, capacity):
        return _Cache(batch, capacity)

    def forward(self, embeds, positions, bias, alphas, cache=None, read_at=None):
        if getattr(self, "max_positions", None) is not None:
            assert int(positions.max()) < self.max_positions, "a position past the model's table"
        self.passes.append(tuple(embeds.shape[:2]))
        self.read.append(embeds.shape[0] * embeds.shape[1] if read_at is None else int(read_at.sum()))
        ids = embeds[..., 0].long()  # (B, T)
        if cache is not None:
            key = embeds[:, None]  # (B, 1, T, 1)
            cache.update(0, key, key)
            cache.advance(embeds.shape[1])
        logits = self.scores[ids]  # (B, T, V)
        return logits if read_at is None else logits[read_at]  # (B, T, V) or (K, V)


def chain(start: int, length: int, then: int | None = None) -> dict[int, int]:
    """A table entry run start -> start+1 -> ... (length tokens), then `then` (e.g. a stop id)."""
    table = {start + i: start + i + 1 for i in range(length - 1)}
    if then is not None:
        table[start + length - 1] = then
    return table
