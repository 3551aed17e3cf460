"""GOT-OCR2.0's greedy output through vary's decoding equals transformers' `generate`, token for token.

The reference: `GotOcr2Processor` then `GotOcr2ForConditionalGeneration.generate` (greedy, stopping at
`<|im_end|>` or `<|endoftext|>` as transformers' GOT example does with `stop_strings="<|im_end|>"`), the
new tokens decoded without special tokens. vary's side: the checkpoint loaded through the user's path
(both release layouts), pages prepared by `LoadedModel.prepare_page`, decoded by the one engine at batch 1
and in one continuous batch of pages with and without tiles, a box and a colour, with drafting on and off,
and through `vary ocr`'s path (`pipeline.ocr_images`), its decoded text included.
"""

from __future__ import annotations

import pytest
import torch
from tiny_got import page, reference_tokens

from vary_cli.engine.batcher import Engine
from vary_cli.engine.config import DraftConfig, GenerationConfig
from vary_cli.engine.requests import PageRequest
from vary_cli.models.checkpoint import load_directory
from vary_cli.models.loaded import PageOptions

F64, CPU = torch.float64, torch.device("cpu")
MAX_NEW = 20
GEN = GenerationConfig(max_new_tokens=MAX_NEW, repetition_span=0)

# (image size, prompt preset, page options): plain and format OCR, tiles, a box, a colour.
CASES = [((120, 160), "ocr", PageOptions()),
         ((120, 160), "markdown", PageOptions()),
         ((100, 60), "markdown", PageOptions(crops="auto")),
         ((120, 160), "ocr", PageOptions(crops=3)),
         ((120, 160), "ocr", PageOptions(box=(10, 20, 90, 100))),
         ((150, 150), "format", PageOptions(color="green")),
         ((60, 100), "ocr", PageOptions(crops="auto", box=(0, 0, 45, 60), color="red"))]


@pytest.fixture(scope="module")
def expected(got_reference):
    return [reference_tokens(*got_reference, page(*size, seed=i), prompt != "ocr", MAX_NEW, options.max_tiles,
                             options.box, options.color) for i, (size, prompt, options) in enumerate(CASES)]


@pytest.fixture(scope="module", params=["hf", "original"])
def got64(request, got_checkpoints):
    return load_directory(got_checkpoints[request.param], CPU, F64)


def requests(loaded, cases: int = len(CASES)) -> list[PageRequest]:
    out = []
    for i, (size, prompt, options) in enumerate(CASES[:cases]):
        page_input, ids = loaded.with_options(options).prepare_page(page(*size, seed=i), prompt)
        out.append(PageRequest(i, page_input, ids))
    return out


def test_reference_generations_are_not_trivial(expected):
    """The seeded network writes varied text that stops at different lengths, so equality means something."""
    assert len({tuple(tokens) for tokens in expected}) == len(CASES)
    assert max(len(tokens) for tokens in expected) == MAX_NEW


@pytest.mark.parametrize("batch_size,draft", [(1, "off"), (3, "off"), (3, "ngram")])
def test_engine_equals_transformers_generate(got64, expected, batch_size, draft):
    engine = Engine(got64.model, got64.encode_inputs, GEN, got64.stop_ids, batch_size, draft=DraftConfig(draft),
                    tokenize=got64.tokenizer.encode)
    outcomes = {o.request.key: o for o in engine.run(requests(got64))}
    assert all(o.error is None for o in outcomes.values())
    assert [outcomes[i].generation.token_ids for i in range(len(CASES))] == expected
    if batch_size > 1:
        assert engine.row_passes > engine.forward_passes  # pages really shared forward passes


def test_vary_ocr_path_equals_transformers_generate(got64, expected, got_reference, tmp_path):
    """`vary ocr`'s path (pipeline.ocr_images on image files) and its decoded text."""
    from vary_cli.convert.pipeline import ocr_images

    _, processor = got_reference
    for i, (size, prompt, options) in enumerate(CASES[:3]):
        path = tmp_path / f"page{i}.png"
        page(*size, seed=i).save(path)
        (result,) = ocr_images(got64.with_options(options), [path], prompt, GEN)
        assert result.tokens == len(expected[i])
        assert result.text == processor.decode(expected[i], skip_special_tokens=True)
        assert result.finish_reason == ("length" if len(expected[i]) == MAX_NEW else "stop")


def test_float32_continuous_batch_equals_batch_of_one(got_checkpoints):
    """In the dtype users run on a CPU, a page decodes the same alone and in a batch of mixed tile counts."""
    loaded = load_directory(got_checkpoints["hf"], CPU, torch.float32)
    alone = Engine(loaded.model, loaded.encode_inputs, GEN, loaded.stop_ids, 1)
    batched = Engine(loaded.model, loaded.encode_inputs, GEN, loaded.stop_ids, 4)
    one = {o.request.key: o.generation.token_ids for o in alone.run(requests(loaded, 5))}
    many = {o.request.key: o.generation.token_ids for o in batched.run(requests(loaded, 5))}
    assert one == many
