"""The HTTP API over the fake engine: jobs, events, results, cancel, bad input, auth, CORS, restarts."""

import json

import pytest

from serve_fixtures import encrypted_pdf_bytes, pdf_bytes, png_bomb, png_bytes, wait_for


@pytest.fixture
def make_server(tmp_path):
    """make_server(**config) -> (TestClient, service, backend) over the fake engine; closed at teardown."""
    from fastapi.testclient import TestClient

    from fake_engine import FakeBackend
    from vary_cli.serve.app import create_app
    from vary_cli.serve.config import ServeConfig
    from vary_cli.serve.service import Service

    opened = []

    def make(backend=None, jobs_dir=None, **config):
        backend = backend or FakeBackend()
        service = Service(ServeConfig(jobs_dir=jobs_dir or tmp_path / "jobs", model_name="vary-test", **config),
                          [backend])
        client = TestClient(create_app(service))
        client.__enter__()
        opened.append(client)
        return client, service, backend

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def submit(client, files, **fields):
    parts = [("file", (name, data, "application/octet-stream")) for name, data in files]
    return client.post("/v1/convert", files=parts, data=fields)


def finished(client, job):
    return wait_for(lambda: (s := client.get(f"/v1/jobs/{job}").json())["state"] in ("done", "failed", "cancelled") and s)


def test_a_job_runs_to_done_with_events_and_results(make_server):
    client, service, backend = make_server()
    response = submit(client, [("paper.pdf", pdf_bytes(3))], format="md")
    assert response.status_code == 202, response.text
    job = response.json()["job"]
    assert response.headers["location"] == f"/v1/jobs/{job}"
    status = finished(client, job)
    assert status["state"] == "done" and status["pages_done"] == status["pages_total"] == 3
    assert status["documents"] == [{"name": "paper.pdf", "kind": "pdf", "pages": 3, "pages_done": 3}]
    assert status["errors"] == []

    events = client.get(f"/v1/jobs/{job}/events").text.split("\n\n")
    kinds = [block.split("\n")[1] for block in events if block]
    assert kinds == ["event: page"] * 3 + ["event: done"]
    pages = [json.loads(block.split("data: ", 1)[1]) for block in events if "event: page" in block]
    assert sorted(p["page"] for p in pages) == [1, 2, 3]
    assert all(p["name"] == "paper.pdf" and p["finish_reason"] == "stop" and "grey" in p["text"] for p in pages)

    md = client.get(f"/v1/jobs/{job}/result")
    assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
    assert "paper.md" in md.headers["content-disposition"]
    assert md.text.startswith("<!-- page 1 -->\nmarkdown 1025x1333 grey 254 $x^{2}$\n\n<!-- page 2 -->")
    jsonl = client.get(f"/v1/jobs/{job}/result?format=jsonl").text.splitlines()
    assert [json.loads(line)["source"] for line in jsonl] == ["paper.pdf"] * 3
    tex = client.get(f"/v1/jobs/{job}/result", params={"format": "tex"}).text
    assert "\\begin{document}" in tex
    # Resume left the page store beside the upload, and nothing else is written outside the job.
    files = sorted(p.name for p in (service.config.jobs_dir / job).iterdir())
    assert files == ["0.pages.jsonl", "0.pdf", "job.json"]

    view = client.get(f"/v1/jobs/{job}/documents/0/pages/2").json()
    assert "<math" in view["html"] and view["mmd"].startswith("markdown") and "$" in view["md"]
    image = client.get(f"/v1/jobs/{job}/documents/0/pages/2/image")
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")


def test_several_documents_a_page_range_and_a_lone_image(make_server):
    client, _, _ = make_server()
    job = submit(client, [("a.pdf", pdf_bytes(4)), ("b.png", png_bytes())], format="txt", pages="2-3").json()
    # An image has one page: 2-3 is out of its range, as `vary convert --pages 2-3 b.png` says.
    assert "error" in job and "b.png" in job["error"] and "pages 2-3" in job["error"]
    job = submit(client, [("a.pdf", pdf_bytes(4)), ("b.png", png_bytes())], format="txt").json()["job"]
    status = finished(client, job)
    assert [d["pages"] for d in status["documents"]] == [4, 1]
    assert client.get(f"/v1/jobs/{job}/result?format=txt").status_code == 400  # which document?
    image_txt = client.get(f"/v1/jobs/{job}/result?format=txt&document=1").text
    assert image_txt == "ocr 60x80 grey 224 $x^{0}$\n"
    jsonl = client.get(f"/v1/jobs/{job}/result?format=jsonl&document=1").json()
    assert jsonl["page"] is None and jsonl["source"] == "b.png"


def test_round_robin_lets_a_small_job_finish_before_a_big_one(make_server):
    from fake_engine import FakeBackend

    client, service, _ = make_server(backend=FakeBackend(batch_size=2, step_seconds=0.01))
    claimed, pop = [], service.queue.pop

    def recording_pop():
        task = pop()
        if task is not None:
            claimed.append(task.key.group)
        return task

    service.queue.pop = recording_pop
    big = submit(client, [("big.pdf", pdf_bytes(12))], max_new_tokens="40").json()["job"]
    small = submit(client, [("small.pdf", pdf_bytes(2, shade=9))]).json()["job"]
    claimed_before = len(claimed)
    finished(client, small)
    assert client.get(f"/v1/jobs/{big}").json()["pages_done"] < 12
    # Round-robin: the small job's first page is the next page claimed or the one after, and its second
    # page comes one big page later; it does not wait behind the big job's other pages.
    first = claimed.index(small)
    assert first <= claimed_before + 1 and claimed[first + 1:first + 3] == [big, small]
    finished(client, big)
    health = client.get("/healthz").json()
    assert health["shared_steps"] > 0 and health["engine"]["row_passes"] > health["engine"]["forward_passes"]


@pytest.mark.parametrize("name, data, status, words", [
    ("notes.pdf", b"just some text, not a document", 415, "not a PDF or an image"),
    ("empty.pdf", b"", 400, "empty"),
    ("cut.pdf", pdf_bytes(3)[:300], 400, "cut.pdf"),
    ("locked.pdf", None, 400, "encrypted"),
    ("bomb.png", png_bomb(), 400, "too large"),
    ("../../escape.pdf", pdf_bytes(1), 400, "plain file name"),
])
def test_bad_documents_get_one_line_and_the_server_goes_on(make_server, name, data, status, words, tmp_path):
    client, service, _ = make_server()
    data = encrypted_pdf_bytes() if data is None else data
    response = submit(client, [(name, data)])
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error and "\n" not in error
    assert str(service.config.jobs_dir) not in error  # server paths stay on the server
    assert not list(service.config.jobs_dir.glob("*/job.json"))  # no job left behind
    assert not (tmp_path / "escape.pdf").exists() and not (service.config.jobs_dir.parent / "escape.pdf").exists()
    assert submit(client, [("ok.pdf", pdf_bytes(1))]).status_code == 202


@pytest.mark.parametrize("fields, words", [
    ({"format": "docx"}, "format must be one of"), ({"pages": "0-2"}, "pages"), ({"pages": "9"}, "out of range"),
    ({"max_new_tokens": "lots"}, "whole number"), ({"max_new_tokens": "999999"}, "between 1 and"),
    ({"colour": "blue"}, "unknown form field"),
])
def test_bad_options_get_400(make_server, fields, words):
    client, _, _ = make_server()
    response = submit(client, [("a.pdf", pdf_bytes(2))], **fields)
    assert response.status_code == 400 and words in response.json()["error"], response.text
    assert client.get("/healthz").status_code == 200


def test_limits_per_job_and_for_the_queue(make_server):
    from fake_engine import FakeBackend

    client, service, _ = make_server(backend=FakeBackend(batch_size=1, step_seconds=0.05), max_job_pages=3,
                                     max_queue_pages=4, max_upload_mb=0.05)
    response = submit(client, [("a.pdf", pdf_bytes(4))])
    assert response.status_code == 413 and "--max-job-pages" in response.json()["error"]
    assert submit(client, [("a.pdf", pdf_bytes(3))]).status_code == 202
    wait_for(lambda: len(service.queue) == 1)  # the engine thread took two pages (one decoding, one next)
    assert submit(client, [("b.pdf", pdf_bytes(3))]).status_code == 202
    busy = submit(client, [("c.pdf", pdf_bytes(1))])
    assert busy.status_code == 429 and busy.headers["retry-after"]
    big = submit(client, [("big.png", png_bytes((400, 400), (1, 2, 3)) + b"\x00" * 60_000)])
    assert big.status_code == 413 and "--max-upload-mb" in big.json()["error"]


def test_cancel_frees_rows_and_delete_removes_the_job(make_server):
    from fake_engine import FakeBackend

    client, service, _ = make_server(backend=FakeBackend(batch_size=2, step_seconds=0.01))
    job = submit(client, [("long.pdf", pdf_bytes(8))], prompt="x" * 2000, max_new_tokens="2000").json()["job"]
    wait_for(lambda: service.stats.active == 2)
    assert client.delete(f"/v1/jobs/{job}").json() == {"job": job, "state": "cancelled"}
    wait_for(lambda: service.stats.active == 0 and len(service.queue) == 0)
    status = client.get(f"/v1/jobs/{job}").json()
    assert status["state"] == "cancelled" and status["pages_done"] < 8
    assert client.get(f"/v1/jobs/{job}/result").status_code == 409
    assert client.get(f"/v1/jobs/{job}/events").text.endswith('"state": "cancelled", "pages_done": 0, "pages_total": 8}\n\n')
    after = submit(client, [("next.pdf", pdf_bytes(1))]).json()["job"]
    assert finished(client, after)["state"] == "done"
    assert client.delete(f"/v1/jobs/{job}").json() == {"job": job, "deleted": True}
    assert client.get(f"/v1/jobs/{job}").status_code == 404
    assert not (service.config.jobs_dir / job).exists()


def test_a_restarted_server_finishes_the_job_without_redoing_pages(make_server, tmp_path):
    from fake_engine import FakeBackend

    jobs_dir = tmp_path / "kept"
    client, service, first = make_server(backend=FakeBackend(batch_size=1, step_seconds=0.005), jobs_dir=jobs_dir)
    job = submit(client, [("a.pdf", pdf_bytes(5))]).json()["job"]
    wait_for(lambda: client.get(f"/v1/jobs/{job}").json()["pages_done"] >= 2)
    service.stop()  # the engine stops between steps, as a killed server would (its page store is fsynced)
    stored = {page for (_, page) in service.jobs.get(job).results}
    assert 2 <= len(stored) < 5

    client2, _, second = make_server(backend=FakeBackend(batch_size=1), jobs_dir=jobs_dir)
    status = finished(client2, job)
    assert status["state"] == "done" and status["pages_done"] == 5
    assert sorted(key.page for key in second.requested) == sorted({1, 2, 3, 4, 5} - stored)
    fresh, _, _ = make_server(jobs_dir=tmp_path / "fresh")
    other = submit(fresh, [("a.pdf", pdf_bytes(5))]).json()["job"]
    finished(fresh, other)
    assert client2.get(f"/v1/jobs/{job}/result").text == fresh.get(f"/v1/jobs/{other}/result").text


def test_finished_jobs_expire_after_keep_results(make_server):
    client, service, _ = make_server(keep_results=60.0)
    job = submit(client, [("a.pdf", pdf_bytes(1))]).json()["job"]
    finished(client, job)
    assert service.jobs.expire(60.0) == []
    assert service.jobs.expire(60.0, now=service.jobs.get(job).finished + 61) == [job]
    assert client.get(f"/v1/jobs/{job}").status_code == 404


def test_auth_guards_everything_but_health_and_the_page(make_server):
    client, _, _ = make_server(token="s3cret")
    assert client.get("/healthz").status_code == 200
    assert client.get("/").status_code == 200 and "script-src 'self'" in client.get("/").headers["content-security-policy"]
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = client.get("/v1/models", headers=headers)
        assert response.status_code == 401 and response.json()["error"]
        assert submit(client, [("a.pdf", pdf_bytes(1))]).status_code == 401
    ok = client.get("/v1/models", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.json()["data"][0]["id"] == "vary-test"


def test_cors_only_for_the_named_origin(make_server):
    plain, _, _ = make_server()
    assert "access-control-allow-origin" not in plain.get("/v1/models", headers={"Origin": "https://a.example"}).headers
    client, _, _ = make_server(cors=("https://a.example",))
    allowed = client.get("/v1/models", headers={"Origin": "https://a.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://a.example"
    other = client.get("/v1/models", headers={"Origin": "https://b.example"})
    assert "access-control-allow-origin" not in other.headers
    preflight = client.options("/v1/convert", headers={"Origin": "https://a.example", "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200


def test_ocr_chat_models_and_health(make_server):
    import base64

    client, _, _ = make_server()
    ocr = client.post("/v1/ocr", files=[("file", ("shot.png", png_bytes(), "image/png"))]).json()
    assert {key: ocr[key] for key in ("source", "text", "finish_reason", "tokens", "page", "error")} == {
        "source": "shot.png", "text": "ocr 60x80 grey 224 $x^{0}$", "finish_reason": "stop", "tokens": 26,
        "page": None, "error": None}
    pdf = client.post("/v1/ocr", files=[("file", ("a.pdf", pdf_bytes(1), "application/pdf"))])
    assert pdf.status_code == 415
    url = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    body = {"model": "vary-test", "max_tokens": 5,
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                      {"type": "text", "text": "ocr"}]}]}
    answer = client.post("/v1/chat/completions", json=body).json()
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "ocr 6"}
    assert answer["choices"][0]["finish_reason"] == "length" and answer["usage"]["completion_tokens"] == 5
    streamed = client.post("/v1/chat/completions", json={**body, "max_tokens": None, "stream": True,
                                                         "stream_options": {"include_usage": True}}).text
    lines = [line[6:] for line in streamed.split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "ocr 60x80 grey 224 $x^{0}$" and len(chunks) > 5
    assert chunks[-1]["usage"]["completion_tokens"] == 26
    for bad, status in (({**body, "model": "gpt-4"}, 404), ({**body, "temperature": 0.7}, 400),
                        ({**body, "messages": [{"role": "user", "content": "hi"}]}, 400),
                        ({**body, "messages": [{"role": "user", "content": [
                            {"type": "image_url", "image_url": {"url": "https://example.org/a.png"}}]}]}, 400)):
        response = client.post("/v1/chat/completions", json=bad)
        assert response.status_code == status and response.json()["error"], response.text
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["model"] == "fake" and health["queue"] == 0
    assert client.get("/v1/nothing").json() == {"error": "Not Found"}


def test_a_chat_client_that_leaves_mid_stream_frees_its_row(tmp_path):
    import base64

    import httpx

    from fake_engine import FakeBackend
    from live_server import ThreadServer
    from vary_cli.serve.app import create_app
    from vary_cli.serve.config import ServeConfig
    from vary_cli.serve.service import Service

    backend = FakeBackend(batch_size=2, step_seconds=0.05)  # 26 tokens: over a second of decoding
    service = Service(ServeConfig(jobs_dir=tmp_path / "jobs", model_name="m"), [backend])
    url = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    body = {"model": "m", "stream": True,
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}
    with ThreadServer(create_app(service)) as server:
        with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=30) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")  # the role chunk
            wait_for(lambda: service.stats.active == 1)
        wait_for(lambda: service.stats.active == 0 and backend.engines[0].idle)
        assert service.stats.pages == 0  # dropped from the batch, not decoded to its end
        assert httpx.get(f"{server.url}/healthz").json()["status"] == "ok"


def test_two_engines_share_the_queue(make_server, tmp_path):
    from fastapi.testclient import TestClient

    from fake_engine import FakeBackend
    from vary_cli.serve.app import create_app
    from vary_cli.serve.config import ServeConfig
    from vary_cli.serve.service import Service

    backends = [FakeBackend(batch_size=2, step_seconds=0.01), FakeBackend(batch_size=2, step_seconds=0.01)]
    service = Service(ServeConfig(jobs_dir=tmp_path / "two"), backends)
    with TestClient(create_app(service)) as client:
        job = submit(client, [("a.pdf", pdf_bytes(6))]).json()["job"]
        wait_for(lambda: service.stats.active == 4)  # both engines full
        assert finished(client, job)["pages_done"] == 6
        assert all(backend.requested for backend in backends)
        assert client.get("/healthz").json()["engines"] == 2


def test_remote_images_only_with_the_flag(make_server):
    import http.server
    import threading

    image = png_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(image)

        def log_message(self, *args):
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) as site:  # this machine only
        threading.Thread(target=site.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{site.server_address[1]}/page.png"
        body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}
        closed, _, _ = make_server()
        refused = closed.post("/v1/chat/completions", json=body)
        assert refused.status_code == 400 and "--allow-remote-images" in refused.json()["error"]
        open_, _, _ = make_server(allow_remote_images=True)
        answer = open_.post("/v1/chat/completions", json=body).json()
        assert answer["choices"][0]["message"]["content"] == "ocr 60x80 grey 224 $x^{0}$"
        site.shutdown()
