"""User text (paths, keys, messages) is printed as given: rich reads neither markup ("[b]") nor emoji codes
(":-1:" would print as a thumbs-down) in it, on stderr or stdout (issue 21)."""

import json

from typer.testing import CliRunner

from cli_checks import assert_one_line_error
from vary_cli.cli.app import app

runner = CliRunner()
ODD = "[bold]x:-1::abc:"  # no "/": it is also a file name


def test_an_error_naming_user_text_prints_it_verbatim(tmp_path):
    missing = tmp_path / ODD
    result = runner.invoke(app, ["eval", "score", str(missing), str(missing)])
    line = assert_one_line_error(result, 2, f"{missing}: no such file")
    assert line.startswith("error: ") and "👎" not in line and "🔤" not in line


def test_a_data_mix_weight_of_minus_one_is_not_an_emoji(tmp_path):
    (tmp_path / "data.jsonl").write_text(json.dumps({"text": "x", "image": "p.png"}) + "\n")
    result = runner.invoke(app, ["data", "mix", f"{tmp_path}:-1", "--out", str(tmp_path / "o")])
    assert_one_line_error(result, 2, f"{tmp_path}:-1: the weight")


def test_notes_and_unpaired_keys_print_verbatim(tmp_path):
    pred, gt = tmp_path / "p", tmp_path / "g"
    pred.mkdir(), gt.mkdir()
    (pred / "a.md").write_text("same text here")
    (gt / "a.md").write_text("same text here")
    (pred / f"{ODD}.md").write_text("no ground truth")
    result = runner.invoke(app, ["eval", "score", str(pred), str(gt)])
    assert result.exit_code == 0, result.output
    assert f"(e.g. {ODD})" in result.stderr and "unpaired:" in result.stderr


def test_convert_progress_messages_keep_their_label_and_print_the_rest_verbatim(capsys):
    from vary_cli.cli.convert import make_progress

    progress = make_progress(quiet=False, total_documents=1)
    progress.message(f"error: /in/{ODD}.pdf: not a PDF")
    progress.message(f"/in/{ODD}.pdf: 2 page(s) not converted yet")
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: /in/{ODD}.pdf: not a PDF", f"/in/{ODD}.pdf: 2 page(s) not converted yet"]
