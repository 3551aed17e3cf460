"""One line per request in the Combined Log Format, on the `vary.serve.access` logger.

`AccessLog` is the outermost ASGI middleware, so it sees every response, the 401s of auth.py and the
413s of an upload cut off included. `vary serve` routes the logger to stderr; uvicorn's own access log
is off.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("vary.serve.access")


class AccessLog:
    """`host - - [time] "METHOD /path HTTP/1.1" status bytes "referer" "user-agent" seconds`."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status, size = 0, 0

        async def counting_send(message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            log.info(format_line(scope, status or 500, size, time.perf_counter() - started))


def format_line(scope, status: int, size: int, seconds: float) -> str:
    client = scope.get("client") or ("-", 0)
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}
    target = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
    if scope.get("query_string"):
        target += "?" + scope["query_string"].decode("latin-1")
    when = time.strftime("%d/%b/%Y:%H:%M:%S %z")
    return (f'{client[0]} - - [{when}] "{scope["method"]} {target} HTTP/{scope.get("http_version", "1.1")}" '
            f'{status} {size or "-"} "{headers.get("referer", "-")}" "{headers.get("user-agent", "-")}" '
            f"{seconds:.3f}")
