"""`vary data negatives`, `detection` and `mix`: the paper's answers and box format, the 30-box rule, images
referenced in place, and a weighted mix with a disjoint held-out set."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from vary_cli.cli.app import app
from vary_cli.data.detection import answer, normalise, question_and_objects
from vary_cli.data.negatives import NATURE_ANSWERS
from vary_cli.train.dataset import read_samples

runner = CliRunner()


def _records(path: Path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _photo(path: Path, size=(200, 100), color=(30, 120, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def test_negatives_reference_images_with_one_of_the_five_answers(tmp_path):
    photos = tmp_path / "photos"
    for i in range(6):
        _photo(photos / ("sub" if i % 2 else "") / f"p{i}.jpg", color=(10 * i, 100, 50))
    (photos / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    result = runner.invoke(app, ["data", "negatives", str(photos), "--out", str(out), "--workers", "2"])
    assert result.exit_code == 0, result.output
    records = _records(out / "data.jsonl")
    assert len(records) == 6
    for record in records:
        assert record["conversations"][0] == {"from": "human", "value": "<image>"}
        assert record["conversations"][1]["value"] in NATURE_ANSWERS
        assert (out / record["image"]).resolve() == (photos / record["id"]).resolve()  # referenced, not copied
    assert not (out / "images").exists()
    assert json.loads((out / "manifest.json").read_text())["skipped"] == {"unreadable image": 1}
    samples = read_samples(out / "data.jsonl")
    assert all(s.image.is_file() for s in samples)


def test_boxes_are_thousandths_in_the_papers_format():
    assert normalise((10, 20, 30, 40), 200, 100) == (50, 200, 200, 600)
    assert normalise((-5, 0, 300, 120), 200, 100) == (0, 0, 1000, 1000)
    objects = [("Person", (535, 544, 568, 591)), ("Car", (9, 552, 58, 737)), ("Car", (682, 598, 999, 976)),
               ("Bus", (44, 70, 913, 1000))]
    assert answer(objects) == ("Person: [535, 544, 568, 591]; Car: [009, 552, 058, 737], [682, 598, 999, 976]; "
                               "Bus: [044, 070, 913, 1000].")


def test_more_than_30_boxes_name_random_classes_that_fit():
    objects = [("Apple", (0, 0, 1, 1))] * 20 + [("Bowl", (0, 0, 1, 1))] * 12 + [("Cup", (0, 0, 1, 1))] * 5
    seen = set()
    for seed in range(20):
        question, chosen = question_and_objects(objects, 30, random.Random(seed))
        names = {name for name, _ in chosen}
        assert len(chosen) <= 30 and question.startswith("Detect ") and question.endswith(" in this image.")
        assert all(name in question for name in names)
        seen.add(frozenset(names))
    assert len(seen) > 1  # the classes are random: one image serves several samples
    question, chosen = question_and_objects(objects[:30], 30, random.Random(0))
    assert question == "Detect all objects in this image." and len(chosen) == 30
    assert question_and_objects([("Ant", (0, 0, 1, 1))] * 31, 30, random.Random(0))[0] is None


def test_detection_from_coco_json(tmp_path):
    images = tmp_path / "images"
    _photo(images / "a.jpg", (200, 100))
    _photo(images / "b.jpg", (100, 100))
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 100},
                       {"id": 2, "file_name": "b.jpg", "width": 100, "height": 100},
                       {"id": 3, "file_name": "missing.jpg", "width": 10, "height": 10},
                       {"id": 4, "file_name": "empty.jpg", "width": 10, "height": 10}],
            "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "traffic light"}],
            "annotations": [{"image_id": 1, "category_id": 2, "bbox": [10, 20, 30, 40], "iscrowd": 0},
                            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 50], "iscrowd": 0},
                            {"image_id": 1, "category_id": 2, "bbox": [100, 50, 100, 50]},
                            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 200, 100], "iscrowd": 1},
                            {"image_id": 3, "category_id": 1, "bbox": [0, 0, 5, 5]}]
                           + [{"image_id": 2, "category_id": 1 + i % 2, "bbox": [i, i, 10, 10]} for i in range(31)]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(coco))
    out = tmp_path / "out"
    result = runner.invoke(app, ["data", "detection", str(path), "--images", str(images), "--out", str(out),
                                 "--workers", "1"])
    assert result.exit_code == 0, result.output
    records = {r["id"]: r for r in _records(out / "data.jsonl")}
    assert set(records) == {"a.jpg", "b.jpg"}
    a = records["a.jpg"]["conversations"]
    assert a[0]["value"] == "<image>\nDetect all objects in this image."
    assert a[1]["value"] == "Traffic light: [050, 200, 200, 600], [500, 500, 1000, 1000]; Person: [000, 000, 500, 500]."
    b = records["b.jpg"]["conversations"]  # 31 boxes: 16 persons + 15 traffic lights; only one class fits
    assert b[0]["value"] in ("<image>\nDetect Person in this image.", "<image>\nDetect Traffic light in this image.")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["skipped"] == {"image file missing": 1, "no objects": 1}
    assert (out / records["a.jpg"]["image"]).resolve() == (images / "a.jpg").resolve()
    more = runner.invoke(app, ["data", "detection", str(path), "--images", str(images), "--out", str(tmp_path / "k"),
                               "--workers", "1", "--refer-samples", "5"])
    assert more.exit_code == 0, more.output
    crowded = [r for r in _records(tmp_path / "k" / "data.jsonl") if r["id"] == "b.jpg"]
    assert len(crowded) == 2 and len({r["conversations"][0]["value"] for r in crowded}) == 2  # both classes, once each
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": []}')
    result = runner.invoke(app, ["data", "detection", str(bad), "--images", str(images), "--out", str(out)])
    assert result.exit_code == 2 and "not COCO" in result.output


@pytest.fixture()
def two_sets(tmp_path):
    sets = []
    for name, n in (("a", 10), ("b", 4)):
        folder = tmp_path / name
        lines = []
        for i in range(n):
            _photo(folder / "images" / f"{i}.png")
            lines.append(json.dumps({"image": f"images/{i}.png", "text": f"{name}{i}", "id": f"{name}{i}"}))
        (folder / "data.jsonl").write_text("\n".join(lines) + "\n")
        sets.append(folder)
    return sets


def test_mix_weights_hold_out_and_rewrites_image_paths(two_sets, tmp_path):
    a, b = two_sets
    out = tmp_path / "mixed" / "deeper"
    result = runner.invoke(app, ["data", "mix", f"{a}:0.5", f"{b / 'data.jsonl'}:2", "--out", str(out),
                                 "--eval-fraction", "0.2", "--seed", "3"])
    assert result.exit_code == 0, result.output
    train, held = _records(out / "data.jsonl"), _records(out / "eval.jsonl")
    ids = [r["id"] for r in train]
    assert len(held) == 2 + 1  # 20% of 10 and of 4 (rounded)
    assert sum(i.startswith("a") for i in ids) == 4  # half of the 8 left
    assert sum(i.startswith("b") for i in ids) == 6 and len(set(i for i in ids if i.startswith("b"))) == 3
    assert not {r["id"] for r in held} & set(ids)  # nothing held out is trained on
    assert ids != sorted(ids)  # shuffled
    for record in train + held:
        source = a if record["id"].startswith("a") else b
        assert (out / record["image"]).resolve() == (source / "images" / f"{record['id'][1:]}.png").resolve()
    assert len(read_samples(out / "data.jsonl")) == len(train)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["train"] for s in manifest["sources"]] == [4, 6]
    again = runner.invoke(app, ["data", "mix", f"{a}:0.5", f"{b / 'data.jsonl'}:2", "--out", str(tmp_path / "again"),
                                "--eval-fraction", "0.2", "--seed", "3"])
    assert again.exit_code == 0
    assert [r["id"] for r in _records(tmp_path / "again" / "data.jsonl")] == ids


def test_mix_errors_are_one_line(tmp_path, two_sets):
    result = runner.invoke(app, ["data", "mix", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no such data file" in result.output
    result = runner.invoke(app, ["data", "mix", str(two_sets[0]), "--out", str(tmp_path / "o"), "--eval-fraction", "1"])
    assert result.exit_code == 2 and "--eval-fraction" in result.output


def test_the_readme_documents_only_options_that_exist():
    import re

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Make training data")[1].split("\n## ")[0]
    helps = " ".join(runner.invoke(app, ["data", kind, "--help"], env={"COLUMNS": "250"}).output
                     for kind in ("pdf", "charts", "negatives", "detection", "mix"))
    documented = set(re.findall(r"(--[a-z][a-z-]+)", section)) - {"--vocabulary", "--eval"}  # vary train's
    assert documented and documented <= set(re.findall(r"(--[a-z][a-z-]+)", helps))
