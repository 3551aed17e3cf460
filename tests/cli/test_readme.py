"""The README's promises: its test command is what CI runs, its commands and options exist, the example converts."""

import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from vary_cli.cli.app import app

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()


def setup_commands():
    return re.findall(r"```sh\n(.+?)\n```", README.split("## Set-up")[1].split("##")[0])


def test_ci_runs_the_readme_test_command_verbatim():
    install_and_run, install_and_test = setup_commands()
    assert "vary convert examples/sample.pdf" in install_and_run
    assert install_and_test in (ROOT / ".ci" / "run").read_text().splitlines()


def options_in(text):
    return set(re.findall(r"(--[a-z][a-z-]+)", text))


def test_every_documented_option_exists():
    helps = {c: CliRunner().invoke(app, [c, "--help"], env={"COLUMNS": "250"}).output for c in ("convert", "ocr")}
    convert_section = README.split("## Convert documents")[1].split("## Read images")[0]
    assert options_in(convert_section) - {"--help"} <= options_in(helps["convert"])
    shared = README.split("Options shared by `ocr` and `convert`")[1].split("##")[0]
    for command in ("convert", "ocr"):
        assert options_in(shared) <= options_in(helps[command]), command
    assert "--json" in options_in(helps["ocr"])


def test_the_bundled_example_converts_through_the_real_entry_point(tiny_checkpoint, tmp_path):
    out = tmp_path / "sample.md"
    run = subprocess.run([sys.executable, "-m", "vary_cli", "convert", str(ROOT / "examples" / "sample.pdf"), "-o",
                          str(out), "--model", str(tiny_checkpoint), "--max-new-tokens", "3"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert re.findall(r"<!-- page (\d+) -->", out.read_text()) == ["1", "2"]
    assert "2 page(s), 0 failed page(s)" in run.stderr


def test_bad_flags_are_one_line_through_the_console_script(tmp_path):
    pdf = tmp_path / "doc.pdf"
    pdf.write_bytes(b"%PDF-1.4\n")
    for args, needle in ((["convert", str(pdf), "--format", "docx"], "--format must be one of"),
                         (["convert", str(pdf), "--bogus"], "No such option: --bogus"),
                         (["nosuch"], "No such command"),
                         (["ocr"], "Missing argument")):
        run = subprocess.run([sys.executable, "-m", "vary_cli", *args], capture_output=True, text=True, timeout=120)
        assert run.returncode == 2, (args, run.stderr)
        assert needle in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert "Traceback" not in run.stderr
    help_run = subprocess.run([sys.executable, "-m", "vary_cli", "--help"], capture_output=True, text=True, timeout=120)
    assert help_run.returncode == 0 and "convert" in help_run.stdout
