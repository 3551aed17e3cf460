"""`vary serve` as a user runs it: a real uvicorn process on a free port, a tiny checkpoint, httpx clients.

A converted file must be byte for byte what `vary convert` writes with the same options, in every
format; concurrent clients' pages must share batches and still come out right; a SIGKILLed server must
finish its job after a restart without redoing stored pages; the OpenAI client must stream; and bad
requests (an upload over the limit cut off mid-stream, a client gone mid-stream) must leave it serving.
"""

from __future__ import annotations

import json
import re
import socket
import threading

import httpx
import pytest
from typer.testing import CliRunner

from serve_fixtures import pdf_bytes, png_bytes, wait_for
from live_server import LiveServer, follow_events
from vary_cli.cli.app import app

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TOKENS = "8"  # tokens per page in the comparisons with `vary convert`; the server allows up to SERVER_TOKENS
SERVER_TOKENS = "24"


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    """a.pdf and b.pdf (2 pages), c.png, and eight 3-page PDFs for the concurrent clients."""
    directory = tmp_path_factory.mktemp("docs")
    (directory / "a.pdf").write_bytes(pdf_bytes(2))
    (directory / "b.pdf").write_bytes(pdf_bytes(2, shade=40))
    (directory / "c.png").write_bytes(png_bytes((90, 120), (240, 200, 180)))
    for i in range(8):
        (directory / f"client{i}.pdf").write_bytes(pdf_bytes(3, shade=5 * i + 3))
    return directory


@pytest.fixture(scope="module")
def server(tiny_checkpoint, tmp_path_factory):
    jobs = tmp_path_factory.mktemp("jobs")
    with LiveServer("--model", str(tiny_checkpoint), "--device", "cpu", "--batch-size", "4", "--max-new-tokens",
                    SERVER_TOKENS, "--max-upload-mb", "1", "--jobs-dir", str(jobs), env={"VARY_SERVE_TOKEN": TOKEN}) as live:
        live.jobs = jobs
        yield live


def convert(checkpoint, docs, names, out, monkeypatch, *options, tokens=TOKENS):
    """`vary convert` of `names` (run from the documents' folder, so jsonl's `source` is the bare name)."""
    monkeypatch.chdir(docs)
    result = CliRunner().invoke(app, ["convert", *names, "--out-dir", str(out), "--model", str(checkpoint),
                                      "--max-new-tokens", tokens, "--batch-size", "2", "--quiet", *options])
    assert result.exit_code == 0, result.output


def comparable(data: bytes, fmt: str) -> bytes:
    """The bytes two runs must share: all of them, but jsonl's `seconds` (a timing) of each page."""
    if fmt != "jsonl":
        return data
    records = [json.loads(line) for line in data.decode("utf-8").splitlines()]
    assert all(isinstance(r.pop("seconds"), float) for r in records)
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in records).encode("utf-8")


def submit(server, paths, **fields):
    files = [("file", (path.name, path.read_bytes())) for path in paths]
    response = httpx.post(f"{server.url}/v1/convert", files=files, data=fields, headers=AUTH, timeout=60)
    assert response.status_code == 202, response.text
    return response.json()["job"]


def wait_done(server, job, timeout=300):
    return wait_for(lambda: (s := httpx.get(f"{server.url}/v1/jobs/{job}", headers=AUTH).json())["state"]
                    in ("done", "failed", "cancelled") and s, timeout=timeout, every=0.2)


def result(server, job, fmt, document=0):
    response = httpx.get(f"{server.url}/v1/jobs/{job}/result", params={"format": fmt, "document": document},
                         headers=AUTH, timeout=60)
    assert response.status_code == 200, response.text
    return response.content


def test_the_start_up_line_and_auth(server, tiny_checkpoint):
    line = next(line for line in server.lines if line.startswith("vary serve: "))
    assert server.url.startswith("http://127.0.0.1:") and f"model {tiny_checkpoint}" in line
    assert "on cpu (float32)" in line and "auth on" in line
    assert httpx.get(f"{server.url}/healthz").json()["status"] == "ok"  # no token needed
    assert httpx.get(f"{server.url}/v1/models").status_code == 401
    assert httpx.get(f"{server.url}/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert httpx.get(f"{server.url}/v1/models", headers=AUTH).json()["data"][0]["id"] == str(tiny_checkpoint)
    # The access log has a line per request, in the Combined Log Format.
    assert wait_for(lambda: any('"GET /v1/models HTTP/1.1" 401' in l for l in server.lines))


def test_results_are_vary_convert_s_bytes_in_every_format(server, docs, tiny_checkpoint, tmp_path, monkeypatch):
    job = submit(server, [docs / "a.pdf", docs / "c.png"], format="md", max_new_tokens=TOKENS)
    assert wait_done(server, job)["state"] == "done"
    for fmt in ("md", "mmd", "tex", "jsonl", "txt"):
        out = tmp_path / fmt
        # A job's prompt follows its format (md: "markdown"); its txt equals convert's with that prompt.
        convert(tiny_checkpoint, docs, ["a.pdf", "c.png"], out, monkeypatch, "--format", fmt,
                *(["--prompt", "markdown"] if fmt == "txt" else []))
        for index, name in enumerate(("a", "c")):
            assert comparable(result(server, job, fmt, index), fmt) == comparable((out / f"{name}.{fmt}").read_bytes(), fmt), fmt
    txt_job = submit(server, [docs / "b.pdf"], format="txt", pages="2", max_new_tokens="5")
    wait_done(server, txt_job)
    convert(tiny_checkpoint, docs, ["b.pdf"], tmp_path / "ocr", monkeypatch, "--format", "txt", "--pages", "2",
            "--max-new-tokens", "5")
    assert result(server, txt_job, "txt") == (tmp_path / "ocr" / "b.txt").read_bytes()


def test_eight_concurrent_clients_share_batches(server, docs, tiny_checkpoint, tmp_path, monkeypatch):
    names = [f"client{i}.pdf" for i in range(8)]
    # Pages long enough (24 tokens) that each stays in the batch while the next pages are rendered.
    convert(tiny_checkpoint, docs, names, tmp_path / "ref", monkeypatch, "--format", "md", tokens=SERVER_TOKENS)
    before = httpx.get(f"{server.url}/healthz").json()
    texts, errors = {}, []

    def client(name):
        try:
            with httpx.Client(timeout=300) as http:
                files = [("file", (name, (docs / name).read_bytes()))]
                job = http.post(f"{server.url}/v1/convert", files=files, headers=AUTH).json()["job"]
                events = follow_events(http, f"{server.url}/v1/jobs/{job}/events", AUTH)
                assert [e["event"] for e in events] == ["page"] * 3 + ["done"]
                texts[name] = http.get(f"{server.url}/v1/jobs/{job}/result", headers=AUTH).content
        except Exception as error:  # noqa: BLE001 - reported below, with the client's name
            errors.append(f"{name}: {error!r}")

    threads = [threading.Thread(target=client, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    assert not errors, errors
    for name in names:
        assert texts[name] == (tmp_path / "ref" / name.replace(".pdf", ".md")).read_bytes(), name
    after = httpx.get(f"{server.url}/healthz").json()
    steps = after["decode_steps"] - before["decode_steps"]
    shared = after["shared_steps"] - before["shared_steps"]
    # Many forward passes held pages of several clients at once (the batch holds 4 rows; how many depends
    # on how fast pages are rendered beside the decoding, on a loaded machine too).
    assert steps > 0 and shared >= steps // 4, (shared, steps)
    assert after["pages"] - before["pages"] == 24
    # The engine's own counters agree: its forward passes averaged well over one row each.
    passes = after["engine"]["forward_passes"] - before["engine"]["forward_passes"]
    rows = after["engine"]["row_passes"] - before["engine"]["row_passes"]
    assert rows / passes > 1.5, (rows, passes)


def test_the_openai_client_streams_a_completion(server, docs):
    import base64

    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=TOKEN)
    url = "data:image/png;base64," + base64.b64encode((docs / "c.png").read_bytes()).decode()
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                             {"type": "text", "text": "ocr"}]}]
    model = client.models.list().data[0].id
    whole = client.chat.completions.create(model=model, messages=messages, max_tokens=16)
    pieces = []
    stream = client.chat.completions.create(model=model, messages=messages, max_tokens=16, stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert len(pieces) >= 2 and "".join(pieces) == whole.choices[0].message.content
    assert finish == whole.choices[0].finish_reason == "length" and whole.usage.completion_tokens == 16
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong").models.list()
    # /v1/ocr reads the same image the same way (greedy, same prompt, same limit).
    ocr = httpx.post(f"{server.url}/v1/ocr", files=[("file", ("c.png", (docs / "c.png").read_bytes()))],
                     data={"max_new_tokens": "16"}, headers=AUTH, timeout=60).json()
    assert ocr["text"] == whole.choices[0].message.content and ocr["source"] == "c.png"


def test_an_upload_over_the_limit_is_cut_off_while_streaming(server, docs):
    host, port = server.url.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(b"POST /v1/convert HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                           b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                           b"Content-Type: multipart/form-data; boundary=B\r\n\r\n")
        head = b'--B\r\nContent-Disposition: form-data; name="file"; filename="big.pdf"\r\n\r\n%PDF-1.4\n'
        connection.sendall(b"%x\r\n%s\r\n" % (len(head), head))
        chunk = b"x" * 65536
        reply = b""
        try:
            while sent < 100 * 2**20:  # 100 MiB offered against a 1 MiB limit; the server must answer long before
                connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                connection.settimeout(0.001)
                try:
                    reply += connection.recv(65536)
                except (TimeoutError, BlockingIOError):
                    pass
                connection.settimeout(30)
                if reply:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        connection.settimeout(30)
        try:  # the whole response: its headers, then content-length bytes of body
            while b"\r\n\r\n" not in reply or len(reply.split(b"\r\n\r\n", 1)[1]) < int(
                    re.search(rb"content-length: (\d+)", reply.split(b"\r\n\r\n", 1)[0], re.I).group(1)):
                more = connection.recv(65536)
                if not more:
                    break
                reply += more
        except (ConnectionResetError, TimeoutError):
            pass
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"--max-upload-mb" in reply
    assert sent < 8 * 2**20, sent  # cut off near the limit, not after buffering the body
    uploads = [path for path in server.jobs.iterdir() if not (path / "job.json").exists() and path.name != ".requests"]
    assert not uploads  # the cut-off upload left nothing behind
    # The server goes on: a client that leaves mid-stream, then the job it left still finishes.
    job = submit(server, [docs / "b.pdf"], max_new_tokens=TOKENS)
    with httpx.stream("GET", f"{server.url}/v1/jobs/{job}/events", headers=AUTH, timeout=60) as response:
        next(response.iter_lines())
    assert wait_done(server, job)["pages_done"] == 2
    assert httpx.get(f"{server.url}/healthz").json()["status"] == "ok"


def test_a_killed_server_finishes_its_job_after_a_restart(tiny_checkpoint, tmp_path, monkeypatch):
    jobs = tmp_path / "jobs"
    args = ("--model", str(tiny_checkpoint), "--device", "cpu", "--batch-size", "1", "--max-new-tokens", "32",
            "--jobs-dir", str(jobs))
    pdf = tmp_path / "long.pdf"
    pdf.write_bytes(pdf_bytes(5, shade=77))
    first = LiveServer(*args)
    try:
        job = httpx.post(f"{first.url}/v1/convert", files=[("file", ("long.pdf", pdf.read_bytes()))]).json()["job"]
        wait_for(lambda: httpx.get(f"{first.url}/v1/jobs/{job}").json()["pages_done"] >= 2, timeout=300, every=0.05)
        first.kill()
    finally:
        first.stop()
    stored = len((jobs / job / "0.pages.jsonl").read_text().splitlines()) - 1  # less the store's header line
    assert 2 <= stored < 5, stored
    with LiveServer(*args) as second:
        assert f"resuming job {job}: {5 - stored} of 5 page(s) left" in second.log
        status = wait_for(lambda: (s := httpx.get(f"{second.url}/v1/jobs/{job}").json())["state"] == "done" and s,
                          timeout=300, every=0.2)
        assert status["pages_done"] == 5
        served = httpx.get(f"{second.url}/v1/jobs/{job}/result", params={"format": "jsonl"}).content
    # Every page equals an uninterrupted run's (jsonl holds each page's text and how it ended).
    monkeypatch.chdir(tmp_path)
    run = CliRunner().invoke(app, ["convert", "long.pdf", "-o", "long.jsonl", "--model", str(tiny_checkpoint),
                                   "--max-new-tokens", "32", "--quiet"])
    assert run.exit_code == 0, run.output
    assert comparable(served, "jsonl") == comparable((tmp_path / "long.jsonl").read_bytes(), "jsonl")
