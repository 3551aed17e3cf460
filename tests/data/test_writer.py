"""data/writer.py: per-item seeds, resume after a crash mid-line, other settings refused, shard file names."""

from __future__ import annotations

import json
import random

import pytest

from vary_cli.convert.shard import Shard
from vary_cli.data.writer import Item, Outcome, item_seed, output_names, run_items
from vary_cli.errors import OutputError

CALLS: list[str] = []


def _work(item: Item, seed: int) -> Outcome:
    CALLS.append(item.key)
    if item.index % 3 == 2:
        return Outcome(item.key, item.index, skipped="every third")
    value = random.Random(seed).randint(0, 10 ** 9)
    record = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": str(value)}]}
    return Outcome(item.key, item.index, records=[record], counts={"made": 1})


def _items(n=7):
    return [Item(f"k{i}", i) for i in range(n)]


def _run(out, **kw):
    options = dict(seed=1, workers=1, shard=Shard(), settings={"x": 1})
    options.update(kw)
    return run_items("test", _items(), _work, out, **options)


def test_seeds_depend_on_seed_and_key_only():
    assert item_seed(1, "a") == item_seed(1, "a") != item_seed(2, "a") != item_seed(1, "b")


def test_a_torn_journal_line_is_redone_and_finished_items_are_not(tmp_path):
    summary = _run(tmp_path)
    first = (tmp_path / "data.jsonl").read_bytes()
    assert summary.records == 5 and dict(summary.skipped) == {"every third": 2}
    journal = tmp_path / output_names(Shard())[2]
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(lines[:-2]) + lines[-2][: len(lines[-2]) // 2])  # crash while writing item 5
    CALLS.clear()
    summary = _run(tmp_path)
    assert CALLS == ["k5", "k6"] and summary.resumed == 5
    assert (tmp_path / "data.jsonl").read_bytes() == first
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["counts"] == {"made": 5} and manifest["records"] == 5 and manifest["items"] == 7


def test_other_settings_are_refused(tmp_path):
    _run(tmp_path)
    with pytest.raises(OutputError, match="other settings"):
        _run(tmp_path, seed=2)


def test_shards_split_the_items_and_name_their_files(tmp_path):
    owned = []
    for index in range(3):
        summary = _run(tmp_path, shard=Shard(index, 3, 0, "--shard"))
        assert summary.data.name == f"data-{index:05d}-of-00003.jsonl"
        owned.append(summary.items)
    assert sum(owned) == 7
