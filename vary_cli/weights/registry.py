"""The model registry: `weights.toml` parsed into frozen `ModelEntry` records.

Used by `checkpoint.load()` to turn `--model vary-toy` into a hub repo (through `hub.resolve`) and by
`vary models` to list, download, verify and remove models. Parsing is strict: an unknown key or a
malformed hash is a `WeightsError` naming the entry, so a typo in the registry cannot silently turn
hash checking off. No torch here.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import WeightsError

COMMIT_RE = re.compile(r"[0-9a-f]{40}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
_REQUIRED = ("arch",)
_OPTIONAL = ("repo", "revision", "subfolder", "files", "sha256", "license", "size", "description")


@dataclass(frozen=True)
class ModelEntry:
    """One model of weights.toml.

    `files` and the keys of `sha256` are relative to `subfolder` (the checkpoint directory), so the
    same names work whether or not the repo nests the checkpoint in a folder.
    """

    name: str
    arch: str
    repo: str = ""
    revision: str = ""
    files: tuple[str, ...] = ()
    license: str = ""
    size: str = ""
    description: str = ""
    subfolder: str = ""
    # A read-only mapping; left out of the hash so entries stay hashable (dicts are not).
    sha256: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    @property
    def downloadable(self) -> bool:
        """Whether the weights have a public hub repo (False: use `--model DIR`)."""
        return bool(self.repo)

    @property
    def pinned_to_commit(self) -> bool:
        """Whether `revision` is an immutable 40-hex commit rather than a branch or tag."""
        return bool(COMMIT_RE.fullmatch(self.revision))

    @property
    def allow_patterns(self) -> list[str]:
        """The `files` globs as hub paths, i.e. prefixed with the subfolder."""
        prefix = f"{self.subfolder.strip('/')}/" if self.subfolder else ""
        return [prefix + pattern for pattern in self.files]


def _fail(source: str, name: str, message: str) -> WeightsError:
    return WeightsError(f"{source}: [models.{name}] {message}")


def _string(raw: Mapping[str, Any], key: str, source: str, name: str) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str):
        raise _fail(source, name, f"{key} must be a string, got {value!r}")
    return value


def _entry(name: str, raw: Mapping[str, Any], source: str) -> ModelEntry:
    unknown = sorted(set(raw) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise _fail(source, name, f"unknown key(s) {', '.join(unknown)}; "
                                  f"allowed: {', '.join(_REQUIRED + _OPTIONAL)}")
    missing = [key for key in _REQUIRED if key not in raw]
    if missing:
        raise _fail(source, name, f"missing {', '.join(missing)}")
    repo, revision = _string(raw, "repo", source, name), _string(raw, "revision", source, name)
    if repo and not revision:
        # An unpinned download would follow whatever the repo's default branch holds today.
        raise _fail(source, name, "has a repo but no revision; pin a branch, tag or 40-hex commit")
    files = raw.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
        raise _fail(source, name, f"files must be a list of glob strings, got {files!r}")
    if repo and not files:
        raise _fail(source, name, "has a repo but no files; list the globs to fetch")
    hashes = raw.get("sha256", {})
    if not isinstance(hashes, dict):
        raise _fail(source, name, f"sha256 must be a table of file = hash, got {hashes!r}")
    for file, digest in hashes.items():
        if not isinstance(digest, str) or not SHA256_RE.fullmatch(digest):
            raise _fail(source, name, f"sha256 of {file!r} must be 64 lower-case hex digits, got {digest!r}")
    return ModelEntry(name=name, arch=_string(raw, "arch", source, name), repo=repo, revision=revision,
                      files=tuple(files), license=_string(raw, "license", source, name),
                      size=_string(raw, "size", source, name),
                      description=_string(raw, "description", source, name),
                      subfolder=_string(raw, "subfolder", source, name).strip("/"),
                      sha256=MappingProxyType(dict(hashes)))


def parse(text: str, source: str = "weights.toml") -> dict[str, ModelEntry]:
    """Parse registry text into entries by name; `source` names the file in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WeightsError(f"{source}: not valid TOML ({exc})") from None
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise WeightsError(f"{source}: [models] must be a table of tables")
    out: dict[str, ModelEntry] = {}
    for name, raw in models.items():
        if not isinstance(raw, dict):
            raise _fail(source, name, "must be a table")
        out[name] = _entry(name, raw, source)
    return out


def _registry_text() -> str:
    # The installed package carries a copy; a source checkout may only have the top-level file.
    packaged = resources.files("vary_cli").joinpath("weights.toml")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parents[2] / "weights.toml").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def entries() -> dict[str, ModelEntry]:
    """All registry entries by name, in file order."""
    return parse(_registry_text())


def lookup(name: str) -> ModelEntry:
    """The entry called `name`; an unknown name lists the known ones."""
    known = entries()
    if name not in known:
        raise WeightsError(f"unknown model {name!r}: not a directory and not a known model name "
                           f"(known: {', '.join(sorted(known))})")
    return known[name]
