"""`vary train --eval DATA --eval-generate N`: greedy decodes of eval samples scored beside the eval loss."""

from __future__ import annotations

import json

import pytest
import torch

from train_fixtures import ANSWERS, fast_config, write_data
from vary_cli.engine.config import GenerationConfig
from vary_cli.convert.pipeline import ocr_images
from vary_cli.errors import VaryError
from vary_cli.eval.metrics import edit_distance, set_scores
from vary_cli.eval.tokens import tokenize_pair
from vary_cli.models.checkpoint import load_directory
from vary_cli.train.loop import generation_budget, run


def test_eval_generate_logs_the_edit_distance_and_f1_of_greedy_decodes(tiny_checkpoint, tmp_path):
    data = write_data(tmp_path / "data")
    out = tmp_path / "run"
    run(fast_config(tiny_checkpoint, data, out, max_steps=2, eval_data=(data,), eval_every=1, eval_generate=2))
    evals = [m for m in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "eval_loss" in m]
    assert [m["step"] for m in evals] == [1, 2] and all(m["eval_generated"] == 2 for m in evals)
    # The last evaluation equals decoding the saved step-2 checkpoint with `vary ocr`'s pipeline.
    loaded = load_directory(out / "checkpoint-2", torch.device("cpu"), torch.float32)
    distances, f1s = [], []
    for i, answer in enumerate(ANSWERS[:2]):
        gen = GenerationConfig(max_new_tokens=generation_budget(len(loaded.tokenizer.encode(answer)), 256))
        (result,) = ocr_images(loaded, [data.parent / "pages" / f"{i}.png"],
                               "Provide the ocr results of this image.", gen)
        distances.append(edit_distance(result.text.strip(), answer))
        f1s.append(set_scores(*tokenize_pair(result.text.strip(), answer, "jieba"))[2])
    assert evals[-1]["eval_edit_distance"] == pytest.approx(sum(distances) / 2)
    assert evals[-1]["eval_f1"] == pytest.approx(sum(f1s) / 2)
    assert 0 <= evals[-1]["eval_edit_distance"] <= 1


def test_eval_generate_needs_eval_data(tiny_checkpoint, tmp_path):
    with pytest.raises(VaryError, match="--eval-generate needs --eval DATA"):
        fast_config(tiny_checkpoint, tmp_path / "d.jsonl", tmp_path / "o", eval_generate=1)
    with pytest.raises(VaryError, match="--eval-generate must be >= 0"):
        fast_config(tiny_checkpoint, tmp_path / "d.jsonl", tmp_path / "o", eval_generate=-1, eval_data=(tmp_path,))


def test_vary_tiny_vocabulary_stage_decodes_with_the_image_only_prompt(tiny_opt_checkpoint, tmp_path):
    from vary_cli.train.config import TrainConfig

    data = write_data(tmp_path / "pairs", answers=ANSWERS[:2], pairs=True)
    out = tmp_path / "vocab"
    # The vocabulary-stage recipe of tests/train/test_vocabulary_stage.py, which overfits two pages in 25 steps.
    run(TrainConfig(stage="vocabulary", data=(data,), out=out, model=str(tiny_opt_checkpoint), device="cpu",
                    dtype="fp32", batch_size=2, workers=0, lr=1e-2, max_steps=25, save_every=100, dropout=0.0,
                    eval_data=(data,), eval_every=25, eval_generate=2))
    (last,) = [m for m in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "eval_loss" in m]
    assert last["eval_generated"] == 2 and last["eval_edit_distance"] < 0.2 and last["eval_f1"] > 0.5
