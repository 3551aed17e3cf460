"""auth.py: bearer tokens compared in constant time; accesslog.py: one line per request."""

import asyncio

from vary_cli.serve.accesslog import format_line
from vary_cli.serve.auth import BearerAuth, token_matches


def test_token_matches_only_the_exact_bearer_token():
    assert token_matches(b"Bearer s3cret", "s3cret")
    assert token_matches(b"bearer s3cret", "s3cret")
    assert not token_matches(b"Bearer s3cre", "s3cret")
    assert not token_matches(b"Bearer s3cret2", "s3cret")
    assert not token_matches(b"Basic s3cret", "s3cret")
    assert not token_matches(None, "s3cret")
    assert not token_matches(b"", "s3cret")


def call(middleware, path, headers=(), method="GET"):
    sent = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "path": path, "method": method, "headers": list(headers)}
    asyncio.run(middleware(app)(scope, None, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_the_middleware_guards_the_api_but_not_health_or_the_page():
    def guarded(app):
        return BearerAuth(app, "tok")

    assert call(guarded, "/v1/models")[0] == 401
    status, body = call(guarded, "/v1/models", [(b"authorization", b"Bearer nope")])
    assert status == 401 and b"wrong bearer token" in body
    assert call(guarded, "/v1/models", [(b"authorization", b"Bearer tok")])[0] == 200
    assert call(guarded, "/healthz")[0] == 200
    assert call(guarded, "/")[0] == 200 and call(guarded, "/static/app.js")[0] == 200
    assert call(lambda app: BearerAuth(app, None), "/v1/models")[0] == 200


def test_access_line_has_the_combined_log_fields():
    scope = {"type": "http", "path": "/v1/jobs/x", "query_string": b"format=md", "method": "GET",
             "http_version": "1.1", "client": ("127.0.0.1", 5000), "headers": [(b"user-agent", b"curl/8")]}
    line = format_line(scope, 200, 12, 0.0042)
    assert line.startswith('127.0.0.1 - - [') and '"GET /v1/jobs/x?format=md HTTP/1.1" 200 12 "-" "curl/8" 0.004' in line
