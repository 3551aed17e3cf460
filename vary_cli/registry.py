"""The model registry: `weights.toml` parsed into frozen `ModelEntry` records.

Used by `load()` to turn `--model vary-toy` into a hub repo and by the CLI to list known names.
No torch here.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .errors import WeightsError


@dataclass(frozen=True)
class ModelEntry:
    """One model of weights.toml."""

    name: str
    arch: str
    repo: str
    revision: str
    files: tuple[str, ...]
    license: str
    size: str
    description: str


def _registry_text() -> str:
    # The installed package carries a copy; a source checkout reads the top-level file.
    packaged = resources.files("vary_cli").joinpath("weights.toml")
    if packaged.is_file():
        return packaged.read_text()
    return (Path(__file__).resolve().parent.parent / "weights.toml").read_text()


@lru_cache(maxsize=1)
def entries() -> dict[str, ModelEntry]:
    """All registry entries by name."""
    raw = tomllib.loads(_registry_text()).get("models", {})
    return {name: ModelEntry(name=name, arch=e["arch"], repo=e.get("repo", ""), revision=e.get("revision", ""),
                             files=tuple(e.get("files", ())), license=e.get("license", ""),
                             size=e.get("size", ""), description=e.get("description", ""))
            for name, e in raw.items()}


def lookup(name: str) -> ModelEntry:
    """The entry called `name`; an unknown name lists the known ones."""
    known = entries()
    if name not in known:
        raise WeightsError(f"unknown model {name!r}: not a directory and not a known model name "
                           f"(known: {', '.join(sorted(known))})")
    return known[name]
