"""output.py: atomic writes under injected failures, output path layout, and per-page resume state."""

from __future__ import annotations

import json
import os

import pytest

from vary_cli import files
from vary_cli.errors import OutputError
from vary_cli.files import atomic_write_text
from vary_cli.convert.output import (PageStore, is_finished, output_path_for,
                                     plan_outputs, settings_fingerprint, sidecar_path, source_fingerprint)
from vary_cli.render.results import PageResult


def page(n, text=None, reason="stop", error=None):
    return PageResult(source="doc.pdf", text=f"text of page {n}" if text is None else text,
                      finish_reason=reason, tokens=4, seconds=0.25, page=n, error=error)


# --- atomic writes -----------------------------------------------------------------------------------

def test_atomic_write_creates_dirs_and_leaves_no_tmp(tmp_path):
    target = tmp_path / "out" / "sub" / "a.md"
    atomic_write_text(target, "héllo\r\nworld\n")
    assert target.read_bytes() == "héllo\r\nworld\n".encode()  # written exactly, no newline translation
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.md"]


def test_atomic_write_respects_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.md", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.md").stat().st_mode & 0o777 == 0o644


class Boom(Exception):
    pass


def fail_midway(monkeypatch):
    """Make the write fail after part of the text has reached the temporary file."""
    real_fdopen = os.fdopen

    def fdopen(fd, *args, **kwargs):
        handle = real_fdopen(fd, *args, **kwargs)
        real_write = handle.write

        def write(text):
            real_write(text[: len(text) // 2])
            handle.flush()
            raise Boom("disk went away")

        handle.write = write
        return handle

    monkeypatch.setattr(files.os, "fdopen", fdopen)


def test_failed_write_leaves_no_partial_target_and_no_tmp(tmp_path, monkeypatch):
    target = tmp_path / "a.md"
    fail_midway(monkeypatch)
    with pytest.raises(Boom):
        atomic_write_text(target, "new content " * 100)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_old_target(tmp_path, monkeypatch):
    target = tmp_path / "a.md"
    target.write_text("old content")
    fail_midway(monkeypatch)
    with pytest.raises(Boom):
        atomic_write_text(target, "new content " * 100)
    assert target.read_text() == "old content"
    assert [p.name for p in tmp_path.iterdir()] == ["a.md"]


def test_os_errors_become_one_line_output_errors(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(OutputError, match=r"a\.md: cannot write the output \(No space left on device\)"):
        atomic_write_text(tmp_path / "a.md", "x")
    assert list(tmp_path.iterdir()) == []


# --- output paths ------------------------------------------------------------------------------------

def test_output_path_keeps_relative_layout(tmp_path):
    root, out = tmp_path / "in", tmp_path / "out"
    assert output_path_for(root / "x" / "a.pdf", root, out, "md") == out / "x" / "a.md"
    assert output_path_for(root / "a.pdf", root, None, "tex") == root / "a.tex"
    assert output_path_for(root / "a.pdf", root, out, "md", keep_suffix=True) == out / "a.pdf.md"


def test_plan_outputs_disambiguates_clashes_by_full_name(tmp_path):
    root = tmp_path / "in"
    (root / "x").mkdir(parents=True)
    inputs = [root / "a.pdf", root / "a.png", root / "b.pdf", root / "x" / "a.pdf"]
    for path in inputs:
        path.write_bytes(b"x")
    out = tmp_path / "out"
    plan = plan_outputs(inputs, [root], out, "md")
    assert plan == {root / "a.pdf": out / "a.pdf.md", root / "a.png": out / "a.png.md",
                    root / "b.pdf": out / "b.md", root / "x" / "a.pdf": out / "x" / "a.md"}
    assert plan_outputs(list(reversed(inputs)), [root], out, "md") == plan  # independent of order
    assert plan_outputs(inputs[:2], [root], None, "txt")[root / "a.png"] == root / "a.png.txt"


def test_plan_outputs_raises_when_names_still_clash(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for folder in (one, two):
        folder.mkdir()
        (folder / "a.pdf").write_bytes(b"x")
    with pytest.raises(OutputError, match="would both be written to"):
        plan_outputs([one / "a.pdf", two / "a.pdf"], [one, two], tmp_path / "out", "md")


# --- resume state ------------------------------------------------------------------------------------

def test_page_store_resumes_complete_pages_and_drops_a_torn_line(tmp_path):
    target = tmp_path / "doc.md"
    with PageStore(target, "src-1", "set-1") as store:
        for n in (1, 2, 3):
            store.add(page(n))
    sidecar = sidecar_path(target)
    assert sidecar.name == "doc.md.pages.jsonl"
    # SIGKILL in the middle of writing page 3: its line is cut short.
    data = sidecar.read_bytes()
    sidecar.write_bytes(data[: data.rindex(b'"text"')])
    store = PageStore(target, "src-1", "set-1")
    assert sorted(store.finished) == [1, 2]
    assert store.finished[2] == page(2)
    # Appending after the torn line must not glue the next record onto it.
    store.add(page(3))
    store.close()
    again = PageStore(target, "src-1", "set-1")
    assert sorted(again.finished) == [1, 2, 3]
    assert all(json.loads(line) for line in sidecar.read_text().splitlines())


def test_failed_pages_are_retried_on_resume(tmp_path):
    target = tmp_path / "doc.md"
    with PageStore(target, "s", "t") as store:
        store.add(page(1))
        store.add(page(2, "", "error", error="render failed"))
        assert sorted(store.finished) == [1]
    store = PageStore(target, "s", "t")
    assert sorted(store.finished) == [1]
    store.add(page(2))  # the retry succeeds
    store.close()
    assert sorted(PageStore(target, "s", "t").finished) == [1, 2]


@pytest.mark.parametrize("source, settings", [("src-2", "set-1"), ("src-1", "set-2")])
def test_fingerprint_change_discards_everything(tmp_path, source, settings):
    target = tmp_path / "doc.md"
    with PageStore(target, "src-1", "set-1") as store:
        store.add(page(1))
        store.add(page(2))
    store = PageStore(target, source, settings)
    assert store.finished == {}
    store.add(page(5))
    store.close()
    lines = [json.loads(line) for line in sidecar_path(target).read_text().splitlines()]
    assert lines[0]["source"] == source and [line["page"] for line in lines[1:]] == [5]


def test_resume_false_starts_over(tmp_path):
    target = tmp_path / "doc.md"
    with PageStore(target, "s", "t") as store:
        store.add(page(1))
    assert PageStore(target, "s", "t", resume=False).finished == {}


def test_finish_removes_state_and_output_counts_as_finished(tmp_path):
    target = tmp_path / "doc.md"
    assert not is_finished(target)
    store = PageStore(target, "s", "t")
    store.add(page(1))
    atomic_write_text(target, "# done\n")
    assert not is_finished(target)  # output exists but a sidecar says the run did not end
    store.finish()
    assert is_finished(target) and not sidecar_path(target).exists()


def test_single_image_page_none_round_trips(tmp_path):
    target = tmp_path / "a.md"
    single = PageResult(source="a.png", text="hi", finish_reason="stop", tokens=1, seconds=0.1)
    with PageStore(target, "s", "t") as store:
        store.add(single)
    assert PageStore(target, "s", "t").finished == {None: single}


def test_fingerprints(tmp_path):
    path = tmp_path / "a.pdf"
    path.write_bytes(b"1234")
    first = source_fingerprint(path)
    os.utime(path, ns=(1, 2_000_000_000))
    assert source_fingerprint(path) != first
    assert settings_fingerprint({"model": "vary-toy", "max_tokens": 4096}) == \
        settings_fingerprint({"max_tokens": 4096, "model": "vary-toy"})
    assert settings_fingerprint({"model": "vary-toy"}) != settings_fingerprint({"model": "vary-base"})
