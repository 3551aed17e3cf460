"""chat.py: what an OpenAI chat-completions request must hold for Vary, and streamed text pieces."""

import base64

import pytest

from vary_cli.serve.chat import TextDelta, decode_data_url, parse_chat
from vary_cli.serve.http import ApiError

URL = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\nrest").decode()


def body(*parts, **extra):
    return {"model": "m", "messages": [{"role": "system", "content": "be brief"},
                                       {"role": "user", "content": list(parts)}], **extra}


def test_the_last_user_message_gives_the_image_and_the_prompt():
    asked = parse_chat(body({"type": "text", "text": "markdown "}, {"type": "image_url", "image_url": {"url": URL}},
                            max_tokens=9, stream=True, stream_options={"include_usage": True}), "m")
    assert (asked.image_url, asked.prompt, asked.max_tokens, asked.stream, asked.include_usage) == (URL, "markdown", 9, True, True)
    assert parse_chat(body({"type": "image_url", "image_url": {"url": URL}}), "m").prompt == "ocr"
    assert parse_chat(body({"type": "image_url", "image_url": URL}, model=None, temperature=0, n=1, stop=None), "m").max_tokens is None


@pytest.mark.parametrize("request_body, status", [
    (body({"type": "image_url", "image_url": {"url": URL}}, model="other"), 404),
    (body({"type": "text", "text": "hi"}), 400),
    (body({"type": "image_url", "image_url": {"url": URL}}, {"type": "image_url", "image_url": {"url": URL}}), 400),
    (body({"type": "image_url", "image_url": {"url": URL}}, temperature=0.8), 400),
    (body({"type": "image_url", "image_url": {"url": URL}}, n=2), 400),
    (body({"type": "image_url", "image_url": {"url": URL}}, max_tokens=0), 400),
    (body({"type": "input_audio"}), 400),
    ({"messages": []}, 400), ([], 400),
])
def test_what_vary_cannot_answer_is_refused(request_body, status):
    with pytest.raises(ApiError) as caught:
        parse_chat(request_body, "m")
    assert caught.value.status == status and "\n" not in str(caught.value)


def test_data_urls():
    assert decode_data_url(URL, 100) == b"\x89PNG\r\n\x1a\nrest"
    with pytest.raises(ApiError) as caught:
        decode_data_url(URL, 4)
    assert caught.value.status == 413
    for bad in ("data:image/png,raw", "data:image/png;base64,@@@", "http://x"):
        with pytest.raises(ApiError):
            decode_data_url(bad, 100)


def test_streamed_text_pieces_add_up_to_the_text_and_never_split_a_character():
    data = "a€b".encode() + b"\xff" + "ü".encode()  # a 3-byte character, a broken byte, a 2-byte character
    delta = TextDelta(lambda ids: bytes(ids))
    pieces = [delta.add(byte) for byte in data]
    assert pieces == ["a", "", "", "€", "b", "\ufffd", "", "ü"]
    assert delta.rest(data.decode("utf-8", errors="replace")) == ""
