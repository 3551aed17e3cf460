"""`vary data` bad inputs and faults (issue 21): one line, the right exit code, no partial output; a bad
image is named, skipped and counted."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from cli_checks import assert_one_line_error
from vary_cli.cli.app import app

runner = CliRunner()


def _photo(path: Path, size=(60, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (30, 120, 40)).save(path)
    return path


def _bomb(path: Path) -> Path:
    """A small PNG whose header claims 40000 x 40000 pixels: past Pillow's 2 x MAX_IMAGE_PIXELS limit."""
    _photo(path, (8, 8))
    data = bytearray(path.read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", 40000, 40000)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr:ihdr + 17])))
    path.write_bytes(bytes(data))
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)
    return path


def _coco(path: Path, images: list[dict], annotations: list[dict]) -> Path:
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "cat"}]}))
    return path


def test_negatives_skip_a_decompression_bomb_by_name_and_count_it(tmp_path):
    photos = tmp_path / "photos"
    _photo(photos / "ok.png")
    _bomb(photos / "bomb.png")
    out = tmp_path / "out"
    result = runner.invoke(app, ["data", "negatives", str(photos), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "skipped 1: 1 image too large (decompression bomb) (e.g. bomb.png)" in result.stderr
    assert "Traceback" not in result.output
    assert [json.loads(line)["id"] for line in (out / "data.jsonl").read_text().splitlines()] == ["ok.png"]
    assert json.loads((out / "manifest.json").read_text())["skipped"] == {"image too large (decompression bomb)": 1}


def test_detection_skips_a_decompression_bomb_by_name_and_count_it(tmp_path):
    images = tmp_path / "images"
    _photo(images / "ok.png")
    _bomb(images / "bomb.png")
    coco = _coco(tmp_path / "coco.json",
                 [{"id": 1, "file_name": "ok.png"}, {"id": 2, "file_name": "bomb.png"}],
                 [{"image_id": i, "category_id": 1, "bbox": [1, 1, 4, 4]} for i in (1, 2)])
    out = tmp_path / "out"
    result = runner.invoke(app, ["data", "detection", str(coco), "--images", str(images), "--out", str(out),
                                 "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "1 image too large (decompression bomb) (e.g. bomb.png)" in result.stderr
    assert json.loads((out / "manifest.json").read_text())["skipped"] == {"image too large (decompression bomb)": 1}


@pytest.mark.parametrize("case, expected", [
    ("three_number_bbox", 'annotations[1]: "bbox" must be 4 numbers [x, y, w, h]'),
    ("null_file_name", 'images[1]: "file_name" must be a non-empty string, not None'),
    ("nan_bbox", 'annotations[0]: "bbox" must be 4 numbers'),
    ("unknown_category", "annotations[0]: category_id 7 is not in \"categories\""),
    ("annotation_not_an_object", "annotations[1]: expected an object, not list"),
    ("missing_image_id", 'images[0]: missing "id"'),
    ("list_id", 'images[0]: "id" must be an integer or a string'),
    ("duplicate_file_name", "images[1]: file_name 'a.png' appears twice"),
    ("zero_width", 'images[0]: "width" must be a positive number, not 0'),
])
def test_a_malformed_coco_entry_is_named_in_one_line(tmp_path, case, expected):
    images_dir = tmp_path / "images"
    _photo(images_dir / "a.png")
    images = [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}]
    annotations = [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]},
                   {"image_id": 2, "category_id": 1, "bbox": [1, 1, 4, 4]}]
    if case == "three_number_bbox":
        annotations[1]["bbox"] = [1, 1, 4]
    elif case == "null_file_name":
        images[1]["file_name"] = None
    elif case == "nan_bbox":
        annotations[0]["bbox"] = [1, 1, float("nan"), 4]
    elif case == "unknown_category":
        annotations[0]["category_id"] = 7
    elif case == "annotation_not_an_object":
        annotations[1] = [1, 2]
    elif case == "missing_image_id":
        del images[0]["id"]
    elif case == "list_id":
        images[0]["id"] = [1]
    elif case == "duplicate_file_name":
        images[1]["file_name"] = "a.png"
    else:
        images[0]["width"] = 0
    coco = _coco(tmp_path / "coco.json", images, annotations)
    out = tmp_path / "out"
    result = runner.invoke(app, ["data", "detection", str(coco), "--images", str(images_dir), "--out", str(out)])
    assert_one_line_error(result, 2, f"{coco}: {expected}")
    assert not out.exists()


def _data(folder: Path, records: list) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _photo(folder / "p.png")
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


@pytest.mark.parametrize("weight", ["inf", "nan", "-1", "-inf"])
def test_mix_weights_must_be_finite_and_not_negative(tmp_path, weight):
    source = _data(tmp_path / "a", [{"image": "p.png", "text": "x"}])
    out = tmp_path / "out"
    result = runner.invoke(app, ["data", "mix", f"{source}:{weight}", "--out", str(out)])
    assert_one_line_error(result, 2, f"{source}:{weight}: the weight must be a finite number >= 0")
    assert not out.exists()


def test_mix_refuses_a_bad_source_record_by_file_and_line_and_writes_nothing(tmp_path):
    good = _data(tmp_path / "good", [{"image": "p.png", "text": "x"}] * 3)
    bad = _data(tmp_path / "bad", [{"image": "p.png", "text": "x"}, {"image": "p.png", "caption": "neither"}])
    out = tmp_path / "out"
    result = runner.invoke(app, ["data", "mix", str(good), str(bad), "--out", str(out)])
    assert_one_line_error(result, 2, f"{bad / 'data.jsonl'}:2: a sample needs 'conversations'")
    assert not out.exists()


def test_mix_out_under_a_file_is_one_line(tmp_path):
    source = _data(tmp_path / "a", [{"image": "p.png", "text": "x"}])
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = runner.invoke(app, ["data", "mix", str(source), "--out", str(blocker / "mix")])
    assert_one_line_error(result, 1, "a-file is a file, not a directory")
    assert blocker.read_text() == ""
