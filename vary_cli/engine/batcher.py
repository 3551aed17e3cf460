"""The one decode engine: continuous batching over a per-row KV cache, with speculative drafting.

Up to `batch_size` pages decode together, and a page that stops (stop id, length, repetition guard,
error) frees its row for the next page at once: real pages range from a few dozen to 2,000+ tokens, and
a static batch would idle the rows of its short pages. Each row has its own length in the cache
(`cache.RowKVCache`), its own positions, NTK alpha and log-n factors, so greedy output is token for
token what a page gets decoded alone, whatever the arrival order or batch size. A new page is encoded
and prefilled on its own (pages whose prompts have one length together) and its keys copied into a
free row. `refill=False` gives static batching with the same engine (admit a batch, drain it, admit the
next), for the benchmark.

With drafting on (greedy only, see `DraftConfig`), each pass feeds every row its last token plus that
row's draft (`draft.RowDrafter`); rows with shorter drafts are padded. The model's argmax at each fed
position says which draft tokens it would have chosen itself: a row takes its longest agreeing prefix
plus the model's next token, one by one through the same stop, length and repetition checks as one-token
steps, and its cache keeps just those positions. The verified positions are the positions a one-token
step would give them, so rotary angles, NTK alpha and log-n factors are unchanged, and so are the tokens.

Callers: `convert/` (convert, ocr, the Python API), `eval run` and `vary train --eval-generate` through
`convert.pipeline`, and `vary serve` through `submit`/`step`/`cancel`. No file I/O.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, Callable, Iterable, Iterator

import torch

from ..errors import PromptError, VaryError
from ..models.vary_qwen import attention_bias
from .cache import RowKVCache
from .config import DRAFT_OFF, DraftConfig, GenerationConfig
from .draft import RowDrafter
from .guard import RepetitionGuard
from .requests import Generation, PageOutcome, PageRequest
from .sampling import new_generator, select_next

Encode = Callable[[list[Any]], torch.Tensor]  # page inputs -> image features (B, N, W)
TokenCallback = Callable[[Any, int], None]  # (request key, token id), for every token a page keeps
Tokenize = Callable[[str], list[int]]  # text -> the model's token ids (drafts from a text layer)
FAILURES = (RuntimeError, VaryError, ValueError)  # out of memory, a bad page, ...: that page fails, not the run


@dataclass
class _Row:
    request: PageRequest
    steps: int  # most tokens this page may generate
    alpha: float
    guard: RepetitionGuard | None
    drafter: RowDrafter | None
    started: float
    generation: Generation = field(default_factory=Generation)
    last: int = 0  # the token chosen last, fed in at the next pass


class Engine:
    """Runs `PageRequest`s through one model, up to `batch_size` at a time; see the module docstring.

    Two ways to drive it: `run(requests)` pulls requests lazily and yields outcomes as pages stop; or
    `submit` requests from anywhere in the owning thread and call `step()` (admit, then one forward pass)
    in a loop, `cancel` dropping queued and running pages (the server).
    """

    def __init__(self, model: torch.nn.Module, encode: Encode, gen: GenerationConfig, stop_ids: set[int],
                 batch_size: int, refill: bool = True, on_token: TokenCallback | None = None,
                 draft: DraftConfig = DRAFT_OFF, tokenize: Tokenize | None = None) -> None:
        if batch_size < 1:
            raise VaryError(f"--batch-size must be at least 1, got {batch_size}")
        self.model, self.encode, self.gen, self.stop_ids = model, encode, gen, stop_ids
        self.batch_size, self.refill, self.on_token = batch_size, refill, on_token
        self.draft = draft if gen.greedy else DRAFT_OFF  # sampling draws one token per pass
        self.tokenize = tokenize
        self.stop_id = min(stop_ids)
        self.device = model.embed_tokens.weight.device
        self.generator = new_generator(gen)
        self.pending: deque[PageRequest] = deque()
        self.rows: list[_Row] = []
        self.cache: RowKVCache | None = None
        # For the benchmarks and the run summary: forward passes of the batch, rows in them, tokens kept.
        self.forward_passes = self.row_passes = self.tokens = 0

    # ---- driving it -------------------------------------------------------------------------------

    def submit(self, request: PageRequest) -> None:
        self.pending.append(request)

    @property
    def idle(self) -> bool:
        return not self.pending and not self.rows

    def free_rows(self) -> int:
        return self.batch_size - len(self.rows) if self.refill or not self.rows else 0

    def cancel(self, match: Callable[[Any], bool]) -> int:
        """Drop every queued and running page whose key satisfies `match`; how many were dropped."""
        kept = deque(request for request in self.pending if not match(request.key))
        dropped = len(self.pending) - len(kept)
        self.pending = kept
        for slot in reversed(range(len(self.rows))):
            if match(self.rows[slot].request.key):
                self._remove(slot)
                dropped += 1
        return dropped

    @torch.inference_mode()
    def step(self) -> list[PageOutcome]:
        """Admit queued pages into free rows, then decode one pass; the outcomes of pages that stopped."""
        outcomes: list[PageOutcome] = []
        while self.pending and self.free_rows():
            outcomes += self._admit([self.pending.popleft() for _ in range(min(self.free_rows(), len(self.pending)))])
        if self.rows:
            outcomes += self._decode()
        return outcomes

    def run(self, requests: Iterable[PageRequest]) -> Iterator[PageOutcome]:
        """Yield each request's outcome as its page stops (not in arrival order)."""
        source = iter(requests)
        exhausted = False
        while True:
            while not exhausted and len(self.pending) < self.free_rows():
                request = next(source, None)
                if request is None:
                    exhausted = True
                else:
                    self.pending.append(request)
            if self.idle:
                if exhausted:
                    return
                continue
            yield from self.step()

    # ---- admission: encode, prefill, first token ----------------------------------------------------

    def _admit(self, requests: list[PageRequest]) -> list[PageOutcome]:
        """Encode and prefill new pages (same prompt length together); outcomes of pages that already
        stopped or failed. A failing group is retried page by page, so only the page at fault fails."""
        outcomes: list[PageOutcome] = []
        groups: dict[int, list[PageRequest]] = {}
        for request in requests:
            if isinstance(request.image, BaseException):  # the page could not even be rendered
                outcomes.append(PageOutcome(request, None, request.image, 0.0))
            else:
                groups.setdefault(len(request.prompt_ids), []).append(request)
        for group in groups.values():
            try:
                outcomes += self._prefill(group)
            except FAILURES as error:
                if len(group) == 1:
                    outcomes.append(PageOutcome(group[0], None, error, 0.0))
                    continue
                for request in group:
                    try:
                        outcomes += self._prefill([request])
                    except FAILURES as single_error:
                        outcomes.append(PageOutcome(request, None, single_error, 0.0))
        return outcomes

    def _prefill(self, group: list[PageRequest]) -> list[PageOutcome]:
        started = time.perf_counter()
        model, width = self.model, len(group[0].prompt_ids)
        context = getattr(model, "max_positions", None)  # OPT's position table
        if context is not None and width >= context:
            raise PromptError(f"the prompt has {width} tokens; this model reads at most {context}")
        features = self.encode([request.image for request in group])  # (g, N, W)
        ids = torch.tensor([request.prompt_ids for request in group], device=self.device)  # (g, T)
        positions = torch.arange(width, device=self.device)[None].expand(len(group), width)  # (g, T)
        alphas = model.prompt_alphas([width] * len(group))
        prefill = model.new_cache(len(group), width)
        embeds = model.embed(ids, features)  # (g, T, W)
        pad = torch.zeros(len(group), dtype=torch.long, device=self.device)
        last = torch.zeros(len(group), width, dtype=torch.bool, device=self.device)
        last[:, -1] = True
        logits = model(embeds, positions, attention_bias(pad, 0, width, width, embeds.dtype), alphas, prefill,
                       read_at=last)  # (g, V)
        firsts = select_next(logits.float(), self.gen, self.generator).tolist()
        self.forward_passes += 1
        self.row_passes += len(group)
        # Nothing joins the batch before the whole group is through: a failing group is retried page by page.
        rows = [self._new_row(request, alpha, started, width) for request, alpha in zip(group, alphas)]
        outcomes = []
        for index, (row, token) in enumerate(zip(rows, firsts)):
            row.generation.forward_passes = 1
            if self._take(row, token):
                outcomes.append(self._outcome(row))
                continue
            need = width + row.steps + self.draft.max_tokens + 1
            if self.cache is None:
                self.cache = RowKVCache(model, self.batch_size, need)
            elif self.cache.capacity < need:
                self.cache = self.cache.grown(model, self.batch_size, need)
            self.cache.add_row(prefill, index, width)
            self.rows.append(row)
        return outcomes

    def _new_row(self, request: PageRequest, alpha: float, started: float, prompt_length: int) -> _Row:
        steps = min(self.gen.max_new_tokens, request.max_new_tokens or self.gen.max_new_tokens)
        context = getattr(self.model, "max_positions", None)
        if context is not None:
            steps = min(steps, context - prompt_length)  # the page ends with finish_reason "length" there
        gen = self.gen
        guard = (RepetitionGuard(gen.repetition_span, gen.repetition_max_period, gen.repetition_min_repeats)
                 if gen.repetition_span else None)
        return _Row(request, steps, alpha, guard, self._drafter(request), started)

    def _drafter(self, request: PageRequest) -> RowDrafter | None:
        mode = self.draft.mode
        if mode == "off":
            return None
        text = None
        if mode in ("text-layer", "auto") and request.text_layer and request.text_layer.strip() and self.tokenize:
            text = self.tokenize(request.text_layer)
        ngram = mode in ("ngram", "auto")
        drafter = RowDrafter(self.draft, text, request.earlier_pages if ngram else (), own_output=ngram)
        return drafter if drafter.has_sources else None

    # ---- decoding: one forward pass for every row, drafts verified ----------------------------------

    def _decode(self) -> list[PageOutcome]:
        try:
            return self._verify_pass()
        except FAILURES as error:  # out of memory, a callback's error, ...: find the page at fault
            return self._fallback(error)

    def _verify_pass(self) -> list[PageOutcome]:
        rows, cache, model = self.rows, self.cache, self.model
        drafts = [row.drafter.propose(row.generation.token_ids, row.steps - len(row.generation.token_ids) - 1)
                  if row.drafter else [] for row in rows]
        width = 1 + max(len(draft) for draft in drafts)
        slots = cache.begin_step(width)  # (n, width): each fed token's cache slot = its position
        fed = torch.tensor([[row.last] + draft + [row.last] * (width - 1 - len(draft))
                            for row, draft in zip(rows, drafts)], device=self.device)  # (n, width)
        # A padded column repeats the row's last real position: a position no one-token step would skip
        # past (OPT's table ends), and its output is never read.
        real = torch.tensor([len(draft) for draft in drafts], device=self.device)[:, None]  # (n, 1)
        positions = torch.minimum(slots, slots[:, :1] + real)
        embeds = model.embed(fed, None)  # (n, width, W)
        # Logits of each row's fed token and draft only: a padded column's would be read by no one.
        read = torch.arange(width, device=self.device)[None] <= real  # (n, width)
        logits = model(embeds, positions, cache.bias(embeds.dtype), [row.alpha for row in rows], cache,
                       read_at=read)  # (K, V), K = n + the drafts' tokens
        if width == 1:
            chosen = select_next(logits.float(), self.gen, self.generator)[:, None].tolist()
        else:
            flat = logits.argmax(dim=-1).tolist()  # (K,): greedy, the only mode that drafts
            ends = list(accumulate(len(draft) + 1 for draft in drafts))
            chosen = [flat[end - len(draft) - 1:end] for draft, end in zip(drafts, ends)]
        self.forward_passes += 1
        self.row_passes += len(rows)
        stopped, kept = [], []
        for slot, (row, draft, choices) in enumerate(zip(rows, drafts, chosen)):
            row.generation.forward_passes += 1
            accepted = 0  # draft tokens equal to the model's own choice, in order
            while accepted < len(draft) and draft[accepted] == choices[accepted]:
                accepted += 1
            if draft:
                row.drafter.feedback(len(draft), accepted)
            for i in range(accepted + 1):  # the agreeing draft tokens, then the model's next token
                if self._take(row, choices[i]):
                    stopped.append(slot)
                    break
                if i < accepted:
                    row.generation.draft_tokens_accepted += 1
            kept.append(accepted + 1)  # the fed last token and the accepted drafts have valid keys
        cache.keep(kept)
        outcomes = []
        for slot in reversed(stopped):  # from the end: slots below stay valid
            outcomes.append(self._outcome(self.rows[slot]))
            self._remove(slot)
        return outcomes

    def _take(self, row: _Row, token: int) -> bool:
        """Record the token chosen for `row`; True when its page stops here."""
        generation = row.generation
        if row.request.stop_after is not None and len(generation.token_ids) >= row.request.stop_after:
            token = self.stop_id
        if token in self.stop_ids:
            generation.finish_reason = "stop"
            return True
        generation.token_ids.append(token)
        self.tokens += 1
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

    def _outcome(self, row: _Row) -> PageOutcome:
        return PageOutcome(row.request, row.generation, None, time.perf_counter() - row.started)

    def _remove(self, slot: int) -> None:
        self.cache.remove_row(slot)
        self.rows[slot] = self.rows[-1]
        self.rows.pop()

    def _fallback(self, error: BaseException) -> list[PageOutcome]:
        """A pass failed: a lone page fails with the error; a batch is redone one page at a time, from the
        start, so only the page at fault fails."""
        rows, self.rows = self.rows, []
        self.cache.lengths.clear()
        if len(rows) == 1:
            return [PageOutcome(rows[0].request, None, error, time.perf_counter() - rows[0].started)]
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        alone = Engine(self.model, self.encode, self.gen, self.stop_ids, 1, True, self.on_token, self.draft,
                       self.tokenize)
        alone.generator = self.generator
        outcomes = list(alone.run(row.request for row in rows))
        self.forward_passes += alone.forward_passes
        self.row_passes += alone.row_passes
        self.tokens += alone.tokens
        return outcomes
