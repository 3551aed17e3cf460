"""Continuous batching (engine/batcher.py) gives, token for token, what each page gets decoded alone.

Pages stop at different steps (a forced stop hook, the length limit, the repetition guard), arrive in
different orders and run at several batch sizes; pages fail while others decode. The tiny checkpoint with
seq_length 64 makes every prompt use dynamic NTK and log-n, so per-row alpha and positions are exercised.
"""

import pytest
import torch
from PIL import Image, ImageDraw

from engine_util import decode
from vary_cli.engine.batcher import Engine
from vary_cli.engine.config import GenerationConfig
from vary_cli.engine.requests import PageRequest
from vary_cli.models.checkpoint import load_directory

# A short guard so that the tiny random model's loops are cut within a few dozen tokens.
GEN = GenerationConfig(max_new_tokens=40, repetition_span=12, repetition_max_period=4, repetition_min_repeats=3)
STOP_AFTER = [5, None, 2, 9, 1, 30, 0, None, 17]  # None: the page runs to a stop id, the guard or the limit


def page(i: int) -> Image.Image:
    image = Image.new("RGB", (120, 160), (255 - 25 * i, 255 - 10 * i, 255))
    ImageDraw.Draw(image).text((10, 10 + 7 * i), f"p{i}", fill="black")
    return image


@pytest.fixture(scope="module")
def qwen(tiny_long_checkpoint):
    return load_directory(tiny_long_checkpoint, torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def opt(tiny_opt_checkpoint):
    return load_directory(tiny_opt_checkpoint, torch.device("cpu"), torch.float32)


def batch_one(loaded, gen, stop_after):
    """(token ids, finish reason) per page decoded alone, the forced stop as a limit."""
    ids = loaded.prompt_ids("markdown")
    out = []
    for i, stop in enumerate(stop_after):
        limit = gen.max_new_tokens if stop is None else min(stop, gen.max_new_tokens)
        if limit == 0:
            out.append(([], "stop"))
            continue
        (g,) = decode(loaded.model, [ids], loaded.encode_pages([page(i)], "markdown"),
                      gen.with_(max_new_tokens=limit), loaded.stop_ids)
        reason = g.finish_reason
        if reason == "length" and stop is not None and stop < gen.max_new_tokens:
            reason = "stop"  # the hook chose a stop id where the limit was
        out.append((g.token_ids, reason))
    return out


def continuous(loaded, gen, stop_after, batch_size, order, refill=True, encode=None, on_token=None):
    ids = loaded.prompt_ids("markdown")
    encode = encode or (lambda images: loaded.encode_pages(images, "markdown"))
    batcher = Engine(loaded.model, encode, gen, loaded.stop_ids, batch_size, refill, on_token)
    requests = [PageRequest(i, page(i), ids, stop_after=stop_after[i]) for i in order]
    return {o.request.key: o for o in batcher.run(requests)}


@pytest.fixture(scope="module")
def reference(qwen):
    expected = batch_one(qwen, GEN, STOP_AFTER)
    reasons = {reason for _, reason in expected}
    assert {"stop", "length", "repetition"} <= reasons  # the pages really stop in every way
    assert len({len(ids) for ids, _ in expected}) >= 6  # ... and at many different steps
    return expected


@pytest.mark.parametrize("batch_size,order,refill", [
    (2, range(9), True), (3, [8, 0, 4, 2, 7, 1, 5, 3, 6], True), (4, range(8, -1, -1), True),
    (9, range(9), True), (3, range(9), False)])
def test_continuous_batching_equals_batch_one(qwen, reference, batch_size, order, refill):
    outcomes = continuous(qwen, GEN, STOP_AFTER, batch_size, list(order), refill)
    assert sorted(outcomes) == list(range(9))
    for i, (ids, reason) in enumerate(reference):
        assert outcomes[i].error is None
        assert (outcomes[i].generation.token_ids, outcomes[i].generation.finish_reason) == (ids, reason), i


def test_pages_failing_mid_batch_fail_alone(qwen, reference):
    # Page 4 cannot be encoded (it arrives while others decode); page 5 fails at its 3rd token, inside a
    # batched decode step, so that step's pages are redone one by one and only page 5 fails.
    real = qwen.encode_pages
    brightness = {page(i).getpixel((0, 0))[0]: i for i in range(9)}

    def encode(images):
        if any(brightness[image.getpixel((0, 0))[0]] == 4 for image in images):
            raise RuntimeError("CUDA out of memory (injected)")
        return real(images, "markdown")

    seen = {}

    def on_token(key, token):
        seen[key] = seen.get(key, 0) + 1
        if key == 5 and seen[key] == 3:
            seen[key] = 0
            raise RuntimeError("injected failure at page 5's third token")

    outcomes = continuous(qwen, GEN, STOP_AFTER, 3, list(range(9)), encode=encode, on_token=on_token)
    assert "out of memory" in str(outcomes[4].error) and outcomes[4].generation is None
    assert "page 5" in str(outcomes[5].error)
    for i, (ids, reason) in enumerate(reference):
        if i not in (4, 5):
            assert outcomes[i].error is None
            assert (outcomes[i].generation.token_ids, outcomes[i].generation.finish_reason) == (ids, reason), i


def test_a_page_that_cannot_be_rendered_is_an_error_outcome(qwen):
    ids = qwen.prompt_ids("markdown")
    batcher = Engine(qwen.model, lambda images: qwen.encode_pages(images, "markdown"), GEN, qwen.stop_ids, 2)
    outcomes = list(batcher.run([PageRequest("bad", ValueError("page 3 cannot be rendered"), ids),
                                 PageRequest("good", page(0), ids, stop_after=3)]))
    assert {o.request.key: (o.error is None) for o in outcomes} == {"bad": False, "good": True}


def test_vary_tiny_continuous_equals_batch_one(opt):
    gen = GenerationConfig(max_new_tokens=12)
    stops = [3, None, 0, 7, 1]
    expected = batch_one(opt, gen, stops)
    outcomes = continuous(opt, gen, stops, 2, [4, 2, 0, 1, 3])
    assert [(outcomes[i].generation.token_ids, outcomes[i].generation.finish_reason) for i in range(5)] == expected
