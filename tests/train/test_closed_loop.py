"""The paper's loop closed at toy scale: `vary data pdf` -> `vary train --sft` -> `vary convert` -> `vary eval score`.

A tiny Vary-toy-shaped model trained for a few steps on one generated page must read that page better than
before, measured by the same convert and scoring steps (bench/make_readers.py's `convert_and_score`) that
make the bench's reader checkpoints, here through the CLI in-process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from typer.testing import CliRunner

from data_fixtures import ONE_COLUMN_TEXT, one_column_page, write_pdf
from vary_cli.cli.app import app
from vary_cli.text.prompts import PRESETS

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from make_readers import convert_and_score, ground_truth  # noqa: E402

runner = CliRunner()


def cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, f"vary {' '.join(args)}: {result.output}"
    return result.stdout


def test_training_on_a_page_lowers_its_edit_distance(tiny_checkpoint, tmp_path):
    pdf = tmp_path / "pdfs" / "page.pdf"
    write_pdf(pdf, [one_column_page])
    data = tmp_path / "data"
    cli("data", "pdf", str(pdf.parent), "--out", str(data), "--prompt", PRESETS["ocr"], "--workers", "1")
    gt = tmp_path / "gt.jsonl"
    assert ground_truth(data, gt) == ["page.pdf"]
    assert json.loads(gt.read_text()) == {"source": "page.pdf", "page": 1, "text": ONE_COLUMN_TEXT}
    budget = len(ONE_COLUMN_TEXT) + 50  # the tiny vocabulary spells the page byte by byte

    before = convert_and_score(tiny_checkpoint, [pdf], tmp_path / "before", gt, budget, 1, run=cli)
    run_dir = tmp_path / "run"
    cli("train", "--sft", str(data / "data.jsonl"), "--model", str(tiny_checkpoint), "--out", str(run_dir),
        "--lr", "3e-3", "--max-steps", "80", "--batch-size", "1", "--warmup-ratio", "0",
        "--no-gradient-checkpointing", "--workers", "0", "--device", "cpu", "--save-every", "1000")
    after = convert_and_score(run_dir, [pdf], tmp_path / "after", gt, budget, 1, run=cli)

    assert before["pages_scored"] == after["pages_scored"] == 1
    assert before["edit_distance"] > 0.8, before  # the seeded model writes noise
    assert after["edit_distance"] < 0.25, (before, after)  # 80 steps: it reads the page (0.0 when written)
    assert after["f1"] > before["f1"]
