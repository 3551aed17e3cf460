"""The engine with a mock model: stop ids, max tokens, the repetition guard, sampling, fixed contexts, and
the submit/step/cancel interface the server drives."""

import torch

from engine_util import decode
from mock_models import TableModel, chain
from vary_cli.engine.batcher import Engine
from vary_cli.engine.config import GenerationConfig
from vary_cli.engine.guard import RepetitionGuard
from vary_cli.engine.requests import PageRequest

STOP = 0


def run(table, prompt=(1,), **gen):
    (result,) = decode(TableModel(table), [list(prompt)], None, GenerationConfig(**gen), {STOP})
    return result


def test_stops_at_a_stop_id_without_returning_it():
    result = run({1: 5, 5: 6, 6: STOP}, max_new_tokens=10)
    assert result.token_ids == [5, 6] and result.finish_reason == "stop"
    assert result.forward_passes == 3  # the prefill and two one-token passes


def test_max_new_tokens_gives_length():
    result = run({1: 5, **chain(5, 10)}, max_new_tokens=3)
    assert result.token_ids == [5, 6, 7] and result.finish_reason == "length"


def test_repetition_guard_cuts_a_loop_and_keeps_the_text_before_it():
    table = {1: 10, **chain(10, 30, then=41), **chain(41, 5, then=41)}  # 30 tokens of text, then a 5-cycle
    result = run(table, max_new_tokens=600, repetition_span=64)
    assert result.finish_reason == "repetition"
    assert result.token_ids == list(range(10, 40)) + [41, 42, 43, 44, 45]


def test_repetition_guard_can_be_disabled():
    assert run({1: 5, 5: 5}, max_new_tokens=300, repetition_span=0).finish_reason == "length"


def test_guard_needs_min_repeats_for_long_cycles():
    guard = RepetitionGuard(span=20, max_period=50, min_repeats=6)
    cycle = list(range(100, 140))  # period 40: needs 240 periodic tokens, not just 20
    assert all(guard.feed(t) is None for t in cycle * 5)
    assert any(guard.feed(t) is not None for t in cycle * 2)


def test_sampling_is_reproducible_with_a_seed():
    def sample(seed):
        model = TableModel({})
        model.scores.zero_()  # uniform: the sampler decides
        gen = GenerationConfig(max_new_tokens=20, temperature=1.0, seed=seed)
        (result,) = decode(model, [[1]], None, gen, {STOP})
        return result.token_ids

    assert sample(3) == sample(3)
    assert sample(3) != sample(4)


def test_a_fixed_context_ends_the_page_with_length_instead_of_failing():
    model = TableModel({3: 10, **chain(10, 80)}, max_positions=8)  # prompt of 3 -> at most 5 new tokens
    (result,) = decode(model, [[1, 2, 3]], None, GenerationConfig(max_new_tokens=50), {STOP})
    assert result.token_ids == [10, 11, 12, 13, 14] and result.finish_reason == "length"


def test_submit_step_cancel():
    # Three pages of 20 tokens at batch 2; page "b" is cancelled while it decodes, "c" while it waits.
    model = TableModel({1: 10, **chain(10, 20, then=STOP), 2: 40, **chain(40, 20, then=STOP), 3: 70,
                        **chain(70, 20, then=STOP)})
    engine = Engine(model, lambda images: None, GenerationConfig(max_new_tokens=50), {STOP}, batch_size=2)
    for key, prompt in (("a", [1]), ("b", [2]), ("c", [3]), ("d", [1])):
        engine.submit(PageRequest(key, None, prompt))
    outcomes = engine.step() + engine.step()
    assert outcomes == [] and len(engine.rows) == 2 and len(engine.pending) == 2
    assert engine.cancel(lambda key: key in ("b", "c")) == 2
    while not engine.idle:
        outcomes += engine.step()
    assert {o.request.key: o.generation.token_ids for o in outcomes} == {"a": list(range(10, 30)),
                                                                          "d": list(range(10, 30))}
