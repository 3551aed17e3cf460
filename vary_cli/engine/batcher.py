"""Continuous batching: keep up to `batch_size` pages decoding, and start the next page in a row as soon
as its page stops (stop id, length, repetition guard, error).

A static batch decodes until its longest page stops, so the rows of short pages idle; real pages range
from a few dozen to 2,000+ tokens. Here each row of the batch has its own length in a padded KV cache
(`RowKVCache`): a decode step writes every row's new key and value at that row's own length, and each
row attends to its own keys only (an additive mask per row). A new page is encoded and prefilled on its
own (pages whose prompts have one length are prefilled together) and its keys are copied into a free
row; its positions, NTK alpha and log-n factors are its own, so greedy output is token for token what
`generate()` gives at batch size 1, whatever the arrival order or batch size.

`refill=False` gives static batching with the same engine (admit a batch, drain it, admit the next), for
the benchmark. Used by `convert/stream.py`; no file I/O.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import torch

from ..errors import PromptError, VaryError
from ..models.vary_qwen import KVCache, attention_bias
from .generate import Generation, GenerationConfig, RepetitionGuard, select_next


@dataclass
class PageRequest:
    """One page to generate: `key` names it to the caller, `image` is what `encode` reads."""

    key: Any
    image: Any
    prompt_ids: list[int]
    stop_after: int | None = None
    """Bench/test hook: choose a stop id in place of token `stop_after + 1` (the same forward passes as a
    page whose text stops there), so a benchmark can draw page lengths from a distribution."""


@dataclass
class PageOutcome:
    """What became of one request: its generation, or the error that failed it."""

    request: PageRequest
    generation: Generation | None
    error: BaseException | None
    seconds: float


Encode = Callable[[list[Any]], torch.Tensor]  # page images -> image features (B, N, W)
TokenCallback = Callable[[Any, int], None]  # (request key, token id)


class RowKVCache:
    """Key/value buffers (rows, heads, capacity, head_dim) per layer where every row has its own length.

    The model's attention calls `update` once per layer in a decode step; `begin_step` sets the write
    index of each active row (its length) beforehand. Buffers start zeroed: the keys past a row's length
    are masked out, and a zero (not uninitialised memory, which may hold NaNs) times a zero weight is 0.
    """

    def __init__(self, model: torch.nn.Module, rows: int, capacity: int) -> None:
        probe = model.new_cache(1, 1)  # the family's layer, head and dtype layout
        n_layers, (_, heads, _, head_dim) = len(probe.keys), probe.keys[0].shape
        dtype, device = probe.keys[0].dtype, probe.keys[0].device
        shape = (rows, heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.capacity = capacity
        self.lengths: list[int] = []  # tokens stored, per active row (rows 0 .. n-1)
        self._rows = self._index = torch.zeros(0, dtype=torch.long, device=device)
        self._end = 0

    def begin_step(self) -> None:
        device = self.keys[0].device
        n = len(self.lengths)
        self._rows = torch.arange(n, device=device)
        self._index = torch.tensor(self.lengths, device=device)  # (n,): where each row's new token goes
        self._end = max(self.lengths) + 1

    def update(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.lengths)
        self.keys[layer][self._rows, :, self._index] = key[:, :, 0]  # key (n, H, 1, D)
        self.values[layer][self._rows, :, self._index] = value[:, :, 0]
        return self.keys[layer][:n, :, :self._end], self.values[layer][:n, :, :self._end]

    def advance(self, n: int) -> None:
        """Called by the model's forward once all layers wrote the step's keys."""
        self.lengths = [length + n for length in self.lengths]

    def bias(self, dtype: torch.dtype) -> torch.Tensor:
        """Additive mask (n, 1, 1, end) of a decode step: row r sees its keys 0 .. lengths[r]."""
        k_index = torch.arange(self._end, device=self._index.device)[None]  # (1, end)
        bias = torch.zeros((len(self.lengths), self._end), dtype=dtype, device=self._index.device)
        bias.masked_fill_(k_index > self._index[:, None], torch.finfo(dtype).min)
        return bias[:, None, None]

    def add_row(self, prefill: KVCache, row: int, length: int) -> None:
        """Append row `row` of a prefill cache (its first `length` tokens) as a new active row."""
        slot = len(self.lengths)
        for ours, theirs in ((self.keys, prefill.keys), (self.values, prefill.values)):
            for layer, buffer in enumerate(ours):
                buffer[slot, :, :length] = theirs[layer][row, :, :length]
        self.lengths.append(length)

    def remove_row(self, slot: int) -> None:
        """Drop active row `slot`; the last active row moves into its place (one row's copy)."""
        last = len(self.lengths) - 1
        if slot != last:
            end = self.lengths[last]
            for buffer in self.keys + self.values:
                buffer[slot, :, :end] = buffer[last, :, :end]
            self.lengths[slot] = self.lengths[last]
        self.lengths.pop()


@dataclass
class _Row:
    request: PageRequest
    steps: int  # most tokens this page may generate
    alpha: float
    guard: RepetitionGuard | None
    started: float
    generation: Generation = field(default_factory=Generation)
    last: int = 0  # the token chosen last, fed in at the next step


class ContinuousBatcher:
    """Runs `PageRequest`s through one model, up to `batch_size` at a time; see the module docstring."""

    def __init__(self, model: torch.nn.Module, encode: Encode, gen: GenerationConfig, stop_ids: set[int],
                 batch_size: int, refill: bool = True, on_token: TokenCallback | None = None) -> None:
        if batch_size < 1:
            raise VaryError(f"--batch-size must be at least 1, got {batch_size}")
        self.model, self.encode, self.gen, self.stop_ids = model, encode, gen, stop_ids
        self.batch_size, self.refill, self.on_token = batch_size, refill, on_token
        self.stop_id = min(stop_ids)
        self.device = model.embed_tokens.weight.device
        self.decode_steps = self.row_steps = 0  # forward passes of the batch, and rows in them (for bench/)
        self.generator = None
        if not gen.greedy:
            self.generator = torch.Generator().manual_seed(gen.seed if gen.seed is not None else torch.seed())

    @torch.inference_mode()
    def run(self, requests: Iterable[PageRequest]) -> Iterator[PageOutcome]:
        """Yield each request's outcome as its page stops (not in arrival order)."""
        pending = iter(requests)
        rows: list[_Row] = []
        cache: RowKVCache | None = None
        exhausted = False
        while True:
            if not exhausted and (self.refill or not rows) and len(rows) < self.batch_size:
                admitted: list[PageRequest] = []
                for request in pending:
                    admitted.append(request)
                    if len(rows) + len(admitted) == self.batch_size:
                        break
                else:
                    exhausted = True
                for outcome in self._admit(admitted, rows):
                    if isinstance(outcome, PageOutcome):
                        yield outcome
                    else:  # (row, prefill cache, index in it)
                        row, prefill, index = outcome
                        need = len(row.request.prompt_ids) + row.steps
                        if cache is None or cache.capacity < need:
                            cache = self._grow(cache, rows, need)
                        cache.add_row(prefill, index, len(row.request.prompt_ids))
                        rows.append(row)
                if not exhausted and self.refill and len(rows) < self.batch_size:
                    continue  # pages that stopped at their first token: admit more before decoding
            if not rows:
                if exhausted:
                    return
                continue
            try:
                finished = self._decode_step(rows, cache)
            except (RuntimeError, VaryError, ValueError) as error:  # out of memory, a bad page, ...
                yield from self._fallback(rows, error)
                rows.clear()
                cache.lengths.clear()
                continue
            for slot in sorted(finished, reverse=True):  # remove from the end: slots below stay valid
                row = rows[slot]
                cache.remove_row(slot)
                rows[slot] = rows[-1]
                rows.pop()
                yield PageOutcome(row.request, row.generation, None, time.perf_counter() - row.started)

    def _grow(self, cache: RowKVCache | None, rows: list[_Row], capacity: int) -> RowKVCache:
        bigger = RowKVCache(self.model, self.batch_size, capacity)
        if cache is not None:  # a longer prompt than before arrived: carry the active rows over
            for layer, buffer in enumerate(cache.keys):
                bigger.keys[layer][:, :, :cache.capacity] = buffer
                bigger.values[layer][:, :, :cache.capacity] = cache.values[layer]
            bigger.lengths = list(cache.lengths)
        return bigger

    def _admit(self, requests: list[PageRequest], rows: list[_Row]) -> Iterator[PageOutcome | tuple]:
        """Encode and prefill new pages (same prompt length together); yield an outcome for each page that
        already stopped or failed, and (row, prefill cache, index) for each page that goes on decoding."""
        groups: dict[int, list[PageRequest]] = {}
        for request in requests:
            if isinstance(request.image, BaseException):  # the page could not even be rendered
                yield PageOutcome(request, None, request.image, 0.0)
            else:
                groups.setdefault(len(request.prompt_ids), []).append(request)
        for group in groups.values():
            try:
                yield from self._prefill(group)
            except (RuntimeError, VaryError, ValueError) as error:
                if len(group) == 1:
                    yield PageOutcome(group[0], None, error, 0.0)
                    continue
                for request in group:  # find the page that fails; the others go on
                    try:
                        yield from self._prefill([request])
                    except (RuntimeError, VaryError, ValueError) as single_error:
                        yield PageOutcome(request, None, single_error, 0.0)

    def _prefill(self, group: list[PageRequest]) -> Iterator[PageOutcome | tuple]:
        started = time.perf_counter()
        model, width = self.model, len(group[0].prompt_ids)
        steps = self.gen.max_new_tokens
        context = getattr(model, "max_positions", None)  # OPT's position table
        if context is not None:
            if width >= context:
                raise PromptError(f"the prompt has {width} tokens; this model reads at most {context}")
            steps = min(steps, context - width)
        features = self.encode([request.image for request in group])  # (g, N, W)
        ids = torch.tensor([request.prompt_ids for request in group], device=self.device)  # (g, T)
        positions = torch.arange(width, device=self.device)[None].expand(len(group), width)  # (g, T)
        alphas = model.prompt_alphas([width] * len(group))
        prefill = model.new_cache(len(group), width)
        embeds = model.embed(ids, features)  # (g, T, W)
        pad = torch.zeros(len(group), dtype=torch.long, device=self.device)
        logits = model(embeds, positions, attention_bias(pad, 0, width, width, embeds.dtype), alphas, prefill,
                       last_only=True)
        firsts = select_next(logits[:, -1].float(), self.gen, self.generator).tolist()
        rows = []
        for index, (request, alpha, token) in enumerate(zip(group, alphas, firsts)):
            guard = (RepetitionGuard(self.gen.repetition_span, self.gen.repetition_max_period,
                                     self.gen.repetition_min_repeats) if self.gen.repetition_span else None)
            rows.append((_Row(request, steps, alpha, guard, started), index, token))
        # Nothing is yielded before the whole group is through: a failing group is retried page by page.
        outcomes = [PageOutcome(row.request, row.generation, None, time.perf_counter() - row.started)
                    if self._take(row, token) else (row, prefill, index) for row, index, token in rows]
        yield from outcomes

    def _take(self, row: _Row, token: int) -> bool:
        """Record the token chosen for `row`; True when its page stops here."""
        generation = row.generation
        if row.request.stop_after is not None and len(generation.token_ids) >= row.request.stop_after:
            token = self.stop_id
        if token in self.stop_ids:
            generation.finish_reason = "stop"
            return True
        generation.token_ids.append(token)
        if self.on_token:
            self.on_token(row.request.key, token)
        keep = row.guard.feed(token) if row.guard else None
        if keep is not None:
            del generation.token_ids[keep:]
            generation.finish_reason = "repetition"
            return True
        row.last = token
        if len(generation.token_ids) >= row.steps:
            generation.finish_reason = "length"
            return True
        return False

    def _decode_step(self, rows: list[_Row], cache: RowKVCache) -> list[int]:
        """One token for every active row; the slots of the rows whose pages stopped."""
        model = self.model
        self.decode_steps += 1
        self.row_steps += len(rows)
        cache.begin_step()
        tokens = torch.tensor([[row.last] for row in rows], device=self.device)  # (n, 1)
        positions = cache._index[:, None]  # (n, 1): no padding, so a row's position is its length
        embeds = model.embed(tokens, None)  # (n, 1, W)
        logits = model(embeds, positions, cache.bias(embeds.dtype), [row.alpha for row in rows], cache)
        chosen = select_next(logits[:, -1].float(), self.gen, self.generator).tolist()  # the model advanced the cache
        return [slot for slot, (row, token) in enumerate(zip(rows, chosen)) if self._take(row, token)]

    def _fallback(self, rows: list[_Row], error: BaseException) -> Iterator[PageOutcome]:
        """A decode step failed: a lone page fails with the error; a batch is redone one page at a time,
        from the start, so only the page at fault fails."""
        if len(rows) == 1:
            yield PageOutcome(rows[0].request, None, error, time.perf_counter() - rows[0].started)
            return
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        alone = ContinuousBatcher(self.model, self.encode, self.gen, self.stop_ids, 1, True, self.on_token)
        alone.generator = self.generator
        for row in rows:
            yield from alone.run([row.request])
