"""Resolve a registry entry to a local checkpoint directory through huggingface_hub's cache.

Used by `checkpoint.load()` (`hub.resolve(registry.lookup(name))`) and by `vary models`
(`download`, `verify`, `remove`, `status`). Files live in the standard HF cache (HF_HOME,
HF_HUB_CACHE); our own state lives under VARY_HOME (default ~/.cache/vary or the platform's cache).

Every load looks in the cache first and makes no network call when the files are there (nor ever
with HF_HUB_OFFLINE=1). Integrity: a sha256 listed in weights.toml is always enforced; other files
are hashed at first download into a lock file, VARY_HOME/locks/NAME.json, and checked on each later
load. Rehashing 4 GB on every load would cost seconds, so a load only rehashes a file whose
(size, mtime_ns) differs from the lock's. The trade-off: an edit that keeps both size and mtime
(e.g. `touch -r` after a same-size rewrite) passes a load; `vary models verify NAME` always rehashes
everything. No torch here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from ..errors import WeightsError
from .registry import ModelEntry

LOCK_VERSION = 1


def vary_home() -> Path:
    """Our own state directory: $VARY_HOME, else the platform's user cache directory + /vary."""
    if os.environ.get("VARY_HOME"):
        return Path(os.environ["VARY_HOME"]).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "vary"


def hf_cache_dir() -> Path:
    """huggingface_hub's cache, from the environment at call time.

    huggingface_hub reads these variables once, at import; reading them per call (and passing
    cache_dir explicitly) means a later change of HF_HOME, e.g. in tests, is honoured.
    """
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface" / "hub"


def offline() -> bool:
    """Whether HF_HUB_OFFLINE forbids network access (read now, falling back to hf's import-time value)."""
    if "HF_HUB_OFFLINE" in os.environ:
        return os.environ["HF_HUB_OFFLINE"].strip().lower() in ("1", "true", "yes", "on")
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def lock_path(entry: ModelEntry) -> Path:
    """Where the hashes recorded at first download of `entry` are kept."""
    return vary_home() / "locks" / f"{entry.name}.json"


@dataclass(frozen=True)
class FileCheck:
    """The outcome of checking one file: status is 'ok', 'changed' or 'missing'."""

    path: str
    status: str
    expected: str
    actual: str | None = None


@dataclass(frozen=True)
class VerifyReport:
    """What `verify` found: one FileCheck per locked or registry-listed file."""

    name: str
    directory: Path
    files: tuple[FileCheck, ...]

    @property
    def ok(self) -> bool:
        return all(check.status == "ok" for check in self.files)

    def summary(self) -> str:
        """One line: all good, or which files are bad and how to fix them."""
        bad = [check for check in self.files if check.status != "ok"]
        if not bad:
            return f"{self.name}: {len(self.files)} file(s) match their sha256"
        names = ", ".join(f"{check.path} ({check.status})" for check in bad)
        return f"{self.name}: {names} in {self.directory}; {_fix(self.name)}"


def _fix(name: str) -> str:
    return f"re-download with `vary models download {name} --force` or remove with `vary models rm {name}`"


def _require_repo(entry: ModelEntry) -> None:
    if not entry.downloadable:
        raise WeightsError(f"{entry.name}: there is no public download of these weights; "
                           f"get them from the authors and pass --model DIR")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _read_lock(entry: ModelEntry) -> dict[str, Any] | None:
    try:
        lock = json.loads(lock_path(entry).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # absent or unreadable (it is written atomically, so only a hand edit breaks it)
    # A lock of another repo/revision (the registry changed) says nothing about these files.
    if not isinstance(lock, dict) or [lock.get(k) for k in ("version", "repo", "revision", "subfolder")] != \
            [LOCK_VERSION, entry.repo, entry.revision, entry.subfolder]:
        return None
    return lock


def _write_lock(entry: ModelEntry, lock: dict[str, Any]) -> None:
    # Atomic, with a temporary name of its own: a crash never leaves a half-written lock, and two vary
    # processes recording the same lock at once do not trip over each other's temporary file.
    from ..files import atomic_write_text

    atomic_write_text(lock_path(entry), json.dumps(lock, indent=2, sort_keys=True) + "\n")


def _cached(entry: ModelEntry, revision: str, partial: bool = False) -> tuple[Path, str] | None:
    """(checkpoint dir, commit) of `revision` in the HF cache, or None; never touches the network.

    With `partial`, a snapshot that hf knows to be incomplete counts too (for removal).
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import LocalEntryNotFoundError

    path: str | None
    try:
        path = snapshot_download(repo_id=entry.repo, revision=revision, cache_dir=hf_cache_dir(),
                                 allow_patterns=entry.allow_patterns, local_files_only=True)
    except LocalEntryNotFoundError as exc:  # newer hf raises IncompleteSnapshotError, which has the path
        path = getattr(exc, "snapshot_path", None) if partial else None
    if path is None:
        return None
    snapshot = Path(path)
    return (snapshot / entry.subfolder if entry.subfolder else snapshot), snapshot.name


def _matching_files(entry: ModelEntry, directory: Path) -> list[str]:
    found = (p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
    return sorted(rel for rel in found if any(fnmatch(rel, pattern) for pattern in entry.files))


def _looks_complete(entry: ModelEntry, directory: Path) -> bool:
    # Used only for a cache that some other tool filled (no lock yet): config, every literal file
    # name of the registry, and either every shard of an index or at least one weight file.
    if not (directory / "config.json").is_file():
        return False
    literals = [p for p in entry.files if not any(c in p for c in "*?[")]
    if not all((directory / p).is_file() for p in literals):
        return False
    indexes = list(directory.glob("*.index.json"))
    for index in indexes:
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError):
            return False
        if not all((directory / shard).is_file() for shard in shards):
            return False
    return bool(indexes) or any(directory.glob("*.safetensors")) or any(directory.glob("*.bin"))


def _find_local(entry: ModelEntry, lock: dict[str, Any] | None) -> tuple[Path, str] | None:
    """(checkpoint dir, commit) when every needed file is in the cache; no network, no hashing."""
    # With a lock, look up the commit it recorded, so a branch that moved on the hub (and was
    # re-fetched by another tool) cannot swap the files under the lock.
    found = _cached(entry, lock["commit"] if lock else entry.revision)
    if found is None:
        return None
    directory = found[0]
    if lock is not None:
        complete = all((directory / rel).is_file() for rel in lock["files"])
    else:
        complete = _looks_complete(entry, directory)
    return found if complete else None


def _check(entry: ModelEntry, directory: Path, lock: dict[str, Any], full: bool) -> list[FileCheck]:
    """Compare files with the registry's sha256 (first) or the lock's; refresh stat caches that hold."""
    checks: list[FileCheck] = []
    touched = False
    for rel in sorted(set(lock["files"]) | set(entry.sha256)):
        record = lock["files"].get(rel)
        expected = entry.sha256.get(rel) or record["sha256"]
        path = directory / rel
        if not path.is_file():
            checks.append(FileCheck(rel, "missing", expected))
            continue
        stat = path.stat()
        same_stat = record is not None and (stat.st_size, stat.st_mtime_ns) == (record["size"], record["mtime_ns"])
        if not full and same_stat and record["sha256"] == expected:
            checks.append(FileCheck(rel, "ok", expected, expected))
            continue
        actual = _sha256(path)
        checks.append(FileCheck(rel, "ok" if actual == expected else "changed", expected, actual))
        if actual == expected and not same_stat:
            lock["files"][rel] = {"sha256": actual, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
            touched = True
    if touched:
        _write_lock(entry, lock)
    return checks


def _raise_first(entry: ModelEntry, directory: Path, checks: list[FileCheck]) -> None:
    for check in checks:
        if check.status == "missing":
            raise WeightsError(f"{directory / check.path}: missing from the {entry.name} download; "
                               f"run `vary models download {entry.name}`")
        if check.status == "changed":
            raise WeightsError(f"{directory / check.path}: sha256 {(check.actual or '')[:12]}… does not match "
                               f"the expected {check.expected[:12]}…; {_fix(entry.name)}")


def _record(entry: ModelEntry, directory: Path, commit: str, previous: dict[str, Any] | None) -> dict[str, Any]:
    """Hash the checkpoint's files into a new lock, checking them against the registry and `previous`."""
    files = _matching_files(entry, directory)
    if "config.json" not in files:
        raise WeightsError(f"{directory}: no config.json among the files fetched from {entry.repo}@{entry.revision} "
                           f"(patterns {', '.join(entry.allow_patterns)}); the registry entry is wrong")
    old = previous["files"] if previous and previous.get("commit") == commit else {}
    lock: dict[str, Any] = {"version": LOCK_VERSION, "name": entry.name, "repo": entry.repo,
                            "revision": entry.revision, "commit": commit, "subfolder": entry.subfolder,
                            "files": {}}
    for rel in files:
        stat = (directory / rel).stat()
        known = old.get(rel)
        if known and (stat.st_size, stat.st_mtime_ns) == (known["size"], known["mtime_ns"]):
            digest = known["sha256"]
        else:
            digest = _sha256(directory / rel)
        lock["files"][rel] = {"sha256": digest, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    # Files of one commit are immutable on the hub, so a hash that moved since the old lock is corruption.
    reference = {rel: rec["sha256"] for rel, rec in old.items()} | dict(entry.sha256)
    checks = [FileCheck(rel, "changed", want, lock["files"][rel]["sha256"]) for rel, want in sorted(reference.items())
              if rel in lock["files"] and lock["files"][rel]["sha256"] != want]
    checks += [FileCheck(rel, "missing", want) for rel, want in sorted(entry.sha256.items())
               if rel not in lock["files"]]
    _raise_first(entry, directory, checks)
    _write_lock(entry, lock)
    return lock


def _fetch(entry: ModelEntry, force: bool) -> tuple[Path, str]:
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import (
                                       GatedRepoError,
                                       HfHubHTTPError,
                                       LocalEntryNotFoundError,
                                       RepositoryNotFoundError,
                                       RevisionNotFoundError,
                                       )

    try:
        # hf resumes partial files, shows tqdm bars on stderr, and fetches only allow_patterns.
        path = Path(snapshot_download(repo_id=entry.repo, revision=entry.revision, cache_dir=hf_cache_dir(),
                                      allow_patterns=entry.allow_patterns, force_download=force))
    except RevisionNotFoundError:
        raise WeightsError(f"{entry.name}: {entry.repo} has no revision {entry.revision!r}; the pin in "
                           f"weights.toml is wrong") from None
    except (RepositoryNotFoundError, GatedRepoError):
        raise WeightsError(f"{entry.name}: {entry.repo} is not on the hub or needs a login (`hf auth login`)") from None
    except LocalEntryNotFoundError:
        raise WeightsError(f"{entry.name}: not downloaded and the hub is unreachable; connect once "
                           f"(or copy the files and pass --model DIR)") from None
    except (HfHubHTTPError, OSError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise WeightsError(f"{entry.name}: download of {entry.repo}@{entry.revision} failed ({first}); "
                           f"run it again to resume") from None
    return (path / entry.subfolder if entry.subfolder else path), path.name


def download(entry: ModelEntry, force: bool = False) -> Path:
    """Fetch `entry`'s files (unless cached and intact) and return the checkpoint directory.

    Args:
        force: download every file again and record fresh hashes, replacing the lock.
    """
    _require_repo(entry)
    if not force:
        lock = _read_lock(entry)
        if _find_local(entry, lock) is not None:
            return resolve(entry)
    if offline():
        raise WeightsError(f"{entry.name}: not in the Hugging Face cache ({hf_cache_dir()}) and HF_HUB_OFFLINE "
                           f"is set; unset it to download, or pass --model DIR")
    directory, commit = _fetch(entry, force)
    _record(entry, directory, commit, None if force else _read_lock(entry))
    return directory


def resolve(entry: ModelEntry) -> Path:
    """A local directory holding `entry`'s config.json and weights, downloading them once if needed.

    Cached files are checked (stat-cached sha256, see the module docstring) without any network call.
    """
    _require_repo(entry)
    lock = _read_lock(entry)
    found = _find_local(entry, lock)
    if found is None:
        return download(entry)
    directory, commit = found
    if lock is None:
        _record(entry, directory, commit, None)  # adopt a cache another tool filled: hash it once
    else:
        _raise_first(entry, directory, _check(entry, directory, lock, full=False))
    return directory


def verify(entry: ModelEntry) -> VerifyReport:
    """Rehash every file of a downloaded `entry` and compare with the registry and the lock."""
    _require_repo(entry)
    lock = _read_lock(entry)
    found = _find_local(entry, lock)
    if found is None and lock is not None:
        found = _cached(entry, lock["commit"], partial=True)  # report files the lock lists that are gone
    if found is None:
        raise WeightsError(f"{entry.name}: not downloaded; run `vary models download {entry.name}`")
    directory, commit = found
    full = lock is not None  # a lock recorded just now has hashed every file already
    if lock is None:
        lock = _record(entry, directory, commit, None)
    return VerifyReport(entry.name, directory, tuple(_check(entry, directory, lock, full=full)))


def status(entry: ModelEntry) -> tuple[bool, Path | None]:
    """(downloaded, checkpoint dir or None) from the cache alone: no network, no hashing."""
    if not entry.downloadable:
        return False, None
    found = _find_local(entry, _read_lock(entry))
    return (True, found[0]) if found else (False, None)


def remove(entry: ModelEntry) -> int:
    """Delete `entry`'s revision from the HF cache and its lock; returns the bytes freed (0: nothing there).

    The HF cache is shared: this removes the whole cached revision of the repo, also files other
    tools fetched into it, and keeps blobs that other revisions still use.
    """
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.utils import CacheNotFound

    _require_repo(entry)
    lock = _read_lock(entry)
    found = (lock and _cached(entry, lock["commit"], partial=True)) or _cached(entry, entry.revision, partial=True)
    lock_path(entry).unlink(missing_ok=True)
    if not found:
        return 0
    commit = found[1]
    try:
        info = scan_cache_dir(hf_cache_dir())
    except CacheNotFound:
        return 0
    if any(repo.repo_id == entry.repo and repo.repo_type == "model"
           and commit in {rev.commit_hash for rev in repo.revisions} for repo in info.repos):
        strategy = info.delete_revisions(commit)
        strategy.execute()
        return strategy.expected_freed_size
    # hf leaves a repo it finds corrupted (e.g. a dangling symlink) out of the scan: drop the snapshot folder.
    repo_dir = hf_cache_dir() / f"models--{entry.repo.replace('/', '--')}"
    shutil.rmtree(repo_dir / "snapshots" / commit, ignore_errors=True)
    return 0
