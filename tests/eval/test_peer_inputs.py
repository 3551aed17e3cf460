"""Metric inputs read as the benchmarks' own scripts read them (issue 21): text kept as written, whitespace
included, except a page file's final line ending; a page with nothing on either side skipped and counted.

The scripts: Fox eval_tools/eval_ocr_test.py, GOT pyevaltools/eval_ocr.py and eval_ocr_scene.py, nougat
metrics.py `compute_metrics`, the DocVQA ANLS script, pix2struct's `relaxed_correctness`. None strips the
strings it scores.
"""

import json

import pytest

from vary_cli.eval.readers import read_directory, read_ground_truth, read_predictions
from vary_cli.eval.score import score_files


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _pages(tmp_path, pred_text, gt_text):
    """One page each side in `vary convert --format jsonl` layout (JSON strings, nothing a file adds)."""
    pred = _jsonl(tmp_path / "pred.jsonl", [{"source": "a.pdf", "page": 1, "text": pred_text}])
    gt = _jsonl(tmp_path / "gt.jsonl", [{"source": "a.pdf", "page": 1, "text": gt_text}])
    return pred, gt


def test_json_strings_keep_their_whitespace_in_every_layout(tmp_path):
    answers = _jsonl(tmp_path / "answers.jsonl", [{"id": "1", "answer": " Yes\n"}])
    assert read_predictions(answers) == {"1": " Yes\n"}
    pages = _jsonl(tmp_path / "pages.jsonl", [{"source": "x.pdf", "page": 2, "text": "\tabc  "}])
    assert read_predictions(pages) == {"x#2": "\tabc  "}
    assert read_ground_truth(pages).items[0].answers == ["\tabc  "]
    truth = _jsonl(tmp_path / "truth.jsonl", [{"id": "q", "answers": [" page text \n"]}])
    assert read_ground_truth(truth).items[0].answers == [" page text \n"]
    fox = tmp_path / "en_page_ocr.json"
    fox.write_text(json.dumps([{"image": "en_1.png", "conversations": [
        {"from": "human", "value": "<image>\nOCR this."}, {"from": "gpt", "value": "  Hello page one \n"}]}]))
    assert read_ground_truth(fox).items[0].answers == ["  Hello page one \n"]
    results = tmp_path / "results_final.json"
    results.write_text(json.dumps([{"image": "en_1.png", "label": "x", "answer": "Hello \n"}]))
    assert read_predictions(results) == {"en_1": "Hello \n"}


def test_a_page_file_loses_only_its_final_line_ending(tmp_path):
    for name, data in {"lf": b"abc \n", "two": b"a\n\n", "crlf": b"  a\r\n", "none": b" a "}.items():
        (tmp_path / f"{name}.md").write_bytes(data)
    assert read_directory(tmp_path) == {"crlf": "  a", "lf": "abc ", "none": " a ", "two": "a\n"}


def test_nougat_scores_a_four_character_page_with_a_trailing_space(tmp_path):
    report = score_files(*_pages(tmp_path, "abc ", "abcd"), protocol="nougat", with_meteor=False)
    assert len(report.scored) == 1
    assert report.pages[0].values["edit_distance"] == pytest.approx(1 / 4)


def test_got_scores_a_page_of_one_space_as_a_miss(tmp_path):
    report = score_files(*_pages(tmp_path, " ", "hello"), protocol="got", with_meteor=False)
    (page,) = report.scored
    assert page.values == {"edit_distance": 1.0, "f1": 0.0, "precision": 0.0, "recall": 0.0, "bleu": 0.0,
                           "meteor": None}


def test_got_scene_counts_surrounding_spaces_as_characters(tmp_path):
    report = score_files(*_pages(tmp_path, "ab ", "ab"), protocol="got-scene", with_meteor=False)
    values = report.pages[0].values
    assert values["precision"] == pytest.approx(2 / 3) and values["recall"] == 1.0
    assert values["edit_distance"] == pytest.approx(1 / 3)


def test_anls_divides_by_the_raw_prediction_as_the_official_script(tmp_path):
    pred = _jsonl(tmp_path / "pred.jsonl", [{"id": "1", "answer": "new yrk   "}])
    gt = _jsonl(tmp_path / "gt.jsonl", [{"id": "1", "answers": ["New York"]}])
    report = score_files(pred, gt, task="docvqa")
    # distance 1 on the normalized strings, over max(len("New York"), len("new yrk   ")) = 10
    assert report.pages[0].values["anls"] == pytest.approx(0.9)


def test_relaxed_accuracy_matches_strings_as_they_are_and_numbers_as_python_reads_them(tmp_path):
    pred = _jsonl(tmp_path / "pred.jsonl", [{"id": "0", "answer": " Yes"}, {"id": "1", "answer": " 12 "}])
    gt = tmp_path / "test_human.json"
    gt.write_text(json.dumps([{"imgname": "a.png", "query": "?", "label": "Yes"},
                              {"imgname": "b.png", "query": "?", "label": "12"}]))
    values = [p.values["relaxed_accuracy"] for p in score_files(pred, gt, task="chartqa").pages]
    assert values == [0.0, 1.0]  # " Yes" != "Yes" in pix2struct; float(" 12 ") is 12.0


@pytest.mark.parametrize("protocol, pred, gt", [("fox", "", ""), ("fox", "  ", "\n"), ("got", " ", " "),
                                                ("nougat", "    ", "     ")])
def test_nothing_on_either_side_is_skipped_and_counted_on_every_metric(tmp_path, protocol, pred, gt):
    pred_path, gt_path = _pages(tmp_path, pred, gt)
    _jsonl(pred_path, [{"source": "a.pdf", "page": 1, "text": pred}, {"source": "a.pdf", "page": 2, "text": "x y w"}])
    _jsonl(gt_path, [{"source": "a.pdf", "page": 1, "text": gt}, {"source": "a.pdf", "page": 2, "text": "x y z"}])
    report = score_files(pred_path, gt_path, protocol=protocol, with_meteor=False)
    empty = report.pages[0]
    assert empty.skipped == "nothing to score: empty on both sides" and empty.values == {}
    assert report.to_json()["skipped"] == 1 and len(report.scored) == 1


def test_a_page_empty_on_one_side_is_a_miss_on_every_metric_under_fox(tmp_path):
    report = score_files(*_pages(tmp_path, "", "some text"), protocol="fox", with_meteor=False)
    assert report.pages[0].values == {"edit_distance": 1.0, "f1": 0.0, "precision": 0.0, "recall": 0.0, "bleu": 0.0,
                                      "meteor": None}
