"""`vary models` through typer's CliRunner on `models_app`: list output, exit codes, one-line errors, no torch.

The hub is the in-memory `FakeHub` of test_hub.py and the registry is replaced by two test entries, so
nothing here touches the network or the real cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_hub import FILES, REPO, FakeHub
from typer.testing import CliRunner

from vary_cli.weights import hub

from vary_cli.weights import registry
from vary_cli.cli.models import models_app
from vary_cli.weights.registry import ModelEntry

TINY = ModelEntry(name="tiny", arch="vary-toy", repo=REPO, revision="main",
                  files=("config.json", "*.bin", "qwen.tiktoken"), size="1 KB", description="test model")
LOCAL = ModelEntry(name="local-only", arch="vary-base", size="15 GB", description="no repo")
runner = CliRunner()


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    monkeypatch.setenv("VARY_HOME", str(tmp_path / "vary"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps tables at 80 columns otherwise
    monkeypatch.setattr(registry, "entries", lambda: {"tiny": TINY, "local-only": LOCAL})
    fake = FakeHub(monkeypatch)
    fake.publish(REPO, FILES)
    return fake


def one_red_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_plain_models_lists(tmp_path: Path) -> None:
    result = runner.invoke(models_app, [])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert {"name", "tiny", "local-only"} <= set(rows)
    assert " no " in rows["tiny"] and "use --model DIR" in rows["local-only"]
    assert runner.invoke(models_app, ["list"]).stdout == result.stdout


def test_list_shows_downloaded_path(isolated: FakeHub) -> None:
    directory = hub.download(TINY)
    result = runner.invoke(models_app, ["list"])
    assert result.exit_code == 0
    row = next(line for line in result.stdout.splitlines() if line.startswith("tiny"))
    assert " yes " in row and str(directory) in row


def test_download_prints_path_and_is_idempotent(isolated: FakeHub) -> None:
    result = runner.invoke(models_app, ["download", "tiny"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"tiny: {hub.status(TINY)[1]}"
    assert runner.invoke(models_app, ["download", "tiny"]).exit_code == 0
    assert len(isolated.calls) == 1
    assert runner.invoke(models_app, ["download", "tiny", "--force"]).exit_code == 0
    assert len(isolated.calls) == 2 and isolated.calls[-1]["force_download"]


def test_unknown_name_is_one_line_exit_3() -> None:
    result = runner.invoke(models_app, ["download", "nope"])
    assert result.exit_code == 3
    assert "known: local-only, tiny" in one_red_line(result)


def test_no_public_download_is_one_line() -> None:
    result = runner.invoke(models_app, ["download", "local-only"])
    assert result.exit_code == 3 and "--model DIR" in one_red_line(result)


def test_debug_reraises() -> None:
    result = runner.invoke(models_app, ["download", "nope", "--debug"])
    assert result.exit_code == 1 and type(result.exception).__name__ == "WeightsError"


def test_verify_ok_then_changed_file() -> None:
    directory = hub.download(TINY)
    result = runner.invoke(models_app, ["verify", "tiny"])
    assert result.exit_code == 0, result.output
    assert "3 file(s) match" in result.stdout
    (directory / "config.json").write_text('{"edited": 1}')
    result = runner.invoke(models_app, ["verify", "tiny"])
    assert result.exit_code == 3
    line = one_red_line(result)
    assert "config.json (changed)" in line and "vary models download tiny --force" in line
    assert "changed" in result.stdout  # the per-file table still goes to stdout


def test_verify_not_downloaded() -> None:
    result = runner.invoke(models_app, ["verify", "tiny"])
    assert result.exit_code == 3 and "not downloaded" in one_red_line(result)


def test_rm_asks_then_removes() -> None:
    directory = hub.download(TINY)
    result = runner.invoke(models_app, ["rm", "tiny"], input="n\n")
    assert result.exit_code == 1 and directory.exists()
    result = runner.invoke(models_app, ["rm", "tiny", "--yes"])
    assert result.exit_code == 0 and "removed" in result.stdout
    assert not directory.exists() and hub.status(TINY) == (False, None)
    result = runner.invoke(models_app, ["rm", "tiny", "-y"])
    assert result.exit_code == 0 and "not downloaded" in result.stdout


def test_models_commands_do_not_import_torch(tmp_path: Path) -> None:
    code = ("import sys; from typer.testing import CliRunner; from vary_cli.cli.models import models_app; "
            "r = CliRunner().invoke(models_app, ['list']); assert r.exit_code == 0, r.output; "
            "print('torch' in sys.modules)")
    env = {**os.environ, "VARY_HOME": str(tmp_path / "vary"), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_rm_clears_a_partial_download() -> None:
    directory = hub.download(TINY)
    hub.lock_path(TINY).unlink()
    (directory / "config.json").unlink()  # as if interrupted: not "downloaded", but files on disk
    assert hub.status(TINY) == (False, None)
    result = runner.invoke(models_app, ["rm", "tiny"])
    assert result.exit_code == 0 and "removed a partial download" in result.stdout
    assert not directory.exists()
