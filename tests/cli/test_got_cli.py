"""GOT-OCR2.0 through the real commands: `vary ocr` (plain OCR, --crops, --box, --color), `vary convert`
(format OCR in jsonl, md/tex/mmd; plain in txt; --crops), one-line errors, and `--model got-ocr2` by name
(downloaded from a fake hub in the release layout, then a PDF converted end to end).

The expected text is transformers' greedy output (GotOcr2Processor, then generate) decoded without special
tokens, from a float32 copy of the reference, as the CLI runs float32 on a CPU.
"""

from __future__ import annotations

import copy
import json
import re

import pytest
from fake_hub import FakeHub
from tiny_got import page, reference_tokens
from typer.testing import CliRunner

from vary_cli.cli.app import app

MAX_NEW = 12
runner = CliRunner()


@pytest.fixture(scope="module")
def reference32(got_reference):
    model, processor = got_reference
    return copy.deepcopy(model).float(), processor


def expected_text(reference32, image, formatted: bool, **options) -> str:
    model, processor = reference32
    return processor.decode(reference_tokens(model, processor, image, formatted, MAX_NEW, **options),
                            skip_special_tokens=True)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, tuple]:
    root = tmp_path_factory.mktemp("got_images")
    out = {}
    for name, size, seed in (("page", (120, 160), 0), ("wide", (100, 60), 1)):
        image = page(*size, seed=seed)
        image.save(root / f"{name}.png")
        out[name] = (root / f"{name}.png", image)
    return out


def ocr(model_dir, *args):
    return runner.invoke(app, ["ocr", *map(str, args), "--model", str(model_dir), "--max-new-tokens", str(MAX_NEW)])


def test_ocr_prints_the_plain_ocr(got_checkpoint, images, reference32):
    path, image = images["page"]
    result = ocr(got_checkpoint, path)
    assert result.exit_code == 0, result.output
    assert result.stdout == expected_text(reference32, image, False) + "\n"


@pytest.mark.parametrize("args,options", [(["--crops", "auto"], {"crops": 12}), (["--crops", "2"], {"crops": 2}),
                                          (["--box", "10,20,90,50"], {"box": (10, 20, 90, 50)}),
                                          (["--color", "blue", "--box", "0,0,50.5,60"],
                                           {"color": "blue", "box": (0, 0, 50.5, 60)})])
def test_ocr_crops_box_and_colour(got_checkpoints, images, reference32, args, options):
    path, image = images["wide"]
    result = ocr(got_checkpoints["hf"], path, *args)
    assert result.exit_code == 0, result.output
    assert result.stdout == expected_text(reference32, image, False, **options) + "\n"


@pytest.mark.parametrize("args,needle", [(["--box", "50,0,10,10"], "x1 <= x2"),
                                         (["--box", "0,0,101,10"], "outside the 100x60 image"),
                                         (["--color", "purple"], "--color must be one of red, green, blue")])
def test_bad_boxes_and_colours_are_one_line(got_checkpoints, images, args, needle):
    result = ocr(got_checkpoints["hf"], images["wide"][0], *args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.output, result.output


def test_malformed_box_and_crops_are_one_line_usage_errors(got_checkpoints, images):
    import subprocess
    import sys

    for args, needle in ((["--box", "1,2,3"], "--box must be four numbers"),
                         (["--crops", "many"], "--crops must be auto, off or a number")):
        run = subprocess.run([sys.executable, "-m", "vary_cli", "ocr", str(images["wide"][0]), *args],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1 and needle in run.stderr, run.stderr


def test_got_options_on_a_vary_model_are_one_line(tiny_checkpoint, images):
    result = ocr(tiny_checkpoint, images["wide"][0], "--crops", "auto")
    assert result.exit_code != 0 and "GOT-OCR2.0 options" in result.output.strip().splitlines()[-1]


def test_convert_writes_format_ocr_in_jsonl_and_plain_in_txt(got_checkpoint, images, reference32, tmp_path):
    path, image = images["page"]
    common = ["--model", str(got_checkpoint), "--max-new-tokens", str(MAX_NEW), "--quiet"]
    jsonl = runner.invoke(app, ["convert", str(path), "-o", str(tmp_path / "out.jsonl"), *common])
    assert jsonl.exit_code == 0, jsonl.output
    (record,) = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert record["text"] == expected_text(reference32, image, True)
    txt = runner.invoke(app, ["convert", str(path), "-o", str(tmp_path / "out.txt"), *common])
    assert txt.exit_code == 0, txt.output
    text = (tmp_path / "out.txt").read_text()
    assert text.split("\n\n[LENGTH_CUT:1]")[0] == expected_text(reference32, image, False)  # the page hit MAX_NEW
    tiled = runner.invoke(app, ["convert", str(path), "-o", str(tmp_path / "tiled.jsonl"), "--crops", "auto", *common])
    assert tiled.exit_code == 0, tiled.output
    (record,) = [json.loads(line) for line in (tmp_path / "tiled.jsonl").read_text().splitlines()]
    assert record["text"] == expected_text(reference32, image, True, crops=12)


def test_convert_by_name_downloads_the_release_and_converts_a_pdf(got_checkpoints, monkeypatch, tmp_path):
    """`vary convert paper.pdf --model got-ocr2 -o paper.md` (and the original layout by its name): the
    registry's file lists fetch what the loader needs, no remote code, and the PDF converts."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    hub = FakeHub(monkeypatch)
    for repo, layout in (("stepfun-ai/GOT-OCR-2.0-hf", "hf"), ("stepfun-ai/GOT-OCR2_0", "original")):
        files = {p.name: p.read_bytes() for p in got_checkpoints[layout].iterdir()}
        hub.publish(repo, {**files, "modeling_GOT.py": b"# remote code vary never fetches", "README.md": b"card"})
    pdf = tmp_path / "paper.pdf"
    page(120, 160).save(pdf, "PDF", save_all=True, append_images=[page(120, 160, seed=1)])
    for name in ("got-ocr2", "got-ocr2-original"):
        out = tmp_path / f"{name}.md"
        result = runner.invoke(app, ["convert", str(pdf), "--model", name, "-o", str(out), "--max-new-tokens", "6"])
        assert result.exit_code == 0, result.output
        assert re.findall(r"<!-- page (\d+) -->", out.read_text()) == ["1", "2"]
        assert "2 page(s), 0 failed page(s)" in result.output
    fetched = {f for call in hub.calls for f in call["allow_patterns"]}
    assert "modeling_GOT.py" not in fetched and {"tokenizer.json", "qwen.tiktoken"} <= fetched
    listing = runner.invoke(app, ["models", "list"], env={"COLUMNS": "250"})
    rows = {line.split()[0]: line for line in listing.stdout.splitlines() if line.strip()}
    assert " yes " in rows["got-ocr2"] and " yes " in rows["got-ocr2-original"]
