"""registry.py: the shipped weights.toml parses, lookups list known names, malformed entries are WeightsErrors."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from vary_cli.weights import registry
from vary_cli.errors import WeightsError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VARY_HOME", str(tmp_path / "vary"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


def test_packaged_copy_is_identical_to_the_top_level_file() -> None:
    assert (ROOT / "vary_cli" / "weights.toml").read_text() == (ROOT / "weights.toml").read_text()


def test_shipped_entries() -> None:
    known = registry.entries()
    assert {"vary-tiny", "vary-toy", "vary-base"} <= set(known)
    toy = known["vary-toy"]
    assert toy.repo == "HaoranWei/Vary-toy" and toy.revision == "main" and toy.arch == "vary-toy"
    assert "config.json" in toy.files and toy.downloadable and not toy.pinned_to_commit
    tiny = known["vary-tiny"]
    assert tiny.repo == "HaoranWei/Vary-tiny-opt125M" and tiny.subfolder == "Vary-tiny" and tiny.arch == "vary-tiny"
    assert all(p.startswith("Vary-tiny/") for p in tiny.allow_patterns)
    base = known["vary-base"]
    assert not base.downloadable and "--model DIR" in base.description
    got, original = known["got-ocr2"], known["got-ocr2-original"]
    assert (got.repo, original.repo) == ("stepfun-ai/GOT-OCR-2.0-hf", "stepfun-ai/GOT-OCR2_0")
    assert got.arch == original.arch == "got-ocr2" and "tokenizer.json" in got.files
    assert "qwen.tiktoken" in original.files and not any(f.endswith(".py") for f in original.files)  # no remote code
    for entry in known.values():
        assert entry.description and entry.size and entry.license


def test_lookup_unknown_lists_known_names() -> None:
    assert registry.lookup("vary-toy").name == "vary-toy"
    with pytest.raises(WeightsError, match="known: got-ocr2, got-ocr2-original, vary-base, vary-tiny, vary-toy"):
        registry.lookup("vary-huge")


def test_entries_are_frozen_and_hashable() -> None:
    entry = registry.parse('[models.m]\narch = "vary-toy"\nrepo = "o/m"\nrevision = "main"\nfiles = ["*.bin"]\n'
                           f'sha256 = {{ "a.bin" = "{"ab" * 32}" }}\n')["m"]
    with pytest.raises(FrozenInstanceError):
        entry.repo = "other/repo"  # type: ignore[misc]
    with pytest.raises(TypeError):
        entry.sha256["a.bin"] = "0" * 64  # type: ignore[index]
    assert hash(entry) == hash(entry) and entry.sha256["a.bin"] == "ab" * 32


def test_commit_pin_is_recognised() -> None:
    entry = registry.parse(f'[models.m]\narch = "x"\nrepo = "o/m"\nrevision = "{"a" * 40}"\nfiles = ["*"]\n')["m"]
    assert entry.pinned_to_commit and entry.allow_patterns == ["*"]


@pytest.mark.parametrize("body, message", [
    ('arch = "x"\nrepo = "o/m"\nrevision = "main"\nfiles = ["*"]\nsha265 = {}', "unknown key"),
    ('repo = "o/m"\nrevision = "main"\nfiles = ["*"]', "missing arch"),
    ('arch = "x"\nrepo = "o/m"\nfiles = ["*"]', "no revision"),
    ('arch = "x"\nrepo = "o/m"\nrevision = "main"\nfiles = []', "no files"),
    ('arch = "x"\nrepo = "o/m"\nrevision = "main"\nfiles = "*.bin"', "list of glob"),
    ('arch = "x"\nrepo = "o/m"\nrevision = "main"\nfiles = ["*"]\nsha256 = { "a" = "xyz" }', "64 lower-case hex"),
    ('arch = 3', "must be a string"),
])
def test_malformed_entries_name_the_entry(body: str, message: str) -> None:
    with pytest.raises(WeightsError, match=message) as err:
        registry.parse(f"[models.bad]\n{body}\n", source="my.toml")
    assert str(err.value).startswith("my.toml: [models.bad]")


def test_invalid_toml_is_a_weights_error() -> None:
    with pytest.raises(WeightsError, match="not valid TOML"):
        registry.parse("[models.bad\n")
