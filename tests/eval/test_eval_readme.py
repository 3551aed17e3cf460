"""The README's "Evaluate" section: its options exist, and its commands run on files of the documented layouts."""

import re
import shlex
from pathlib import Path

from typer.testing import CliRunner

from vary_cli.cli.app import app

README = (Path(__file__).parents[2] / "README.md").read_text()
SECTION = README.split("## Evaluate")[1].split("\n## ")[0]


def test_every_documented_eval_option_exists():
    helps = {c: CliRunner().invoke(app, ["eval", c, "--help"], env={"COLUMNS": "250"}).output for c in ("score", "run")}
    documented = set(re.findall(r"(--[a-z][a-z-]+)", SECTION)) - {"--eval", "--eval-generate", "--model"}
    known = set(re.findall(r"(--[a-z][a-z-]+)", helps["score"] + helps["run"]))
    assert documented <= known, documented - known
    train_help = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "250"}).output
    assert "--eval-generate" in train_help


def test_the_documented_score_commands_parse(tmp_path, monkeypatch):
    commands = [line.split("#")[0].strip() for line in re.findall(r"```sh\n(.+?)\n```", SECTION, re.S)[0].splitlines()]
    scores = [shlex.split(c)[1:] for c in commands if c.startswith("vary eval score")]
    assert len(scores) == 5
    # Each one, on files of its layout, gets past argument parsing to the file (a missing file: exit 2, one line).
    monkeypatch.chdir(tmp_path)
    for args in scores:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and "no such file" in result.stderr, (args, result.output)
