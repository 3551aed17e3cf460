"""A fake engine and backend with the Engine API (submit/step/cancel/idle), for the server's own tests.

The fake "model" writes, for each page, a short text that depends on the prompt and the page image
(its size and mean colour), one character per token and per step, so pages of different lengths decode
side by side as in the real continuous batch. It counts its forward passes and rows like the engine.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from vary_cli.errors import InputError
from vary_cli.render.results import PageResult


@dataclass
class FakeRequest:
    key: Any
    image: Any
    prompt: str
    max_new_tokens: int


@dataclass
class FakeGeneration:
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str = "length"


@dataclass
class FakeOutcome:
    request: FakeRequest
    generation: FakeGeneration | None
    error: BaseException | None
    seconds: float


def page_text(image, prompt: str) -> str:
    """What the fake model 'reads' on a page: its size, its mean grey and a formula."""
    grey = sum(image.convert("L").resize((8, 8)).tobytes()) // 64
    return f"{prompt} {image.width}x{image.height} grey {grey} $x^{{{grey % 7}}}$"


class FakeEngine:
    def __init__(self, batch_size: int, on_token=None, step_seconds: float = 0.002, text=page_text) -> None:
        self.batch_size, self.on_token, self.step_seconds, self.text = batch_size, on_token, step_seconds, text
        self.queued: list[FakeRequest] = []
        self.rows: list[tuple[FakeRequest, list[int], FakeGeneration, float]] = []
        self.forward_passes = self.row_passes = 0

    def submit(self, request: FakeRequest) -> None:
        self.queued.append(request)

    @property
    def idle(self) -> bool:
        return not self.queued and not self.rows

    def cancel(self, match) -> int:
        before = len(self.queued) + len(self.rows)
        self.queued = [r for r in self.queued if not match(r.key)]
        self.rows = [row for row in self.rows if not match(row[0].key)]
        return before - len(self.queued) - len(self.rows)

    def step(self) -> list[FakeOutcome]:
        out = []
        while self.queued and len(self.rows) < self.batch_size:
            request = self.queued.pop(0)
            if isinstance(request.image, BaseException):
                out.append(FakeOutcome(request, None, request.image, 0.0))
                continue
            text = self.text(request.image, request.prompt)
            self.rows.append((request, [ord(c) for c in text], FakeGeneration(), time.perf_counter()))
        if not self.rows:
            return out
        time.sleep(self.step_seconds)
        self.forward_passes += 1
        self.row_passes += len(self.rows)
        still = []
        for request, tokens, generation, started in self.rows:
            generation.token_ids.append(tokens[len(generation.token_ids)])
            if self.on_token:
                self.on_token(request.key, generation.token_ids[-1])
            if len(generation.token_ids) == len(tokens):
                generation.finish_reason = "stop"
            elif len(generation.token_ids) >= request.max_new_tokens:
                generation.finish_reason = "length"
            else:
                still.append((request, tokens, generation, started))
                continue
            out.append(FakeOutcome(request, generation, None, time.perf_counter() - started))
        self.rows = still
        return out


class FakeBackend:
    def __init__(self, batch_size: int = 4, step_seconds: float = 0.002, text=page_text) -> None:
        self.batch_size, self.step_seconds, self.text = batch_size, step_seconds, text
        self.engines: list[FakeEngine] = []
        self.requested: list[Any] = []  # keys of every page handed to an engine
        self.lock = threading.Lock()

    def new_engine(self, on_token) -> FakeEngine:
        engine = FakeEngine(self.batch_size, on_token, self.step_seconds, self.text)
        self.engines.append(engine)
        return engine

    def request(self, task) -> FakeRequest:
        with self.lock:
            self.requested.append(task.key)
        try:
            image = task.render()
        except InputError as error:
            image = error
        return FakeRequest(task.key, image, task.prompt, task.max_new_tokens)

    def result(self, task, outcome) -> PageResult:
        if outcome.error is not None:
            return PageResult(source=task.source, page=task.page, text="", finish_reason="error", tokens=0,
                              seconds=round(outcome.seconds, 3), error=str(outcome.error))
        ids = outcome.generation.token_ids
        return PageResult(source=task.source, page=task.page, text=self.decode(ids),
                          finish_reason=outcome.generation.finish_reason, tokens=len(ids),
                          seconds=round(outcome.seconds, 3))

    def settings(self, prompt: str, max_new_tokens: int) -> str:
        return f"fake|{prompt}|{max_new_tokens}"

    def decode(self, ids: list[int]) -> str:
        return "".join(map(chr, ids))

    def token_bytes(self, ids: list[int]) -> bytes:
        return self.decode(ids).encode("utf-8")

    def prompt_tokens(self, prompt: str) -> int:
        return 10 + len(prompt)

    def info(self) -> dict:
        return {"model": "fake", "device": "cpu", "dtype": "float32"}
