"""A fake Hugging Face hub for the hub and `vary models` tests.

`FakeHub` replaces `huggingface_hub.snapshot_download` for network calls only: it copies files from an
in-memory "remote" into the real HF cache layout (models--ORG--NAME/blobs, snapshots/<commit>, refs/main)
under a temporary HF_HOME and records each call. Local-only calls go to the real function, so the
cache reading is huggingface_hub's own.
"""

from __future__ import annotations

import hashlib
import os
from fnmatch import fnmatch
from pathlib import Path

import huggingface_hub
import pytest

from vary_cli.weights.registry import ModelEntry

REPO = "test-org/tiny-vary"
FILES = {
    "config.json": b'{"model_type": "vary"}',
    "pytorch_model.bin": b"weights" * 100,
    "qwen.tiktoken": b"dG9rZW4= 0\n",
    "README.md": b"not in the allow list",
    "modeling_qwen.py": b"# remote code we never fetch",
}
ENTRY = ModelEntry(name="tiny", arch="vary-toy", repo=REPO, revision="main",
                   files=("config.json", "*.bin", "*.safetensors", "qwen.tiktoken"), size="1 KB")


class FakeHub:
    """An in-memory hub; `calls` lists every network snapshot_download."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.remote: dict[str, dict[str, bytes]] = {}  # commit -> files
        self.branches: dict[tuple[str, str], str] = {}  # (repo, branch) -> commit
        self.calls: list[dict] = []
        self.unreachable = False
        real = huggingface_hub.snapshot_download

        def snapshot_download(repo_id: str, *, revision: str | None = None, cache_dir=None, allow_patterns=None,
                              local_files_only: bool = False, force_download: bool = False, **_: object) -> str:
            if local_files_only:
                return real(repo_id=repo_id, revision=revision, cache_dir=cache_dir,
                            allow_patterns=allow_patterns, local_files_only=True)
            self.calls.append({"repo_id": repo_id, "revision": revision, "cache_dir": cache_dir,
                               "allow_patterns": allow_patterns, "force_download": force_download})
            if self.unreachable:
                raise huggingface_hub.errors.LocalEntryNotFoundError("connection refused")
            return self._download(repo_id, revision, Path(cache_dir), allow_patterns, force_download)

        monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)

    def publish(self, repo: str, files: dict[str, bytes], branch: str = "main") -> str:
        commit = hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()
        self.remote[commit] = dict(files)
        self.branches[(repo, branch)] = commit
        return commit

    def _download(self, repo: str, revision: str, cache: Path, patterns: list[str] | None, force: bool) -> str:
        commit = revision if revision in self.remote else self.branches[(repo, revision)]
        storage = cache / f"models--{repo.replace('/', '--')}"
        for rel, data in self.remote[commit].items():
            if patterns is not None and not any(fnmatch(rel, p) for p in patterns):
                continue
            blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            if force or not blob.exists():
                blob.write_bytes(data)
            link = storage / "snapshots" / commit / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(os.path.relpath(blob, link.parent))
        if revision != commit:
            (storage / "refs").mkdir(parents=True, exist_ok=True)
            (storage / "refs" / revision).write_text(commit)
        return str(storage / "snapshots" / commit)
