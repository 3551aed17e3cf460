"""`vary eval` bad inputs and faults (issue 21): one line, the right exit code, no partial output."""

import pytest
from typer.testing import CliRunner

from cli_checks import assert_one_line_error
from vary_cli.cli.app import app


@pytest.fixture
def pair(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir(), gt.mkdir()
    (pred / "a.md").write_text("one two three four\n")
    (gt / "a.md").write_text("one two three five\n")
    return pred, gt


@pytest.mark.parametrize("flag", ["--report", "--per-page"])
def test_an_output_under_a_file_is_one_line_before_scoring(pair, tmp_path, flag):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = CliRunner().invoke(app, ["eval", "score", *map(str, pair), flag, str(blocker / "x.out")])
    assert_one_line_error(result, 1, flag, "a-file is a file, not a directory")
    assert blocker.read_text() == "" and sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "gt", "pred"]


def test_eval_run_out_an_existing_file_is_one_line(tmp_path):
    bench = tmp_path / "bench.jsonl"
    bench.write_text('{"id": "1", "image": "1.png", "answers": ["x"]}\n')
    out = tmp_path / "taken"
    out.write_text("mine")
    # No --model that exists: the check comes before anything is loaded.
    result = CliRunner().invoke(app, ["eval", "run", str(bench), "--out", str(out), "--model", str(tmp_path / "none")])
    assert_one_line_error(result, 1, f"--out {out}: is a file")
    assert out.read_text() == "mine"


def test_run_benchmark_into_a_file_is_an_output_error(tmp_path):
    from vary_cli.engine.config import GenerationConfig
    from vary_cli.errors import OutputError
    from vary_cli.eval.readers import Benchmark
    from vary_cli.eval.run import run_benchmark

    out = tmp_path / "taken"
    out.write_text("mine")
    with pytest.raises(OutputError, match="cannot create the predictions directory"):
        run_benchmark(None, Benchmark(tmp_path, "ocr"), out, GenerationConfig(max_new_tokens=1))


@pytest.mark.parametrize("case", ["empty_gt_dir", "only_jsonl_predictions", "every_pair_skipped"])
def test_nothing_scored_is_exit_2_in_one_line_saying_why(pair, tmp_path, case):
    pred, gt = pair
    args = []
    if case == "empty_gt_dir":
        (gt / "a.md").unlink()
        expected = f"{gt}: no ground truth to score against"
    elif case == "only_jsonl_predictions":
        (pred / "a.md").unlink()
        (pred / "pages.jsonl").write_text('{"source": "a.pdf", "page": 1, "text": "one"}\n')
        expected = f"{pred}: no predictions to score (a directory is read for .md/.mmd/.txt/.tex files; give a .jsonl"
    else:
        (pred / "a.md").write_text("one")
        args = ["--protocol", "nougat"]
        expected = "nothing was scored: all 1 pairs were skipped (prediction shorter than 4 characters"
    report = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["eval", "score", str(pred), str(gt), *args, "--report", str(report)])
    assert_one_line_error(result, 2, expected)
    assert not report.exists()


def test_eval_run_on_an_empty_manifest_is_one_line(tmp_path):
    bench = tmp_path / "bench.jsonl"
    bench.write_text("\n")
    result = CliRunner().invoke(app, ["eval", "run", str(bench), "--out", str(tmp_path / "o"),
                                      "--model", str(tmp_path / "none")])
    assert_one_line_error(result, 2, f"{bench}: no items to run")
    assert not (tmp_path / "o").exists()


def test_a_page_past_the_meteor_limit_gets_no_meteor_and_is_counted(pair, tmp_path, monkeypatch):
    import json

    from vary_cli.eval import score
    from vary_cli.eval.wordnet import ensure_wordnet

    if ensure_wordnet()[1]:
        pytest.skip("needs WordNet")
    monkeypatch.setattr(score, "METEOR_MAX_TOKENS", 6)  # the real limit is 20,000 tokens; the rule is the same
    pred, gt = pair
    (pred / "long.md").write_text("one two three four five six seven\n")  # 7 tokens
    (gt / "long.md").write_text("one two three four five six\n")
    per_page, report = tmp_path / "pages.jsonl", tmp_path / "r.html"
    result = CliRunner().invoke(app, ["eval", "score", str(pred), str(gt), "--json", "--per-page", str(per_page),
                                      "--report", str(report)])
    assert result.exit_code == 0, result.output
    note = "METEOR left out on 1 page(s) with more than 6 tokens on a side"
    assert note in result.stderr and note in json.loads(result.stdout)["notes"][0] and note in report.read_text()
    pages = {p["key"]: p for p in map(json.loads, per_page.read_text().splitlines())}
    assert pages["long"]["meteor"] is None and pages["long"]["bleu"] is not None and "meteor_skipped" not in pages["long"]
    assert pages["a"]["meteor"] is not None
    assert json.loads(result.stdout)["metrics"]["meteor"] == pytest.approx(pages["a"]["meteor"])
