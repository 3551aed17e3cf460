"""events.py: readers follow a log written from other threads, from any index, and stop at `done`."""

import asyncio
import threading

from vary_cli.serve.events import EventLog, sse


def test_a_reader_gets_past_and_future_events_then_stops_at_done():
    log = EventLog()
    log.publish("page", {"page": 1})

    async def read(start):
        seen = []
        async for event in log.follow(start, keepalive=5):
            seen.append((event.index, event.kind))
        return seen

    async def main():
        reader = asyncio.create_task(read(0))
        late = asyncio.create_task(read(1))
        await asyncio.sleep(0.05)
        threading.Thread(target=lambda: (log.publish("page", {"page": 2}), log.publish("done", {}))).start()
        return await reader, await late

    first, second = asyncio.run(main())
    assert first == [(0, "page"), (1, "page"), (2, "done")]
    assert second == [(1, "page"), (2, "done")]
    assert not log._waiters and log.closed


def test_keepalive_and_format():
    log = EventLog()

    async def first():
        async for event in log.follow(0, keepalive=0.01):
            return event

    assert asyncio.run(first()) is None
    assert sse(None) == b": keep-alive\n\n"
    log.publish("page", {"text": "é"})
    assert sse(log.snapshot()[0]) == 'id: 0\nevent: page\ndata: {"text": "é"}\n\n'.encode()
