"""`vary eval run` on the tiny checkpoint: manifest items through the convert pipeline, resume, nougat pairs."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from vary_cli.cli.app import app
from vary_cli.convert import pipeline, stream
from vary_cli.engine.config import GenerationConfig
from vary_cli.eval import run as eval_run
from vary_cli.eval.readers import read_ground_truth
from vary_cli.models.checkpoint import load_directory
from vary_cli.models.preprocess import load_image

GEN = GenerationConfig(max_new_tokens=4)


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    return load_directory(tiny_checkpoint, torch.device("cpu"), torch.float32)


def page(path, shade):
    image = Image.new("RGB", (90, 120), (255, shade, 255))
    ImageDraw.Draw(image).text((10, 10), f"page {shade}", fill="black")
    image.save(path)
    return path


@pytest.fixture
def manifest(tmp_path):
    (tmp_path / "img").mkdir()
    lines = [{"id": f"p{i}", "image": f"img/{i}.png", "answers": [f"page text {i}"]} for i in range(3)]
    for i in range(3):
        page(tmp_path / "img" / f"{i}.png", 60 * i)
    pdf_pages = [Image.new("RGB", (100, 130), "white"), Image.new("RGB", (100, 130), (200, 255, 255))]
    pdf_pages[0].save(tmp_path / "doc.pdf", save_all=True, append_images=pdf_pages[1:])
    lines.append({"id": "doc-2", "pdf": "doc.pdf", "page": 2, "prompt": "markdown", "answers": ["second page"]})
    path = tmp_path / "bench.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_run_scores_what_the_pipeline_reads_and_resumes(tiny_checkpoint, loaded, manifest, tmp_path, monkeypatch):
    out = tmp_path / "out"
    args = ["eval", "run", str(manifest), "--model", str(tiny_checkpoint), "--out", str(out), "--device", "cpu",
            "--max-new-tokens", "4", "--batch-size", "2", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["pairs"] == 4 and data["task"] == "ocr" and set(data["metrics"]) >= {"edit_distance", "f1", "meteor"}
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["id"] for p in predictions] == ["p0", "p1", "p2", "doc-2"]
    # The same text `vary ocr` gives for each image (batching does not change greedy output).
    for i in range(3):
        (expected,) = pipeline.ocr_images(loaded, [manifest.parent / "img" / f"{i}.png"], "ocr", GEN)
        assert predictions[i]["answer"] == expected.text.strip()
    # A second run generates nothing: every item comes from the resume store.
    def nothing_again(loaded_, items, *a, **k):
        for item in items:
            pytest.fail(f"regenerated a finished item: {item.source}")
        yield from ()

    monkeypatch.setattr(eval_run, "read_images", nothing_again)
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout.strip().splitlines()[-1]) == data


def test_a_failing_item_is_failed_with_its_reason_and_the_rest_survive(loaded, manifest, tmp_path, monkeypatch):
    bench = read_ground_truth(manifest)
    real = eval_run.read_images

    def flaky(loaded_, items, *a, **k):
        def failing():
            for item in items:
                image = load_image(item.image) if isinstance(item.image, Path) else item.image
                if image.getpixel((80, 110))[1] == 60:  # page 1's colour
                    item.image = RuntimeError("out of memory")
                yield item
        return real(loaded_, failing(), *a, **k)

    monkeypatch.setattr(eval_run, "read_images", flaky)
    outcome = eval_run.run_benchmark(loaded, bench, tmp_path / "out", GEN, batch_size=4)
    assert outcome.predictions["p1"] == "" and len(outcome.predictions) == 4
    assert list(outcome.failed) == ["p1"] and "out of memory" in outcome.failed["p1"]
    kept = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert kept[1]["finish_reason"] == "error" and "out of memory" in kept[1]["error"]
    monkeypatch.setattr(eval_run, "read_images", real)  # the next run retries the failed item only
    assert not eval_run.run_benchmark(loaded, bench, tmp_path / "out", GEN, batch_size=4).failed
    kept = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [k["finish_reason"] for k in kept].count("error") == 0


def test_nougat_pairs_convert_whole_documents(loaded, tmp_path):
    bench_dir = tmp_path / "nougat"
    bench_dir.mkdir()
    pages = [Image.new("RGB", (100, 130), "white"), Image.new("RGB", (100, 130), (220, 255, 255))]
    pages[0].save(bench_dir / "paper.pdf", save_all=True, append_images=pages[1:])
    (bench_dir / "paper.mmd").write_text("# Title\n\nSome text.\n")
    bench = read_ground_truth(bench_dir)
    assert [item.key for item in bench.items] == ["paper"] and bench.items[0].answers == ["# Title\n\nSome text."]
    predictions = eval_run.run_benchmark(loaded, bench, tmp_path / "out", GEN, batch_size=2).predictions
    _, text = stream.convert_document(loaded, bench_dir / "paper.pdf", None, prompt="markdown", fmt="md", gen=GEN)
    assert "<!-- page" not in predictions["paper"]
    assert predictions["paper"] == "\n".join(l for l in text.splitlines() if not l.startswith("<!-- page")).strip()


def test_docvqa_layout_runs_with_the_questions_as_prompts(tiny_checkpoint, tmp_path, monkeypatch):
    (tmp_path / "documents").mkdir()
    for name in ("a", "b"):
        page(tmp_path / "documents" / f"{name}.png", 90)
    val = tmp_path / "val_v1.0.json"
    val.write_text(json.dumps({"data": [
        {"questionId": 7, "question": "What is the date?", "image": "documents/a.png", "answers": ["1 May"]},
        {"questionId": 8, "question": "Who signed?", "image": "documents/b.png", "answers": ["Ann"]}]}))
    prompts = []
    real = eval_run.read_images

    def recording(loaded_, items, *a, **k):
        def noted():
            for item in items:
                prompts.append(item.prompt)
                yield item
        return real(loaded_, noted(), *a, **k)

    monkeypatch.setattr(eval_run, "read_images", recording)
    report = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["eval", "run", str(val), "--task", "docvqa", "--model", str(tiny_checkpoint),
                                      "--out", str(tmp_path / "out"), "--device", "cpu", "--max-new-tokens", "3",
                                      "--limit", "1", "--json", "--report", str(report)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["pairs"] == 1 and set(data["metrics"]) == {"anls"} and prompts == ["What is the date?"]
    assert "data:image/jpeg;base64," in report.read_text()


def test_a_missing_image_is_reported_counted_left_out_and_exits_1(tiny_checkpoint, manifest, tmp_path):
    (manifest.parent / "img" / "1.png").unlink()
    out = tmp_path / "out"
    per_page = tmp_path / "pages.jsonl"
    result = CliRunner().invoke(app, ["eval", "run", str(manifest), "--model", str(tiny_checkpoint), "--out", str(out),
                                      "--device", "cpu", "--max-new-tokens", "3", "--batch-size", "2", "--json",
                                      "--per-page", str(per_page)])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert (data["pairs"], data["scored"], data["skipped"], data["failed"]) == (4, 3, 1, 1)
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and failed[0].startswith("failed: p1: ") and "1.png" in failed[0]
    assert "1 item(s) failed" in result.stderr and "Traceback" not in result.output
    pages = {p["key"]: p for p in map(json.loads, per_page.read_text().splitlines())}
    assert pages["p1"]["skipped"].startswith("failed: ") and "edit_distance" not in pages["p1"]
    kept = {p["id"]: p for p in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())}
    assert kept["p1"]["finish_reason"] == "error" and kept["p0"]["finish_reason"] != "error"
    # The failed item is not counted as an empty prediction.
    assert data["empty_predictions"] == sum(not kept[k]["answer"] for k in ("p0", "p2", "doc-2"))


def test_a_nougat_document_that_does_not_open_fails_alone(loaded, tmp_path):
    bench_dir = tmp_path / "nougat"
    bench_dir.mkdir()
    Image.new("RGB", (100, 130), "white").save(bench_dir / "good.pdf")
    (bench_dir / "good.mmd").write_text("text")
    (bench_dir / "broken.pdf").write_bytes(b"%PDF-1.4\n garbage")
    (bench_dir / "broken.mmd").write_text("text")
    outcome = eval_run.run_benchmark(loaded, read_ground_truth(bench_dir), tmp_path / "out", GEN, batch_size=2)
    assert list(outcome.failed) == ["broken"] and set(outcome.predictions) == {"good", "broken"}


def test_got_runs_on_the_same_benchmark_layout(got_checkpoints, manifest, tmp_path):
    """`vary eval run --model GOT`: images get GOT's plain OCR (as `vary ocr` reads them), a PDF page its
    format OCR through the convert pipeline."""
    out = tmp_path / "out"
    args = ["eval", "run", str(manifest), "--model", str(got_checkpoints["original"]), "--out", str(out),
            "--device", "cpu", "--max-new-tokens", "4", "--batch-size", "2", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["pairs"] == 4
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    got = load_directory(got_checkpoints["original"], torch.device("cpu"), torch.float32)
    for i in range(3):
        (expected,) = pipeline.ocr_images(got, [manifest.parent / "img" / f"{i}.png"], "ocr", GEN)
        assert predictions[i]["answer"] == expected.text.strip()
    from vary_cli.convert.raster import open_document

    ((_, rendered),) = open_document(manifest.parent / "doc.pdf").iter_pages([2])
    rendered.save(tmp_path / "doc-2.png")
    (expected,) = pipeline.ocr_images(got, [tmp_path / "doc-2.png"], "markdown", GEN)  # GOT's format OCR
    assert predictions[3]["id"] == "doc-2" and predictions[3]["answer"] == expected.text.strip()
