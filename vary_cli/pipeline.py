"""The one place that knows the order of the stages: image -> preprocess -> model -> generate -> text.

`ocr_images()` is what `vary ocr` and the Python API call. It returns one `PageResult` per image and
reports progress through callbacks; it never prints.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterable

import torch

from .checkpoint import LoadedModel
from .config import GenerationConfig
from .generate import generate
from .preprocess import load_image, preprocess_page
from .prompts import build_prompt_ids, resolve_prompt
from .results import PageResult
from .tokenizer import StreamDecoder




def prompt_ids(loaded: LoadedModel, prompt: str) -> list[int]:
    """Token ids of the release's conversation template around `prompt` (a preset name or text)."""
    config = loaded.config
    return build_prompt_ids(loaded.tokenizer, resolve_prompt(prompt), style=config.prompt_style,
                            image_token_len=config.image_token_len)


def ocr_images(loaded: LoadedModel, images: Iterable[Path], prompt: str, gen: GenerationConfig,
               on_text: Callable[[str, str], None] | None = None) -> Iterable[PageResult]:
    """Read each image and yield its PageResult.

    Args:
        prompt: a preset (`ocr`, `markdown`) or any text, used as given.
        on_text: called with (source, new text) as tokens are decoded, for streaming output.
    """
    ids = prompt_ids(loaded, prompt)
    tokenizer = loaded.tokenizer
    stop_ids = {tokenizer.im_end_id, tokenizer.endoftext_id}
    for path in images:
        started = time.perf_counter()
        page = preprocess_page(load_image(path), loaded.config)
        pixels = {"dtype": loaded.dtype, "device": loaded.device}
        with torch.inference_mode():
            features = loaded.model.encode_images(page.clip[None].to(**pixels), page.sam[None].to(**pixels))
        stream = StreamDecoder(tokenizer)
        callback = None
        if on_text is not None:
            def callback(_row: int, token: int, source: str = str(path)) -> None:
                piece = stream.feed(token)
                if piece:
                    on_text(source, piece)
        (result,) = generate(loaded.model, [ids], features, gen, stop_ids, tokenizer.endoftext_id, callback)
        yield PageResult(source=str(path), text=tokenizer.decode(result.token_ids),
                         finish_reason=result.finish_reason, tokens=len(result.token_ids),
                         seconds=round(time.perf_counter() - started, 3))
