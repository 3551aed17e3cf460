"""Speculative drafting gives, token for token, what decoding without drafts gives, in fewer passes.

With a mock model (its greedy output known in advance) the drafts are made right, wrong, right for a
while, or to run past a stop id, the repetition guard's cut and --max-new-tokens. With the seeded tiny
checkpoints of both families (Vary-Qwen with NTK/log-n at seq_length 64, Vary-tiny/OPT) the same holds
at batch 1, 3 and 8 for oracle drafts (the model's own output fed back as the text layer), wrong drafts
and drafts that diverge half-way.
"""

import random

import pytest
import torch
from PIL import Image, ImageDraw

from engine_util import decode
from mock_models import TableModel, chain
from vary_cli.engine.config import DRAFT_OFF, DraftConfig, GenerationConfig
from vary_cli.engine.draft import RowDrafter
from vary_cli.errors import VaryError
from vary_cli.models.checkpoint import load_directory

STOP = 0
TEXT = DraftConfig(mode="text-layer")


def both(model, prompts, gen, text_layers, draft=TEXT, batch_size=None):
    """(drafting off, drafting on) generations of the same prompts."""
    off = decode(model, prompts, None, gen, {STOP}, batch_size=batch_size)
    on = decode(model, prompts, None, gen, {STOP}, batch_size=batch_size, draft=draft, text_layers=text_layers)
    return off, on


def same(off, on):
    assert [(g.token_ids, g.finish_reason) for g in on] == [(g.token_ids, g.finish_reason) for g in off]


def test_oracle_drafts_give_the_same_tokens_in_a_few_passes():
    model = TableModel({1: 10, **chain(10, 60, then=STOP)})
    off, on = both(model, [[1]], GenerationConfig(max_new_tokens=100), [list(range(10, 70))])
    same(off, on)
    assert off[0].forward_passes == 61 and on[0].draft_tokens_accepted > 45
    assert on[0].forward_passes <= 61 / 3  # >= 3 tokens per forward pass
    assert max(width for _, width in model.passes) == 1 + TEXT.max_tokens


def test_wrong_drafts_cost_no_tokens_and_back_off():
    model = TableModel({1: 10, **chain(10, 60, then=STOP)})
    # The text layer holds the page's bigrams, each followed by wrong tokens.
    wrong = [t for i in range(10, 70, 2) for t in (i, i + 1, 120, 121, 122, 123)]
    off, on = both(model, [[1]], GenerationConfig(max_new_tokens=100), [wrong])
    same(off, on)
    assert on[0].draft_tokens_accepted == 0
    drafted = sum(width > 1 for _, width in model.passes)
    assert drafted <= 8  # rejected drafts pause drafting for 1, 3, 7, ... passes


def test_drafts_right_for_a_while_then_diverging():
    model = TableModel({1: 10, **chain(10, 60, then=STOP)})
    diverging = list(range(10, 40)) + [100 + i % 20 for i in range(30)]
    off, on = both(model, [[1]], GenerationConfig(max_new_tokens=100), [diverging])
    same(off, on)
    assert 20 <= on[0].draft_tokens_accepted <= 29


@pytest.mark.parametrize("limit", [1, 2, 17, 33])
def test_pages_that_reach_max_new_tokens_inside_a_draft(limit):
    model = TableModel({1: 10, **chain(10, 60, then=STOP)})
    off, on = both(model, [[1]], GenerationConfig(max_new_tokens=limit), [list(range(10, 70))])
    same(off, on)
    assert on[0].finish_reason == "length" and len(on[0].token_ids) == limit


def test_pages_that_stop_inside_a_draft():
    model = TableModel({1: 10, **chain(10, 23, then=STOP)})
    off, on = both(model, [[1]], GenerationConfig(max_new_tokens=100), [list(range(10, 70))])  # drafts run on
    same(off, on)
    assert on[0].finish_reason == "stop" and on[0].token_ids == list(range(10, 33))


def test_pages_cut_by_the_repetition_guard_inside_a_draft():
    table = {1: 10, **chain(10, 30, then=41), **chain(41, 5, then=41)}  # text, then a 5-token loop
    stream = list(range(10, 40)) + [41, 42, 43, 44, 45] * 40  # the text layer holds the loop too
    gen = GenerationConfig(max_new_tokens=400, repetition_span=64)
    off, on = both(TableModel(table), [[1]], gen, [stream])
    same(off, on)
    assert on[0].finish_reason == "repetition" and on[0].draft_tokens_accepted > 0


def test_ngram_drafts_from_the_pages_own_output_and_earlier_pages():
    # A table whose rows repeat: the page's own output predicts its next rows.
    row = [20, 21, 22, 23, 24, 25]
    table = {1: 20, **chain(20, 6, then=30), 30: 20}
    gen = GenerationConfig(max_new_tokens=120, repetition_span=0)
    off, on = both(TableModel(table), [[1]], gen, None, draft=DraftConfig(mode="ngram"))
    same(off, on)
    assert on[0].token_ids[:7] == row + [30] and on[0].forward_passes < off[0].forward_passes / 3


def test_rows_with_drafts_of_different_lengths_share_a_pass():
    # Three pages at batch 3: one with an oracle text layer, one with a wrong one, one with none; one page
    # is near a fixed context's end, so padded columns must not step past the position table.
    table = {1: 10, **chain(10, 50, then=STOP), 2: 70, **chain(70, 40, then=STOP), 3: 110, **chain(110, 12)}
    model = TableModel(table, max_positions=14)
    prompts, gen = [[1], [2], [3]], GenerationConfig(max_new_tokens=60)
    layers = [list(range(10, 60)), [t for i in range(70, 110, 2) for t in (i, i + 1, 5, 6)], []]
    off, on = both(model, prompts, gen, layers, batch_size=3)
    same(off, on)
    assert on[2].finish_reason == "length" and len(on[2].token_ids) == 13
    assert any(width > 1 and rows == 3 for rows, width in model.passes)
    # A verify pass reads logits at each row's fed token and draft, not at the padding.
    padded = [(read, rows * width) for (rows, width), read in zip(model.passes, model.read) if width > 1 and rows > 1]
    assert padded and all(read <= cells for read, cells in padded) and any(read < cells for read, cells in padded)


def test_sampling_turns_drafting_off():
    model = TableModel({1: 10, **chain(10, 60, then=STOP)})
    gen = GenerationConfig(max_new_tokens=30, temperature=1.0, seed=1)
    (result,) = decode(model, [[1]], None, gen, {STOP}, draft=TEXT, text_layers=[list(range(10, 70))])
    assert result.draft_tokens_accepted == 0 and all(width == 1 for _, width in model.passes)


def test_draft_config_is_checked():
    with pytest.raises(VaryError, match="--draft must be one of"):
        DraftConfig(mode="sometimes")
    with pytest.raises(VaryError):
        DraftConfig(start_tokens=0)


def test_the_text_layer_is_read_in_order():
    # "a b" occurs twice; after the first occurrence has been followed, the second one is proposed.
    drafter = RowDrafter(DraftConfig(ngram_min=2, max_tokens=2, start_tokens=2), [5, 6, 7, 8, 5, 6, 9, 9], (), False)
    assert drafter.propose([5, 6], room=10) == [7, 8]
    drafter.feedback(2, 2)
    assert drafter.propose([5, 6, 7, 8, 5, 6], room=10) == [9, 9]


# ---- the seeded tiny checkpoints of both families ------------------------------------------------------

GEN = GenerationConfig(max_new_tokens=40, repetition_span=12, repetition_max_period=4, repetition_min_repeats=3)


def page(i: int) -> Image.Image:
    image = Image.new("RGB", (120, 160), (255 - 25 * i, 255 - 10 * i, 255))
    ImageDraw.Draw(image).text((10, 10 + 7 * i), f"p{i}", fill="black")
    return image


@pytest.fixture(scope="module", params=["qwen", "opt"])
def family(request, tiny_long_checkpoint, tiny_opt_checkpoint):
    directory = tiny_long_checkpoint if request.param == "qwen" else tiny_opt_checkpoint
    loaded = load_directory(directory, torch.device("cpu"), torch.float32)
    ids = loaded.prompt_ids("ocr")
    features = loaded.encode_pages([page(i) for i in range(8)], "ocr")  # (8, N, W)
    reference = decode(loaded.model, [ids] * 8, features, GEN, loaded.stop_ids, batch_size=1)
    # The full streams, past the guard's cut: oracle drafts then also run into the loops.
    streams = decode(loaded.model, [ids] * 8, features, GEN.with_(repetition_span=0), loaded.stop_ids, batch_size=1)
    if request.param == "qwen":  # its random pages loop: the guard cuts them inside oracle drafts
        assert {g.finish_reason for g in reference} == {"repetition", "length"}
    return loaded, ids, features, reference, [g.token_ids for g in streams]


@pytest.mark.parametrize("kind", ["oracle", "wrong", "diverging"])
@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_tiny_checkpoints_draft_on_equals_draft_off(family, kind, batch_size):
    loaded, ids, features, reference, streams = family
    rng = random.Random(batch_size)
    vocab = loaded.model.embed_tokens.num_embeddings
    if kind == "oracle":
        layers = streams
    elif kind == "wrong":  # each bigram of the page followed by random tokens
        layers = [[t for i in range(0, len(s) - 1, 2) for t in (s[i], s[i + 1], *rng.sample(range(vocab), 3))]
                  for s in streams]
    else:
        layers = [s[:len(s) // 2] + rng.sample(range(vocab), 20) for s in streams]
    draft = DraftConfig(mode="auto")
    on = decode(loaded.model, [ids] * 8, features, GEN, loaded.stop_ids, batch_size=batch_size, draft=draft,
                text_layers=layers)
    same(reference, on)
    if kind == "oracle":
        assert sum(g.draft_tokens_accepted for g in on) > sum(len(g.token_ids) for g in on) / 2
        assert sum(g.forward_passes for g in on) < sum(g.forward_passes for g in reference) / 2
