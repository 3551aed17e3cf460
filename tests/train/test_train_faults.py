"""`vary train --resume` from a damaged training state (issue 21): fall back to the previous whole checkpoint
and say so, or stop with one line naming the file."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli_checks import assert_one_line_error
from train_fixtures import fast_config, write_data
from vary_cli.cli.app import app
from vary_cli.models.export import LATEST, TRAINING_STATE
from vary_cli.train.loop import run
from vary_cli.train.state import load_training_state


def _args(data, model, out, steps):
    return ["train", "--sft", str(data), "--model", str(model), "--out", str(out), "--device", "cpu",
            "--dtype", "fp32", "--workers", "0", "--max-steps", str(steps), "--batch-size", "2",
            "--max-length", "256", "--no-gradient-checkpointing", "--lr", "1e-3", "--warmup-ratio", "0",
            "--save-every", "2", "--resume"]


def _tear(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_data(tmp_path_factory.mktemp("data"))


def test_a_torn_training_state_falls_back_to_the_previous_whole_checkpoint(tiny_checkpoint, data, tmp_path):
    out = tmp_path / "out"
    # As the CLI would run it (lr, warm-up and save interval as in _args), keeping two checkpoints.
    run(fast_config(tiny_checkpoint, data, out, max_steps=4, save_every=2, keep=2))
    assert (out / LATEST).read_text().strip() == "checkpoint-4"
    _tear(out / "checkpoint-4" / TRAINING_STATE)
    result = CliRunner().invoke(app, _args(data, tiny_checkpoint, out, 4) + ["--keep", "2"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert (f"{out / 'checkpoint-4' / TRAINING_STATE} is damaged" in result.stderr
            and "resuming from the previous whole checkpoint, checkpoint-2" in result.stderr)
    assert "resuming from" in result.stderr and "at step 2" in result.stderr
    # Steps 3 and 4 were trained again and checkpoint-4 is whole once more.
    assert load_training_state(out / "checkpoint-4")["step"] == 4
    assert (out / LATEST).read_text().strip() == "checkpoint-4"


@pytest.mark.parametrize("damage", ["truncated", "not_a_training_state"])
def test_a_damaged_training_state_without_an_earlier_checkpoint_is_one_line(tiny_checkpoint, data, tmp_path, damage):
    import torch

    out = tmp_path / "out"
    run(fast_config(tiny_checkpoint, data, out, max_steps=2, save_every=2, keep=1))
    state = out / "checkpoint-2" / TRAINING_STATE
    if damage == "truncated":
        _tear(state)
    else:
        torch.save({"step": 2}, state)
    result = CliRunner().invoke(app, _args(data, tiny_checkpoint, out, 4))
    assert_one_line_error(result, 3, f"{state} is damaged", "no earlier whole checkpoint")
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-2", "latest", "metrics.jsonl"]
