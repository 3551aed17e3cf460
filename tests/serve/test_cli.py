"""`vary serve` on the command line: bad flags and a busy port are one line, before any model loads; the
README's Serve section names only options that exist."""

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vary_cli.cli.app import app

ROOT = Path(__file__).parents[2]


def test_every_option_in_the_readme_s_serve_section_exists():
    help_text = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "250"}).output
    section = (ROOT / "README.md").read_text().split("## Serve")[1].split("\n## ")[0]
    assert set(re.findall(r"(--[a-z][a-z-]+)", section)) - {"--help"} <= set(re.findall(r"(--[a-z][a-z-]+)", help_text))


@pytest.mark.parametrize("args, needle", [
    (["--keep-results", "forever"], "--keep-results 'forever'"),
    (["--cors", "example.org/path"], "--cors 'example.org/path'"),
    (["--draft", "maybe"], "--draft must be one of"),
    (["--max-job-pages", "50", "--max-queue-pages", "10"], "cannot exceed --max-queue-pages"),
    (["--token", " "], "--token is empty"),
])
def test_bad_flags_are_one_line(args, needle, tmp_path):
    result = CliRunner().invoke(app, ["serve", "--model", str(tmp_path / "none"), "--jobs-dir", str(tmp_path), *args])
    assert result.exit_code != 0 and needle in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_a_busy_port_is_one_line_before_the_model_loads(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        run = subprocess.run([sys.executable, "-m", "vary_cli", "serve", "--model", str(tmp_path / "missing"),
                              "--port", str(port), "--jobs-dir", str(tmp_path)], capture_output=True, text=True,
                             timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
