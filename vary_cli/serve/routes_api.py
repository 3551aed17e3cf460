"""Single-request routes: one image in, text out (/v1/ocr), OpenAI chat completions, models and health.

    POST /v1/ocr               multipart `file` (one image) + prompt, max_new_tokens -> `vary ocr --json`'s record
    POST /v1/chat/completions  OpenAI's chat-completions shape for vision, streamed with `"stream": true`
    GET  /v1/models            the served model, in OpenAI's list shape
    GET  /healthz              liveness: model, device, queue length, pages/s and the engine counters (no auth)

Each request's page joins the shared batch as a group of its own in the round-robin, so it waits for
one page of each job at most before it starts. A client that goes away has its page cancelled.
"""

from __future__ import annotations

import json
import shutil
import uuid

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.requests import ClientDisconnect

from ..errors import InputError, one_line
from . import chat
from .http import ApiError
from .uploads import receive_form, sniff

router = APIRouter()

DISCONNECT_POLL_S = 1.0


@router.get("/healthz")
async def healthz(request: Request) -> dict:
    return request.app.state.service.health()


@router.get("/v1/models")
async def models(request: Request) -> dict:
    service = request.app.state.service
    return {"object": "list", "data": [{"id": service.config.model_name, "object": "model",
                                        "created": int(service.stats.started_wall), "owned_by": "vary-cli"}]}


@router.post("/v1/ocr")
async def ocr(request: Request) -> dict:
    service = request.app.state.service
    directory = service.requests_dir / uuid.uuid4().hex[:12]
    try:
        form = await receive_form(request.stream(), request.headers.get("content-type"),
                                  request.headers.get("content-length"), directory, service.config.max_upload_bytes,
                                  max_files=1)
        unknown = sorted(set(form.fields) - {"prompt", "max_new_tokens"})
        if unknown:
            raise ApiError(400, f"unknown form field {unknown[0]!r}; the fields are prompt, max_new_tokens")
        upload = form.files[0]
        if upload.kind != "image":
            raise ApiError(415, f"{upload.name}: /v1/ocr reads one image; send PDFs to /v1/convert")
        image = await run_in_threadpool(_load_image, upload.path, upload.name)
        max_new_tokens = service.max_new_tokens(form.fields.get("max_new_tokens"))
    except ClientDisconnect:
        return JSONResponse({"error": "the client went away during the upload"}, status_code=400)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    group, events = service.submit_page(image, form.fields.get("prompt") or "ocr", max_new_tokens, upload.name)
    result = await _wait_result(request, service, group, events)
    if result is None:
        return JSONResponse({"error": "the client went away"}, status_code=499)
    if result.finish_reason == "error":
        raise ApiError(422, f"{upload.name}: {result.error}")
    return result.to_json()


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(request: Request):
    service = request.app.state.service
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the body is not JSON") from None
    asked = chat.parse_chat(body, service.config.model_name)
    data = await chat.read_image_url(asked.image_url, service.config.max_upload_bytes, service.config.allow_remote_images)
    image = await run_in_threadpool(_image_from_bytes, service, data)
    max_new_tokens = service.max_new_tokens(asked.max_tokens)
    prompt_tokens = service.backend.prompt_tokens(asked.prompt)
    completion_id, model = chat.new_id(), service.config.model_name
    group, events = service.submit_page(image, asked.prompt, max_new_tokens, "image_url", stream=asked.stream)
    if not asked.stream:
        result = await _wait_result(request, service, group, events)
        if result is None:
            return JSONResponse({"error": "the client went away"}, status_code=499)
        if result.finish_reason == "error":
            raise ApiError(422, f"the image could not be read: {result.error}")
        return chat.completion(completion_id, model, result.text, result.finish_reason, prompt_tokens, result.tokens)

    def line(body: dict) -> bytes:
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode("utf-8")

    async def stream():
        delta = chat.TextDelta(service.backend.token_bytes)
        finished = False
        try:
            yield line(chat.chunk(completion_id, model, {"role": "assistant", "content": ""}))
            async for event in events.follow(0):
                if event is None:
                    yield b": keep-alive\n\n"
                elif event.kind == "token":
                    piece = delta.add(event.data)
                    if piece:
                        yield line(chat.chunk(completion_id, model, {"content": piece}))
                else:
                    result = event.data
                    if result.finish_reason == "error":
                        yield line({"error": one_line(f"the image could not be read: {result.error}")})
                    else:
                        rest = delta.rest(result.text)
                        if rest:
                            yield line(chat.chunk(completion_id, model, {"content": rest}))
                        yield line(chat.chunk(completion_id, model, {}, result.finish_reason))
                        if asked.include_usage:
                            yield line(chat.chunk(completion_id, model, None,
                                                  usage_body=chat.usage(prompt_tokens, result.tokens)))
                    finished = True
                    yield b"data: [DONE]\n\n"
        finally:
            if not finished:  # the client went away: its row leaves the batch
                service.cancel_group(group)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _wait_result(request: Request, service, group: str, events):
    """The request's PageResult, or None (its page cancelled) if the client goes away first."""
    async for event in events.follow(0, keepalive=DISCONNECT_POLL_S):
        if event is not None and event.kind == "result":
            return event.data
        if event is None and await request.is_disconnected():
            service.cancel_group(group)
            return None
    return None


def _load_image(path, name: str):
    from ..models.preprocess import load_image

    try:
        return load_image(path)
    except InputError as error:
        raise ApiError(400, one_line(error).replace(str(path), name)) from None


def _image_from_bytes(service, data: bytes):
    kind = sniff(data[:1024])
    if not data:
        raise ApiError(400, "the image is empty")
    if kind is None or kind[0] != "image":
        raise ApiError(415, "image_url is not an image (PNG, JPEG, TIFF, GIF, WebP, BMP) by its content")
    directory = service.requests_dir / uuid.uuid4().hex[:12]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"image{kind[1]}"
    try:
        path.write_bytes(data)
        return _load_image(path, "image_url")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
