"""Bearer-token auth for every route but /healthz and the web page's static shell.

`BearerAuth` is ASGI middleware: with a token set (`--token` or VARY_SERVE_TOKEN), a request without
`Authorization: Bearer <token>` gets 401 `{"error": ...}` before any handler runs. Tokens are compared
as SHA-256 digests with `hmac.compare_digest`, so the time taken tells nothing of the token, not even its
length. The page at `/` and its files hold no data and no power: they load without a token and ask for
one (a browser cannot send a header when it opens a URL), then send it on every API call.
"""

from __future__ import annotations

import hashlib
import hmac
import json

OPEN_PATHS = frozenset({"/healthz", "/", "/favicon.ico"})
OPEN_PREFIXES = ("/static/",)


def token_matches(header: bytes | None, token: str) -> bool:
    """Whether an Authorization header value is `Bearer <token>`, in time independent of both."""
    scheme, _, given = (header or b"").partition(b" ")
    digest = hashlib.sha256(given.strip()).digest()
    expected = hashlib.sha256(token.encode("utf-8")).digest()
    return hmac.compare_digest(digest, expected) & (scheme.lower() == b"bearer")


class BearerAuth:
    """ASGI middleware refusing requests without the bearer token (see the module docstring)."""

    def __init__(self, app, token: str | None) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or self.token is None or _is_open(scope):
            await self.app(scope, receive, send)
            return
        header = next((value for name, value in scope["headers"] if name == b"authorization"), None)
        if token_matches(header, self.token):
            await self.app(scope, receive, send)
            return
        message = "wrong bearer token" if header else "this server needs a token: send Authorization: Bearer TOKEN"
        body = json.dumps({"error": message}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b'Bearer realm="vary"')]})
        await send({"type": "http.response.body", "body": body})


def _is_open(scope) -> bool:
    path = scope["path"]
    # A CORS preflight carries no credentials by design; CORSMiddleware (outside this one) answers it.
    return scope["method"] == "OPTIONS" or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)
