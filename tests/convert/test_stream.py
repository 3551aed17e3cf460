"""Many processes, one output tree: `--shard I/N` runs, torchrun, a killed rank, `--assemble-only`.

Every way of splitting a conversion must write exactly the files one process writes, leave no page
store or temporary file behind, and a process killed mid-run must lose only its unfinished pages.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from test_convert import make_pdf
from vary_cli.cli.app import app

ROOT = Path(__file__).parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Three documents of 3, 2 and 1 pages (a PDF in a subfolder, a PDF, an image): 6 pages in all."""
    docs = tmp_path_factory.mktemp("library")
    (docs / "sub").mkdir()
    make_pdf(docs / "sub" / "a.pdf", 3)
    make_pdf(docs / "b.pdf", 2)
    Image.new("RGB", (60, 80), (200, 230, 255)).save(docs / "c.png")
    # A fixed version (size and mtime) for every file, so the pages' owners are the same in every session:
    # this one splits both PDFs between two ranks, 3 pages each.
    for path in docs.rglob("*.*"):
        os.utime(path, ns=(1_700_000_003 * 10**9, 1_700_000_003 * 10**9))
    assert rank_share(docs, 0, 2) == 3
    return docs


def convert_args(library, out, checkpoint, *extra):
    return ["convert", str(library), "--out-dir", str(out), "--model", str(checkpoint), "--max-new-tokens", "4",
            "--format", "md", "--batch-size", "2", *extra]


def rank_share(library: Path, index: int, count: int) -> int:
    from vary_cli.convert.output import source_fingerprint
    from vary_cli.convert.shard import Shard
    from vary_cli.convert.stream import page_key

    pages = {"sub/a.pdf": 3, "b.pdf": 2, "c.png": 1}
    shard = Shard(index, count)
    return sum(shard.owns(page_key(library / name, source_fingerprint(library / name), n))
               for name, total in pages.items() for n in range(1, total + 1))


def tree(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def one_process(library, tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    result = CliRunner().invoke(app, convert_args(library, out, tiny_checkpoint))
    assert result.exit_code == 0, result.output
    files = tree(out)
    assert sorted(files) == ["b.md", "c.md", "sub/a.md"]
    return files


def test_two_shard_runs_in_sequence_write_what_one_process_writes(library, tiny_checkpoint, one_process, tmp_path):
    out = tmp_path / "out"
    first = CliRunner().invoke(app, convert_args(library, out, tiny_checkpoint, "--shard", "0/2"))
    assert first.exit_code == 0, first.output
    assert "rank 0/2 (--shard)" in first.output
    # Rank 0 keeps its pages in its own stores; documents with pages of rank 1 are not written yet.
    assert any(name.endswith(".pages.0-of-2.jsonl") for name in tree(out))
    assert tree(out) != one_process
    second = CliRunner().invoke(app, convert_args(library, out, tiny_checkpoint, "--shard", "1/2"))
    assert second.exit_code == 0, second.output
    pages = [int(line.split(" page(s),")[0].rsplit(" ", 1)[1]) for line in (first.output, second.output)
             for line in line.splitlines() if "pages/s" in line]
    assert sum(pages) == 6 and all(pages)  # every page was generated once, and both ranks had a share
    assert tree(out) == one_process  # no page store and no temporary file left


def test_torchrun_two_processes_write_what_one_process_writes(library, tiny_checkpoint, one_process, tmp_path):
    out = tmp_path / "out"
    run = subprocess.run(["torchrun", "--standalone", "--nproc-per-node", "2", "-m", "vary_cli",
                          *convert_args(library, out, tiny_checkpoint)],
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "rank 0/2 (torchrun) on cpu" in run.stderr and "rank 1/2 (torchrun) on cpu" in run.stderr
    assert tree(out) == one_process


KILLED_RANK = """
import os, signal, sys
from vary_cli.convert import output
real_add = output.PageStore.add
added = []
def add(self, result):
    real_add(self, result)
    added.append(result.page)
    if len(added) == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # the rank dies after its first finished page
output.PageStore.add = add
sys.argv = ["vary", *sys.argv[1:]]
from vary_cli.cli.app import main
main()
"""


def test_a_killed_rank_loses_only_its_unfinished_pages(library, tiny_checkpoint, one_process, tmp_path):
    out = tmp_path / "out"
    victim = max((0, 1), key=lambda index: rank_share(library, index, 2))  # the rank with 3 pages or more
    killed = subprocess.run([sys.executable, "-c", KILLED_RANK,
                             *convert_args(library, out, tiny_checkpoint, "--shard", f"{victim}/2")],
                            env=ENV, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    survivor = CliRunner().invoke(app, convert_args(library, out, tiny_checkpoint, "--shard", f"{1 - victim}/2"))
    assert survivor.exit_code == 0, survivor.output
    incomplete = tree(out)
    assert incomplete != one_process and any(".pages." in name for name in incomplete)
    # --assemble-only writes what is complete and says what is missing, without loading a model.
    assembled = CliRunner().invoke(app, ["convert", str(library), "--out-dir", str(out), "--format", "md",
                                         "--assemble-only"])
    assert assembled.exit_code == 1 and "page(s) missing" in assembled.output
    rerun = CliRunner().invoke(app, convert_args(library, out, tiny_checkpoint, "--shard", f"{victim}/2"))
    assert rerun.exit_code == 0, rerun.output
    generated = [int(line.split(" page(s),")[0].rsplit(" ", 1)[1]) for line in rerun.output.splitlines()
                 if "pages/s" in line]
    owned_at_start = [line for line in rerun.output.splitlines() if "page(s) to convert" in line]
    assert generated[0] == rank_share(library, victim, 2) - 1  # all of its pages but the one it stored
    assert f"{generated[0]} page(s) to convert" in owned_at_start[0]
    assert tree(out) == one_process  # equal output, no store and no temporary file left


def test_assemble_only_rebuilds_outputs_from_page_stores(library, tiny_checkpoint, one_process, tmp_path,
                                                         monkeypatch):
    from vary_cli.convert import stream

    out = tmp_path / "out"
    assert CliRunner().invoke(app, convert_args(library, out, tiny_checkpoint, "--shard", "0/2")).exit_code == 0
    # Rank 1 stores all its pages but dies before it assembles anything.
    monkeypatch.setattr(stream, "_assemble", lambda *a, **k: False)
    assert CliRunner().invoke(app, convert_args(library, out, tiny_checkpoint, "--shard", "1/2")).exit_code == 0
    monkeypatch.undo()
    assert tree(out) != one_process
    result = CliRunner().invoke(app, ["convert", str(library), "--out-dir", str(out), "--format", "md",
                                      "--assemble-only"])
    assert result.exit_code == 0, result.output
    assert tree(out) == one_process
