"""Events written by engine threads and read by async handlers: a job's pages, a request's tokens.

`EventLog` is append-only and thread-safe: `publish` may be called from any thread, and `follow` is an
async iterator that replays the log from an index and then waits for new events, so a client that
connects late (or reconnects with Last-Event-ID) misses nothing. `sse` formats one event as a
server-sent event. Used by jobs.py (page events), the /events route and chat completions.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from typing import Any, AsyncIterator

KEEPALIVE_S = 15.0  # an SSE comment this often, so idle streams survive proxies and dead clients are found


@dataclass(frozen=True)
class Event:
    index: int
    kind: str
    data: Any


class EventLog:
    """An append-only list of events that async readers follow as it grows; see the module docstring.

    An event whose kind is in `final` ends every reader's iteration after it is delivered.
    """

    def __init__(self, final: tuple[str, ...] = ("done",)) -> None:
        self.final = final
        self._events: list[Event] = []
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def __len__(self) -> int:
        return len(self._events)

    @property
    def closed(self) -> bool:
        return bool(self._events) and self._events[-1].kind in self.final

    def publish(self, kind: str, data: Any) -> None:
        """Append an event and wake every reader (from any thread)."""
        with self._lock:
            self._events.append(Event(len(self._events), kind, data))
            waiters = list(self._waiters)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that reader's loop has closed
                pass

    def snapshot(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    async def follow(self, start: int = 0, keepalive: float | None = KEEPALIVE_S) -> AsyncIterator[Event | None]:
        """Events from index `start` on, as they come; None every `keepalive` seconds of silence."""
        wake = asyncio.Event()
        waiter = (asyncio.get_running_loop(), wake)
        with self._lock:
            self._waiters.add(waiter)
        try:
            while True:
                wake.clear()  # before reading: a publish after the read sets it again
                with self._lock:
                    batch = self._events[start:]
                for event in batch:
                    yield event
                    if event.kind in self.final:
                        return
                start += len(batch)
                try:
                    await asyncio.wait_for(wake.wait(), keepalive)
                except asyncio.TimeoutError:
                    yield None
        finally:
            with self._lock:
                self._waiters.discard(waiter)


def sse(event: Event | None, data: Any = None) -> bytes:
    """One server-sent event (`id`, `event`, `data` lines), or a keep-alive comment for None."""
    if event is None:
        return b": keep-alive\n\n"
    payload = json.dumps(event.data if data is None else data, ensure_ascii=False)
    return f"id: {event.index}\nevent: {event.kind}\ndata: {payload}\n\n".encode("utf-8")
