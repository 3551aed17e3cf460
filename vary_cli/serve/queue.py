"""The pages waiting for the engine, served round-robin between jobs, under a limit over all of them.

Every job, and every synchronous request (/v1/ocr, a chat completion), is a group of `PageTask`s.
`FairQueue.pop` takes the next page of the group after the one served last, so a job of 500 pages and a
job of 1 page that arrive together each get a row at the next free slot; nobody waits behind a whole
document. `add` refuses a group that would take the queue past `limit` pages (`--max-queue-pages`), and
`cancel` drops a group's pending pages at once. Thread-safe: HTTP handlers add and cancel, engine
threads (worker.py) pop and wait.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Callable

from .http import ApiError


@dataclass(frozen=True)
class PageKey:
    """Names one page in the engine: its group (job id), document index and 1-based page number."""

    group: str
    document: int = 0
    page: int = 1


@dataclass
class PageTask:
    """One page to generate and where its result goes.

    `render()` returns the page's RGB image (or raises InputError); `done(result)` gets its PageResult on
    an engine thread; `token(id)`, if set, gets each token as it is chosen (streamed chat completions).
    `source` is the label the PageResult carries; `page` is None for a lone image. `text_layer()` and
    `earlier()` give the drafting sources (`--draft`): the PDF page's own text, and the text of the
    document's last pages finished before this one.
    """

    key: PageKey
    render: Callable[[], Any]
    prompt: str
    max_new_tokens: int
    source: str
    page: int | None
    done: Callable[[Any], None]
    token: Callable[[int], None] | None = None
    text_layer: Callable[[], str | None] | None = None
    earlier: Callable[[], list[str]] | None = None


class FairQueue:
    """Round-robin between groups of pending pages; see the module docstring."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._groups: OrderedDict[str, deque[PageTask]] = OrderedDict()
        self._size = 0
        self._lock = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        return self._size

    def add(self, group: str, tasks: list[PageTask], force: bool = False) -> None:
        """Queue `tasks` at the end of `group` (a new group joins the rotation last). `force` skips the
        limit (jobs accepted before a restart).

        Raises:
            ApiError: 429 when the queue would hold more than `limit` pages.
        """
        with self._lock:
            if not force and self._size + len(tasks) > self.limit:
                raise ApiError(429, f"the queue is full ({self._size} page(s) waiting, at most {self.limit}); "
                                    "try again later", headers={"Retry-After": "30"})
            if tasks:
                self._groups.setdefault(group, deque()).extend(tasks)
                self._size += len(tasks)
                self._lock.notify_all()

    def pop(self) -> PageTask | None:
        """The next page, round-robin between groups; None when nothing waits."""
        with self._lock:
            if not self._groups:
                return None
            group, tasks = next(iter(self._groups.items()))
            task = tasks.popleft()
            self._size -= 1
            if tasks:
                self._groups.move_to_end(group)
            else:
                del self._groups[group]
            return task

    def cancel(self, group: str) -> int:
        """Drop every pending page of `group`; returns how many."""
        with self._lock:
            tasks = self._groups.pop(group, ())
            self._size -= len(tasks)
            return len(tasks)

    def pending(self, group: str) -> int:
        with self._lock:
            return len(self._groups.get(group, ()))

    def wait(self, timeout: float) -> None:
        """Block until a page is queued, `wake` is called or `timeout` seconds pass."""
        with self._lock:
            if not self._groups and not self._closed:
                self._lock.wait(timeout)

    def wake(self) -> None:
        """Wake the waiting engine threads (a cancellation or shutdown for them to see)."""
        with self._lock:
            self._lock.notify_all()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
