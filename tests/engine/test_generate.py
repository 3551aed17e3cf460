"""engine/generate.py with a mock model: greedy/sampled determinism, max tokens, stop ids, the repetition guard."""

import torch

from vary_cli.engine.generate import GenerationConfig
from vary_cli.engine.generate import RepetitionGuard, generate


class ScriptedModel(torch.nn.Module):
    """Emits a fixed script of tokens (then 99 forever) whatever the input: a canned-output mock model."""

    def __init__(self, script, vocab=100):
        super().__init__()
        self.script, self.vocab = script, vocab
        self.embed_tokens = torch.nn.Embedding(vocab, 4)
        self.step = 0

    def embed(self, ids, features):
        return self.embed_tokens(ids)

    def prompt_alphas(self, lengths):
        return [1.0] * len(lengths)

    def new_cache(self, batch, capacity):
        return None

    def forward(self, embeds, positions, bias, alphas, cache=None, last_only=False):
        token = self.script[self.step] if self.step < len(self.script) else 99
        self.step += 1
        logits = torch.randn(embeds.shape[0], 1, self.vocab) * 0.01
        logits[..., token] = 10.0
        return logits


def run(script, **gen):
    model = ScriptedModel(script)
    (result,) = generate(model, [[1, 2, 3]], None, GenerationConfig(**gen), {0}, 0)
    return result


def test_stops_at_a_stop_id_without_returning_it():
    result = run([5, 6, 0, 7], max_new_tokens=10)
    assert result.token_ids == [5, 6] and result.finish_reason == "stop"


def test_max_new_tokens_gives_length():
    result = run([5, 6, 7, 8], max_new_tokens=3)
    assert result.token_ids == [5, 6, 7] and result.finish_reason == "length"


def test_repetition_guard_cuts_a_loop_and_keeps_the_text_before_it():
    intro = list(range(10, 40))
    loop = [41, 42, 43, 44, 45]
    result = run(intro + loop * 100, max_new_tokens=600, repetition_span=64)
    assert result.finish_reason == "repetition"
    assert result.token_ids == intro + loop  # the text before the loop and one pass of the cycle


def test_repetition_guard_lets_short_repeats_through_and_can_be_disabled():
    table_rows = [7, 8, 9] * 10 + list(range(10, 60))  # a row pattern repeated a few times
    assert run(table_rows + [0], max_new_tokens=200).finish_reason == "stop"
    assert run([5] * 300, max_new_tokens=300, repetition_span=0).finish_reason == "length"


def test_guard_needs_min_repeats_for_long_cycles():
    guard = RepetitionGuard(span=20, max_period=50, min_repeats=6)
    cycle = list(range(100, 140))  # period 40: needs 240 periodic tokens, not just 20
    fed = [guard.feed(t) for t in cycle * 5]
    assert all(f is None for f in fed)
    cut = [guard.feed(t) for t in cycle * 2]
    assert any(f is not None for f in cut)


def test_sampling_is_reproducible_with_a_seed():
    def sample(seed):
        model = ScriptedModel([])
        model.forward = lambda e, *a, **k: torch.zeros(e.shape[0], 1, 100)  # uniform: the sampler decides
        (r,) = generate(model, [[1]], None, GenerationConfig(max_new_tokens=20, temperature=1.0, seed=seed), {0}, 0)
        return r.token_ids

    assert sample(3) == sample(3)
    assert sample(3) != sample(4)


def test_a_fixed_context_ends_the_page_with_length_instead_of_failing():
    model = ScriptedModel(list(range(10, 90)))
    model.max_positions = 8  # prompt of 3 -> at most 5 new tokens
    (result,) = generate(model, [[1, 2, 3]], None, GenerationConfig(max_new_tokens=50), {0}, 0)
    assert result.token_ids == [10, 11, 12, 13, 14] and result.finish_reason == "length"
