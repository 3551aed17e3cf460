"""hub.py against a fake hub (tests/fake_hub.py): pinned revision, allow-listed files, no network when
cached or offline, hashes. Sockets are disabled in every test: any HTTP would fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from vary_cli.weights import hub
from vary_cli.errors import WeightsError
from vary_cli.weights.registry import ModelEntry
from fake_hub import ENTRY, FILES, REPO, FakeHub

@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VARY_HOME", str(tmp_path / "vary"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a test tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    fake = FakeHub(monkeypatch)
    fake.publish(REPO, FILES)
    return fake


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_paths_follow_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert hub.vary_home() == tmp_path / "vary"
    assert hub.hf_cache_dir() == tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert hub.hf_cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("VARY_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform not in ("darwin", "win32"):
        assert hub.vary_home() == tmp_path / "xdg" / "vary"
    assert hub.lock_path(ENTRY).name == "tiny.json"


def test_download_passes_pin_and_fetches_only_listed_files(fake_hub: FakeHub, tmp_path: Path) -> None:
    directory = hub.download(ENTRY)
    (call,) = fake_hub.calls
    assert call["repo_id"] == REPO and call["revision"] == "main"
    assert call["allow_patterns"] == list(ENTRY.files)
    assert Path(call["cache_dir"]) == tmp_path / "hf" / "hub"
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "pytorch_model.bin", "qwen.tiktoken"]
    assert directory.is_relative_to(tmp_path / "hf" / "hub" / "models--test-org--tiny-vary" / "snapshots")


def test_lock_file_records_commit_and_hashes(fake_hub: FakeHub) -> None:
    directory = hub.download(ENTRY)
    lock = json.loads(hub.lock_path(ENTRY).read_text())
    assert lock["repo"] == REPO and lock["revision"] == "main" and lock["commit"] == directory.name
    assert set(lock["files"]) == {"config.json", "pytorch_model.bin", "qwen.tiktoken"}
    record = lock["files"]["pytorch_model.bin"]
    assert record["sha256"] == sha(FILES["pytorch_model.bin"])
    assert record["size"] == len(FILES["pytorch_model.bin"]) and isinstance(record["mtime_ns"], int)


def test_cached_files_resolve_without_network_and_lock_is_written_once(fake_hub: FakeHub) -> None:
    first = hub.resolve(ENTRY)
    lock_before = hub.lock_path(ENTRY).stat().st_mtime_ns
    fake_hub.unreachable = True  # any download attempt would now fail loudly
    assert hub.resolve(ENTRY) == first
    assert hub.download(ENTRY) == first  # download of a present model is a no-op too
    assert len(fake_hub.calls) == 1
    assert hub.lock_path(ENTRY).stat().st_mtime_ns == lock_before


def test_offline_mode_uses_the_cache_and_never_downloads(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = hub.download(ENTRY)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.resolve(ENTRY) == directory
    hub.remove(ENTRY)
    with pytest.raises(WeightsError, match="HF_HUB_OFFLINE"):
        hub.resolve(ENTRY)
    assert len(fake_hub.calls) == 1


def test_unreachable_hub_is_a_weights_error(fake_hub: FakeHub) -> None:
    fake_hub.unreachable = True
    with pytest.raises(WeightsError, match="hub is unreachable"):
        hub.resolve(ENTRY)


def test_registry_sha256_is_enforced(fake_hub: FakeHub) -> None:
    good = replace(ENTRY, sha256={"config.json": sha(FILES["config.json"])})
    hub.download(good)
    bad = replace(ENTRY, name="tiny2", sha256={"pytorch_model.bin": "0" * 64})
    with pytest.raises(WeightsError) as err:
        hub.download(bad)
    message = str(err.value)
    assert "pytorch_model.bin" in message and "vary models download tiny2 --force" in message
    assert "\n" not in message
    with pytest.raises(WeightsError, match="pytorch_model.bin"):  # and on a later load, from the cache
        hub.resolve(bad)


def test_modified_file_is_caught_on_load(fake_hub: FakeHub) -> None:
    directory = hub.resolve(ENTRY)
    target = directory / "pytorch_model.bin"
    target.write_bytes(b"x" * len(FILES["pytorch_model.bin"]))  # same size, new mtime
    with pytest.raises(WeightsError) as err:
        hub.resolve(ENTRY)
    assert str(target) in str(err.value)
    assert "vary models download tiny --force" in str(err.value) and "vary models rm tiny" in str(err.value)


def test_stat_cache_skips_rehash_until_size_or_mtime_changes(fake_hub: FakeHub) -> None:
    directory = hub.resolve(ENTRY)
    target = directory / "pytorch_model.bin"
    # Touched but identical: rehashed once, accepted, and the new mtime is stored.
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    hub.resolve(ENTRY)
    assert json.loads(hub.lock_path(ENTRY).read_text())["files"]["pytorch_model.bin"]["mtime_ns"] == \
        stat.st_mtime_ns + 10**9
    # The documented trade-off: same size and mtime hides an edit from a load, not from verify.
    stat = target.stat()
    target.write_bytes(b"y" * stat.st_size)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    hub.resolve(ENTRY)
    report = hub.verify(ENTRY)
    assert not report.ok
    assert [(c.path, c.status) for c in report.files if c.status != "ok"] == [("pytorch_model.bin", "changed")]
    assert "vary models download tiny --force" in report.summary()


def test_verify_reports_ok_and_missing(fake_hub: FakeHub) -> None:
    directory = hub.download(ENTRY)
    report = hub.verify(ENTRY)
    assert report.ok and report.directory == directory and len(report.files) == 3
    (directory / "qwen.tiktoken").unlink()
    report = hub.verify(ENTRY)
    assert [(c.path, c.status) for c in report.files if c.status != "ok"] == [("qwen.tiktoken", "missing")]


def test_missing_file_is_fetched_again_and_checked_against_the_lock(fake_hub: FakeHub) -> None:
    directory = hub.download(ENTRY)
    (directory / "qwen.tiktoken").unlink()
    assert hub.resolve(ENTRY) == directory
    assert len(fake_hub.calls) == 2 and (directory / "qwen.tiktoken").is_file()


def test_force_downloads_again_and_rerecords(fake_hub: FakeHub) -> None:
    directory = hub.download(ENTRY)
    (directory / "config.json").write_text('{"broken": true}')
    with pytest.raises(WeightsError):
        hub.resolve(ENTRY)
    assert hub.download(ENTRY, force=True) == directory
    assert fake_hub.calls[-1]["force_download"] is True
    assert hub.resolve(ENTRY) == directory
    assert (directory / "config.json").read_bytes() == FILES["config.json"]


def test_cache_filled_by_another_tool_is_adopted_without_network(fake_hub: FakeHub) -> None:
    directory = hub.download(ENTRY)
    hub.lock_path(ENTRY).unlink()
    fake_hub.unreachable = True
    assert hub.status(ENTRY) == (True, directory)
    assert hub.resolve(ENTRY) == directory
    assert hub.lock_path(ENTRY).is_file() and len(fake_hub.calls) == 1


def test_commit_pin_and_subfolder(fake_hub: FakeHub) -> None:
    commit = fake_hub.publish("org/tiny-sub", {"Vary-tiny/config.json": b"{}", "Vary-tiny/pytorch_model.bin": b"w",
                                               "Vary-tiny/vocab.json": b"{}", "other/big.bin": b"no"})
    entry = ModelEntry(name="sub", arch="vary-tiny", repo="org/tiny-sub", revision=commit, subfolder="Vary-tiny",
                       files=("*.json", "*.bin"))
    directory = hub.resolve(entry)
    assert fake_hub.calls[-1]["revision"] == commit
    assert fake_hub.calls[-1]["allow_patterns"] == ["Vary-tiny/*.json", "Vary-tiny/*.bin"]
    assert directory.name == "Vary-tiny" and directory.parent.name == commit
    assert not (directory.parent / "other").exists()
    assert set(json.loads(hub.lock_path(entry).read_text())["files"]) == {"config.json", "pytorch_model.bin",
                                                                          "vocab.json"}
    fake_hub.unreachable = True
    assert hub.resolve(entry) == directory


def test_status_and_remove(fake_hub: FakeHub) -> None:
    assert hub.status(ENTRY) == (False, None)
    assert hub.remove(ENTRY) == 0
    directory = hub.download(ENTRY)
    assert hub.status(ENTRY) == (True, directory)
    assert hub.remove(ENTRY) > 0
    assert hub.status(ENTRY) == (False, None)
    assert not directory.exists() and not hub.lock_path(ENTRY).exists()


def test_wrong_patterns_without_config_json_are_reported(fake_hub: FakeHub) -> None:
    entry = ModelEntry(name="wrong", arch="vary-toy", repo=REPO, revision="main", files=("*.bin",))
    with pytest.raises(WeightsError, match="no config.json"):
        hub.download(entry)


def test_entry_without_repo_points_to_model_dir() -> None:
    entry = ModelEntry(name="vary-base", arch="vary-base")
    for action in (hub.resolve, hub.download, hub.verify, hub.remove):
        with pytest.raises(WeightsError, match="--model DIR"):
            action(entry)
    assert hub.status(entry) == (False, None)
