"""OpenAI's chat-completions shape for vision, so the `openai` client (and tools built on it) can call Vary.

`parse_chat` reads a request: the last user message must hold exactly one `image_url` part (Vary reads
one image per prompt) and its text parts are the prompt (a preset name like `ocr` works; no text means
`ocr`). Images come as `data:` URLs; http(s) URLs are fetched only with `--allow-remote-images`
(`read_image_url`, under the upload size limit). Decoding is greedy, as in `vary ocr`: a request asking for
sampling (`temperature` > 0), several choices or stop strings is refused rather than silently answered
otherwise. `completion` and `chunk` build the response bodies; `TextDelta` turns streamed token ids into
text pieces without splitting a UTF-8 character.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from .http import ApiError

# Vary's repetition guard stops a looping page; OpenAI's clients know "stop" and "length".
FINISH_REASONS = {"stop": "stop", "length": "length", "repetition": "stop"}


@dataclass(frozen=True)
class ChatRequest:
    image_url: str
    prompt: str
    max_tokens: int | None
    stream: bool
    include_usage: bool


def parse_chat(body: Any, served_model: str) -> ChatRequest:
    """Check a chat-completions body and take out what Vary reads.

    Raises:
        ApiError: 400 for anything malformed or unsupported (the message names the field), 404 for
            another model than the one served.
    """
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    model = body.get("model")
    if model not in (None, "", served_model):
        raise ApiError(404, f"model {str(model)[:80]!r} is not served here; this server serves {served_model!r}")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list")
    user = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not user:
        raise ApiError(400, "no user message; send one with an image_url part and a text prompt")
    content = user[-1].get("content")
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(parts, list):
        raise ApiError(400, "a message's content must be a string or a list of parts")
    images, texts = [], []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if not isinstance(url, str):
                raise ApiError(400, "an image_url part needs a url")
            images.append(url)
        elif kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            raise ApiError(400, f"unsupported content part {str(kind)[:40]!r}; send text and image_url parts")
    if len(images) != 1:
        raise ApiError(400, f"the last user message has {len(images)} images; Vary reads exactly one per request")
    for name, default in (("n", 1), ("stop", None), ("tools", None), ("logprobs", False), ("response_format", None)):
        if body.get(name) not in (default, None, [], {"type": "text"}):
            raise ApiError(400, f"{name} is not supported by this server")
    temperature = body.get("temperature")
    if temperature not in (None, 0, 0.0):
        raise ApiError(400, "this server decodes greedily: send temperature 0 or leave it out")
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ApiError(400, "max_tokens must be a positive whole number")
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise ApiError(400, "stream must be true or false")
    options = body.get("stream_options") or {}
    return ChatRequest(images[0], " ".join(t.strip() for t in texts if t.strip()) or "ocr", limit, stream,
                       bool(isinstance(options, dict) and options.get("include_usage")))


def decode_data_url(url: str, limit: int) -> bytes:
    """The bytes of a base64 `data:` URL, at most `limit` of them.

    Raises:
        ApiError: 400 for a malformed URL, 413 past the limit.
    """
    header, comma, payload = url.partition(",")
    if not comma or not header.startswith("data:") or not header.endswith(";base64"):
        raise ApiError(400, "image_url must be a base64 data: URL (data:image/png;base64,...)")
    if len(payload) * 3 // 4 > limit:
        raise ApiError(413, f"the image is larger than {limit / 2**20:g} MiB (--max-upload-mb)")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "the data: URL's base64 is malformed") from None


async def read_image_url(url: str, limit: int, allow_remote: bool) -> bytes:
    """An image_url's bytes: decoded from a data: URL, or fetched (http/https) when remote images are allowed."""
    if url.startswith("data:"):
        return decode_data_url(url, limit)
    if not url.startswith(("http://", "https://")):
        raise ApiError(400, "image_url must be a data: URL (or http/https with --allow-remote-images)")
    if not allow_remote:
        raise ApiError(400, "this server does not fetch remote images; send a data: URL, or start it with "
                            "--allow-remote-images")
    import httpx

    data = bytearray()
    try:
        async with httpx.AsyncClient(follow_redirects=True, timeout=30) as client:
            async with client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise ApiError(400, f"fetching the image gave HTTP {response.status_code}")
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > limit:
                        raise ApiError(413, f"the image is larger than {limit / 2**20:g} MiB (--max-upload-mb)")
    except httpx.HTTPError as error:
        raise ApiError(400, f"could not fetch the image ({type(error).__name__})") from None
    return bytes(data)


class TextDelta:
    """Streamed token ids -> new text: each token's bytes go through an incremental UTF-8 decoder, which
    holds back only a character still incomplete and replaces broken bytes at once, so the pieces add up
    to the page's text."""

    def __init__(self, token_bytes: Callable[[list[int]], bytes]) -> None:
        self.token_bytes = token_bytes
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.sent = ""

    def add(self, token: int) -> str:
        piece = self.decoder.decode(self.token_bytes([token]))
        self.sent += piece
        return piece

    def rest(self, final_text: str) -> str:
        """What is left to send once the page's final text is known (a held-back character's end)."""
        self.sent += self.decoder.decode(b"", final=True)
        return final_text[len(self.sent):] if final_text.startswith(self.sent) else ""


def new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def completion(completion_id: str, model: str, text: str, finish_reason: str, prompt_tokens: int,
               completion_tokens: int) -> dict:
    return {"id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": FINISH_REASONS.get(finish_reason, "stop"), "logprobs": None}],
            "usage": usage(prompt_tokens, completion_tokens)}


def chunk(completion_id: str, model: str, delta: dict | None, finish_reason: str | None = None,
          usage_body: dict | None = None) -> dict:
    body = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [] if delta is None else
            [{"index": 0, "delta": delta, "logprobs": None,
              "finish_reason": None if finish_reason is None else FINISH_REASONS.get(finish_reason, "stop")}]}
    if usage_body is not None:
        body["usage"] = usage_body
    return body


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}
