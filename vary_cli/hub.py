"""Resolve a registry entry to a local checkpoint directory through huggingface-hub's cache.

Used by `checkpoint.load()` for `--model NAME`. Downloads only the entry's files at its revision;
with the files already cached (or HF_HUB_OFFLINE=1) no download happens. No torch here.
"""

from __future__ import annotations

from pathlib import Path

from .errors import WeightsError
from .registry import ModelEntry


def resolve(entry: ModelEntry) -> Path:
    """A local directory holding `entry`'s files, downloading them into the HF cache if needed."""
    if not entry.repo:
        raise WeightsError(f"{entry.name}: there is no public download of these weights; "
                           f"get them from the authors and pass --model DIR")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = snapshot_download(repo_id=entry.repo, revision=entry.revision or None,
                                 allow_patterns=list(entry.files) or None)
    except LocalEntryNotFoundError:
        raise WeightsError(f"{entry.name}: not downloaded and the hub is unreachable; connect once "
                           f"(or copy the files and pass --model DIR)") from None
    except (HfHubHTTPError, OSError) as exc:
        raise WeightsError(f"{entry.name}: download of {entry.repo} failed ({str(exc).splitlines()[0]})") from None
    return Path(path)
