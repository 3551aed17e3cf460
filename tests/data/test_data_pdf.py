"""`vary data pdf` through the CLI: known targets, skips with reasons, a broken PDF beside good ones, the same
output for any worker count, resume, shards that concatenate, and a round trip into `vary train`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from data_fixtures import sample_corpus
from vary_cli.cli.app import app
from vary_cli.train.dataset import read_samples

runner = CliRunner()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus") / "papers"
    return root, sample_corpus(root)


def _run(*args):
    return runner.invoke(app, ["data", "pdf", *map(str, args), "--min-chars", "20"])


def _records(out: Path, name: str = "data.jsonl"):
    return [json.loads(line) for line in (out / name).read_text().splitlines()]


@pytest.fixture(scope="module")
def whole(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    result = _run(corpus[0], "--out", out, "--workers", "1")
    return out, result


def test_targets_are_the_known_texts_and_bad_pdfs_are_reported(corpus, whole):
    _, texts = corpus
    out, result = whole
    assert result.exit_code == 1, result.output  # broken and encrypted PDFs: reported, the rest is done
    assert "broken.pdf: cannot open" in result.output and "locked.pdf: cannot open (encrypted" in result.output
    assert "Traceback" not in result.output
    records = _records(out)
    by_id = {r["id"]: r for r in records}
    assert list(by_id) == ["papers/good.pdf#1", "papers/good.pdf#2", "papers/sub/more.pdf#1", "papers/sub/more.pdf#2"]
    assert by_id["papers/good.pdf#1"]["conversations"][1]["value"] == texts["good.pdf"][0]
    assert by_id["papers/good.pdf#2"]["conversations"][1]["value"] == texts["good.pdf"][1]
    assert by_id["papers/sub/more.pdf#1"]["conversations"][1]["value"] == texts["more.pdf"][0]
    assert records[0]["conversations"][0] == {"from": "human", "value": "<image>\nProvide the OCR results of this image."}
    for record in records:
        with Image.open(out / record["image"]) as image:
            assert max(image.size) >= 1024
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["records"] == 4 and manifest["items"] == 5
    assert manifest["skipped"] == {"no text layer (scanned or figure-only page)": 1}
    assert len(manifest["errors"]) == 2 and manifest["versions"]["pypdfium2"]
    assert len(read_samples(out / "data.jsonl")) == 4  # vary train's own reader accepts every record


def test_too_little_text_and_other_languages_are_skipped_with_reasons(corpus, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["data", "pdf", str(corpus[0] / "good.pdf"), "--out", str(out), "--workers", "1",
                                 "--min-chars", "200", "--pages", "1-2"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["items"] == 2 and manifest["records"] == 1  # page 1 has 182 characters, page 2 has 232
    assert manifest["skipped"] == {"too little text (< 200 characters)": 1}
    result = runner.invoke(app, ["data", "pdf", str(corpus[0] / "good.pdf"), "--out", str(tmp_path / "zh"),
                                 "--workers", "1", "--min-chars", "20", "--lang", "zh"])
    manifest = json.loads((tmp_path / "zh" / "manifest.json").read_text())
    assert result.exit_code == 0 and manifest["records"] == 0 and manifest["skipped"]["language en not in --lang"] == 2


def test_two_workers_write_the_same_files_as_one(corpus, whole, tmp_path):
    out, _ = whole
    two = tmp_path / "two"
    assert _run(corpus[0], "--out", two, "--workers", "2").exit_code == 1
    assert (two / "data.jsonl").read_bytes() == (out / "data.jsonl").read_bytes()
    for record in _records(out):
        assert (two / record["image"]).read_bytes() == (out / record["image"]).read_bytes()


def test_a_rerun_resumes_and_redoes_nothing(corpus, tmp_path):
    out = tmp_path / "out"
    first = runner.invoke(app, ["data", "pdf", str(corpus[0] / "good.pdf"), "--out", str(out), "--workers", "1",
                                "--min-chars", "20", "--pages", "1"])
    assert first.exit_code == 0
    image = out / _records(out)[0]["image"]
    before = image.stat().st_mtime_ns
    again = runner.invoke(app, ["data", "pdf", str(corpus[0] / "good.pdf"), "--out", str(out), "--workers", "1",
                                "--min-chars", "20"])
    assert again.exit_code == 0 and "resuming: 1 of 3 pages already done" in again.output
    assert image.stat().st_mtime_ns == before  # the finished page was not rendered again
    assert [r["id"] for r in _records(out)] == ["good.pdf#1", "good.pdf#2"]
    changed = runner.invoke(app, ["data", "pdf", str(corpus[0] / "good.pdf"), "--out", str(out), "--min-chars", "30"])
    assert changed.exit_code != 0 and "other settings" in changed.output and "min_chars" in changed.output


def test_shards_concatenate_into_the_whole_set(corpus, whole, tmp_path):
    out, _ = whole
    shared = tmp_path / "shards"
    codes = [_run(corpus[0], "--out", shared, "--workers", "1", "--shard", s).exit_code for s in ("0/2", "1/2")]
    assert sorted(codes) == [0, 1] or codes == [1, 1]  # each bad PDF is reported by one shard only
    parts = [(shared / f"data-0000{i}-of-00002.jsonl").read_text() for i in range(2)]
    assert all(parts)
    assert sorted((parts[0] + parts[1]).splitlines()) == sorted((out / "data.jsonl").read_text().splitlines())
    errors = [e for i in range(2) for e in json.loads((shared / f"manifest-0000{i}-of-00002.json").read_text())["errors"]]
    assert len(errors) == 2
    mixed = runner.invoke(app, ["data", "mix", str(shared), "--out", str(tmp_path / "mixed")])  # the shards as one source
    assert mixed.exit_code == 0, mixed.output
    assert len((tmp_path / "mixed" / "data.jsonl").read_text().splitlines()) == 4


def test_torchrun_environment_picks_the_shard(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    _run(corpus[0], "--out", tmp_path, "--workers", "1")
    assert (tmp_path / "data-00001-of-00002.jsonl").exists() and not (tmp_path / "data.jsonl").exists()


def test_missing_input_is_one_line(tmp_path):
    result = runner.invoke(app, ["data", "pdf", str(tmp_path / "nope.pdf"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no such file" in result.output and len(result.output.strip().splitlines()) == 1


def test_round_trip_into_vary_train(whole, tiny_checkpoint, tmp_path):
    out, _ = whole
    result = runner.invoke(app, ["train", "--sft", str(out / "data.jsonl"), "--model", str(tiny_checkpoint),
                                 "--out", str(tmp_path / "run"), "--device", "cpu", "--workers", "0", "--max-steps",
                                 "2", "--batch-size", "2", "--max-length", "256", "--no-gradient-checkpointing"])
    assert result.exit_code == 0, result.output
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2]


def test_round_trip_into_the_vocabulary_stage(whole, tiny_opt_checkpoint, tmp_path):
    out, _ = whole
    result = runner.invoke(app, ["train", "--vocabulary", str(out / "data.jsonl"), "--model", str(tiny_opt_checkpoint),
                                 "--out", str(tmp_path / "run"), "--device", "cpu", "--dtype", "fp32", "--workers", "0",
                                 "--max-steps", "2", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "checkpoint-2").is_dir()


def test_a_page_whose_text_holds_the_image_placeholder_is_skipped(tmp_path):
    from data_fixtures import FONT, write_pdf

    def page(c):
        c.setFont(FONT, 11)
        c.drawString(72, 700, "The template writes <image> where the picture goes, in every sample we make.")
        c.showPage()

    write_pdf(tmp_path / "doc.pdf", [page])
    result = _run(tmp_path / "doc.pdf", "--out", tmp_path / "out", "--workers", "1")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["skipped"] == {"text contains the <image> placeholder": 1}
