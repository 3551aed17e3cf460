"""`vary eval score` end to end through the CLI: every input layout, protocols, outputs, bad inputs."""

import json

import pytest
from typer.testing import CliRunner

from vary_cli.cli.app import app
from vary_cli.eval.score import score_files


def invoke(*args):
    return CliRunner().invoke(app, ["eval", "score", *map(str, args)])


def scored(*args) -> dict:
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def dirs(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    (pred / "sub").mkdir(parents=True)
    (gt / "sub").mkdir(parents=True)
    (pred / "a.md").write_text("The quick brown fox jumps over the lazy dog\n")
    (gt / "a.mmd").write_text("The quick brown fox jumped over the lazy dog .\n")  # a file's last newline is not content
    (pred / "sub" / "b.txt").write_text("")  # an empty prediction
    (gt / "sub" / "b.tex").write_text("hello world")
    (pred / "extra.md").write_text("no ground truth")
    (gt / "lost.md").write_text("no prediction")
    return pred, gt


def test_directories_pair_by_relative_path_and_list_the_unpaired(dirs):
    data = scored(*dirs, "--protocol", "fox")
    assert (data["pairs"], data["scored"], data["skipped"], data["empty_predictions"]) == (2, 2, 0, 1)
    assert data["unpaired"] == {"predictions": 1, "ground_truth": 1}
    # page a's golden values (tests/eval/test_metrics.py) averaged with the empty page's (edit distance 1, F1 0)
    assert data["metrics"]["edit_distance"] == pytest.approx((0.08695652173913043 + 1.0) / 2)
    assert data["metrics"]["f1"] == pytest.approx(0.8421052631578947 / 2)
    assert data["protocol"].startswith("fox") and data["order"] == "prediction vs ground truth"


def test_got_drops_the_empty_prediction_and_swap_trades_precision_and_recall(dirs):
    right = scored(*dirs, "--protocol", "got")
    assert (right["scored"], right["skipped"]) == (1, 1)
    swapped = scored(*dirs, "--protocol", "got", "--swap-pred-gt")
    assert swapped["metrics"]["precision"] == pytest.approx(right["metrics"]["recall"])
    assert swapped["metrics"]["recall"] == pytest.approx(right["metrics"]["precision"])
    assert swapped["metrics"]["edit_distance"] == pytest.approx(right["metrics"]["edit_distance"])
    assert swapped["order"].startswith("swapped")


def test_nougat_skips_pages_under_four_characters(tmp_path):
    pred, gt = tmp_path / "p", tmp_path / "g"
    pred.mkdir(), gt.mkdir()
    for name, p, g in [("a", "abc", "abcdef"), ("b", "one two three", "one two four")]:
        (pred / f"{name}.mmd").write_text(p)
        (gt / f"{name}.mmd").write_text(g)
    data = scored(pred, gt, "--protocol", "nougat")
    assert (data["scored"], data["skipped"]) == (1, 1)


def test_jsonl_pages_table_per_page_and_report(tmp_path):
    pred, gt = tmp_path / "pred.jsonl", tmp_path / "gt.jsonl"
    pred.write_text("\n".join(json.dumps({"source": "docs/paper.pdf", "page": n, "text": t, "finish_reason": "stop"})
                              for n, t in [(1, "alpha beta"), (2, "gamma delta")]) + "\n")
    gt.write_text("\n".join(json.dumps({"source": "paper.pdf", "page": n, "text": t})
                            for n, t in [(1, "alpha beta"), (2, "gamma epsilon")]) + "\n")
    per_page, report = tmp_path / "pages.jsonl", tmp_path / "r.html"
    result = invoke(pred, gt, "--per-page", per_page, "--report", report)
    assert result.exit_code == 0, result.output
    assert "edit_distance" in result.stdout and "pairs 2, scored 2" in result.stdout
    rows = [json.loads(line) for line in per_page.read_text().splitlines()]
    assert [r["key"] for r in rows] == ["paper#1", "paper#2"] and rows[0]["edit_distance"] == 0.0
    assert "paper#2" in report.read_text()


def test_docvqa_and_chartqa_tasks_from_jsonl_and_official_layouts(tmp_path):
    pred = tmp_path / "pred.jsonl"
    pred.write_text('{"id": "1", "answer": "new  york "}\n{"id": "2", "answer": "wrong"}\n')
    gt = tmp_path / "gt.jsonl"
    gt.write_text('{"id": "1", "answers": ["New York"]}\n{"id": "2", "answers": ["right", "correct"]}\n')
    assert scored(pred, gt, "--task", "docvqa")["metrics"] == {"anls": 0.5}
    val = tmp_path / "val_v1.0.json"
    val.write_text(json.dumps({"dataset_name": "docvqa", "data": [
        {"questionId": 1, "question": "where?", "image": "documents/a.png", "answers": ["New York"]},
        {"questionId": 2, "question": "what?", "image": "documents/b.png", "answers": ["right"]}]}))
    assert scored(pred, val, "--task", "docvqa")["metrics"] == {"anls": 0.5}
    chart = tmp_path / "test_human.json"
    chart.write_text(json.dumps([{"imgname": "a.png", "query": "q", "label": "100"},
                                 {"imgname": "b.png", "query": "q", "label": "0"}]))
    answers = tmp_path / "chart.jsonl"
    answers.write_text('{"id": "0", "answer": "95.2"}\n{"id": "1", "answer": "0.0"}\n')
    data = scored(answers, chart, "--task", "chartqa")
    assert data["metrics"] == {"relaxed_accuracy": 0.5} and data["protocol"].startswith("pix2struct")


def test_fox_page_ocr_json_against_a_directory_and_fox_results(tmp_path):
    fox = tmp_path / "en_page_ocr.json"
    fox.write_text(json.dumps([{"image": "en_1.png", "conversations": [
        {"from": "human", "value": "<image>\nOCR this image."}, {"from": "gpt", "value": "Hello page one"}]}]))
    pred = tmp_path / "out"
    pred.mkdir()
    (pred / "en_1.md").write_text("Hello page one\n")
    assert scored(pred, fox)["metrics"]["edit_distance"] == 0.0
    results = tmp_path / "results_final.json"
    results.write_text(json.dumps([{"image": "en_1.png", "label": "Hello page one", "answer": "Hello page"}]))
    assert scored(results, fox)["metrics"]["recall"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("case", ["missing_gt", "not_utf8", "bad_jsonl", "missing_key", "nothing_pairs"])
def test_bad_inputs_are_one_line_naming_the_file_and_exit_2(tmp_path, case):
    pred, gt = tmp_path / "pred.jsonl", tmp_path / "gt.jsonl"
    pred.write_text('{"id": "1", "answer": "a"}\n')
    gt.write_text('{"id": "1", "answers": ["a"]}\n')
    expected = str(gt)
    if case == "missing_gt":
        gt.unlink()
    elif case == "not_utf8":
        gt.write_bytes(b'{"id": "1", "answers": ["a"]}\n{"id": "2", "answers": ["\xff"]}\n')
        expected = f"{gt}:2"
    elif case == "bad_jsonl":
        pred.write_text('{"id": "1", "answer": "a"}\n{"id": 2, "answer": \n')
        expected = f"{pred}:2"
    elif case == "missing_key":
        gt.write_text('{"id": "1", "answers": ["a"]}\n{"id": "2"}\n')
        expected = f"{gt}:2"
    else:
        pred.write_text('{"id": "q1", "answer": "a"}\n')
        expected = "no prediction pairs with the ground truth"
    result = CliRunner().invoke(app, ["eval", "score", str(pred), str(gt), "--task", "docvqa"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in result.output


def test_bad_flags_are_usage_errors(dirs):
    assert invoke(*dirs, "--protocol", "marker").exit_code == 2
    assert invoke(*dirs, "--task", "vqa").exit_code == 2


def test_without_wordnet_meteor_is_reported_unavailable(dirs, monkeypatch):
    import vary_cli.eval.score as score

    monkeypatch.setattr(score, "ensure_wordnet", lambda: (None, "METEOR unavailable: WordNet 3.0 not found"))
    report = score_files(*dirs)
    assert report.means()["meteor"] is None and report.means()["bleu"] is not None
    assert report.notes == ["METEOR unavailable: WordNet 3.0 not found"]


def test_the_process_pool_gives_the_same_numbers(tmp_path):
    import random

    # Real words with WordNet synonyms, so METEOR reads synsets in every worker at once (forked workers once
    # shared nltk's open files and read each other's lines).
    words = ("house home dwelling car automobile run sprint quick fast big large small little happy glad "
             "begin start end finish buy purchase").split()
    rng = random.Random(0)
    pred, gt = tmp_path / "p", tmp_path / "g"
    pred.mkdir(), gt.mkdir()
    for i in range(48):
        (pred / f"{i}.md").write_text(" ".join(rng.choice(words) for _ in range(80)))
        (gt / f"{i}.md").write_text(" ".join(rng.choice(words) for _ in range(80)))
    pooled = score_files(pred, gt, workers=2)
    alone = score_files(pred, gt, workers=1)
    assert [p.values for p in pooled.pages] == [p.values for p in alone.pages] and len(pooled.scored) == 48


def test_forked_workers_open_their_own_wordnet_files():
    # Inherited open files share one offset with the parent and the other workers; each worker must reopen.
    from nltk.corpus import wordnet

    from vary_cli.eval.score import _init_worker, _load_wordnet, ensure_wordnet

    if ensure_wordnet()[1]:
        pytest.skip("needs WordNet")
    _load_wordnet()
    wordnet.synsets("house")
    inherited = dict(wordnet._data_file_map)
    assert inherited
    _init_worker(True)
    assert wordnet._data_file_map == {}
    assert wordnet.synsets("house")[0].name() == "house.n.01"
    assert all(wordnet._data_file_map[pos] is not inherited.get(pos) for pos in wordnet._data_file_map)


def test_a_non_utf8_page_file_is_named(dirs):
    pred, gt = dirs
    (pred / "a.md").write_bytes(b"caf\xe9\n")
    result = invoke(pred, gt)
    assert result.exit_code == 2 and f"{pred / 'a.md'}: not UTF-8 text (byte 0xe9 at offset 3)" in result.stderr
