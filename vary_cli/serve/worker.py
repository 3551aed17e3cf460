"""Engine threads: each owns one model and one decode engine, and feeds it pages from the fair queue.

A `Worker` keeps at most `batch_size` pages in its engine, so the engine never holds a backlog of its
own and every free row goes to a page `FairQueue.pop` picked shortly before (round-robin between jobs).
Rendering and preprocessing a page (pdftoppm, resizing: CPU work of a few hundred milliseconds) run on a
small thread pool for up to `batch_size` pages ahead, so the engine keeps decoding meanwhile. Each turn
the worker applies cancellations (`engine.cancel` drops a cancelled job's rows at the next step), tops
the engine up, runs one `engine.step()` and hands each finished page's `PageResult` to its task's `done`.
Tokens reach `task.token` as they are chosen (streamed chat completions). HTTP handlers never touch the
engine: they queue pages and read results. The model side (rendering a page into a request, turning an
outcome into a PageResult) is a `Backend` (backend.py).
"""

from __future__ import annotations

import logging
import queue as stdqueue
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Protocol

from ..errors import one_line
from ..render.results import PageResult
from .queue import FairQueue, PageKey, PageTask

log = logging.getLogger("vary.serve")


class Backend(Protocol):
    """What an engine thread needs from the model side."""

    batch_size: int

    def new_engine(self, on_token: Callable[[Any, int], None]) -> Any:
        """A fresh engine (submit/step/cancel/idle) over this backend's model."""

    def request(self, task: PageTask) -> Any:
        """The engine request of `task`, keyed by `task.key`; a page that cannot be rendered carries its error."""

    def result(self, task: PageTask, outcome: Any) -> PageResult:
        """The PageResult of a finished engine outcome."""


def failed_result(task: PageTask, error: BaseException | str, seconds: float = 0.0) -> PageResult:
    """The PageResult of a page that failed outside the engine's own error handling."""
    return PageResult(source=task.source, page=task.page, text="", finish_reason="error", tokens=0,
                      seconds=round(seconds, 3), error=one_line(error)[:300])


class Stats:
    """Counters over all engine threads, for /healthz and the tests: pages, forward passes, shared batches."""

    WINDOW_S = 60.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.pages = self.failed_pages = 0
        self.steps = self.rows = 0
        self.shared_steps = 0  # forward passes whose batch held pages of more than one job or request
        self._active: dict[str, int] = {}  # pages in each engine
        self._finished: deque[float] = deque()

    @property
    def active(self) -> int:
        """Pages in the engines now, over all engine threads."""
        return sum(self._active.values())

    def set_active(self, engine: str, pages: int) -> None:
        self._active[engine] = pages

    def step(self, rows: int, groups: int) -> None:
        with self._lock:
            self.steps += 1
            self.rows += rows
            self.shared_steps += groups > 1

    def page(self, result: PageResult) -> None:
        now = time.monotonic()
        with self._lock:
            self.pages += 1
            self.failed_pages += result.finish_reason == "error"
            self._finished.append(now)
            while self._finished and self._finished[0] < now - self.WINDOW_S:
                self._finished.popleft()

    def pages_per_second(self) -> float:
        """Pages finished over the last minute (or since start, if sooner), per second."""
        now = time.monotonic()
        with self._lock:
            recent = sum(1 for t in self._finished if t >= now - self.WINDOW_S)
        return recent / max(min(self.WINDOW_S, now - self.started), 1e-9)

    def snapshot(self) -> dict:
        with self._lock:
            return {"pages": self.pages, "failed_pages": self.failed_pages, "decode_steps": self.steps,
                    "rows_per_step": round(self.rows / self.steps, 3) if self.steps else 0.0,
                    "shared_steps": self.shared_steps, "active": self.active}


class Worker:
    """One engine thread; see the module docstring."""

    IDLE_WAIT_S = 0.5
    PREPARE_THREADS = 2

    def __init__(self, name: str, backend: Backend, pages: FairQueue, stats: Stats) -> None:
        self.name, self.backend, self.pages, self.stats = name, backend, pages, stats
        self._inflight: dict[PageKey, PageTask] = {}
        self._preparing: deque[tuple[PageTask, Future]] = deque()
        self._pool = ThreadPoolExecutor(self.PREPARE_THREADS, thread_name_prefix=f"{name}-prepare")
        self._cancels: stdqueue.SimpleQueue[str] = stdqueue.SimpleQueue()
        self._stop = threading.Event()
        self.engine: Any = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.pages.wake()
        self.thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def cancel(self, group: str) -> None:
        """Drop `group`'s pages from this engine at its next turn."""
        self._cancels.put(group)
        self.pages.wake()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.engine is None:
                    self.engine = self.backend.new_engine(self._on_token)
                self._apply_cancels()
                self._fill()
                if self.engine.idle:
                    if not self._preparing:
                        self.pages.wait(self.IDLE_WAIT_S)
                    continue
                self.stats.step(len(self._inflight), len({key.group for key in self._inflight}))
                for outcome in self.engine.step():
                    self._finish(outcome)
            except Exception as error:  # noqa: BLE001 - a bug or a lost device must not kill the server
                log.exception("%s: the engine failed; its pages fail and a new engine starts", self.name)
                for task in list(self._inflight.values()):
                    self._deliver(task, failed_result(task, error))
                self._inflight.clear()  # pages still being prepared go into the new engine
                self.engine = None
                time.sleep(self.IDLE_WAIT_S)
            finally:
                self.stats.set_active(self.name, len(self._inflight))

    def _apply_cancels(self) -> None:
        while True:
            try:
                group = self._cancels.get_nowait()
            except stdqueue.Empty:
                return
            self.engine.cancel(lambda key, group=group: key.group == group)
            for key in [key for key in self._inflight if key.group == group]:
                del self._inflight[key]
            self._preparing = deque((task, future) for task, future in self._preparing if task.key.group != group)

    def _fill(self) -> None:
        """Claim pages up to a batch ahead and prepare them; move prepared pages into free rows in order.

        With rows decoding, a page not prepared yet waits for the next turn; with none, the worker waits
        for it (there is nothing else to do).
        """
        size = self.backend.batch_size
        while len(self._inflight) + len(self._preparing) < 2 * size:
            task = self.pages.pop()
            if task is None:
                break
            self._preparing.append((task, self._pool.submit(self.backend.request, task)))
        while self._preparing and len(self._inflight) < size:
            task, future = self._preparing[0]
            if not future.done() and self._inflight:
                return
            self._preparing.popleft()
            try:
                request = future.result()
            except Exception as error:  # noqa: BLE001 - preparing this page failed: it fails alone
                log.exception("%s: could not prepare %s", self.name, task.key)
                self._deliver(task, failed_result(task, error))
                continue
            self._inflight[task.key] = task
            self.engine.submit(request)

    def _finish(self, outcome: Any) -> None:
        task = self._inflight.pop(outcome.request.key, None)
        if task is None:  # cancelled meanwhile
            return
        try:
            result = self.backend.result(task, outcome)
        except Exception as error:  # noqa: BLE001 - decoding the text failed: this page fails, not the thread
            log.exception("%s: could not read the outcome of %s", self.name, task.key)
            result = failed_result(task, error, outcome.seconds)
        self._deliver(task, result)

    def _deliver(self, task: PageTask, result: PageResult) -> None:
        self.stats.page(result)
        try:
            task.done(result)
        except Exception:  # noqa: BLE001 - e.g. a full disk while storing the page; the job reports it
            log.exception("%s: storing the result of %s failed", self.name, task.key)

    def _on_token(self, key: Any, token: int) -> None:
        task = self._inflight.get(key)
        if task is not None and task.token is not None:
            task.token(token)
