"""Where outputs go and how they are written: atomic writes, output paths, and per-page resume state.

`stream.convert_many` and `cli/app.py` call these:

- Outputs are written with `files.atomic_write_text`, so a crash leaves the old file or the new one.
- `plan_outputs` / `output_path_for` map each input to one output under `--output-dir`, keeping the
  input's path relative to the directory the user named. When two inputs would share an output
  (`a.pdf` and `a.png` -> `a.md`), every input in the clash keeps its full name instead (`a.pdf.md`,
  `a.png.md`): deterministic, and it does not depend on which file is seen first.
- `PageStore` keeps each finished page of a long document in a sidecar `<output>.pages.jsonl`, one JSON
  line per page, flushed and fsynced, so a crash at page 90 loses one page. A restart with the same
  input file and settings picks up the finished pages; the sidecar is deleted once the output is
  written. `is_finished` says an output is complete (it exists and has no sidecar), so it is skipped
  unless `--recompute`.
- Processes that share one conversion (`--shard I/N`, torchrun, SLURM) each append to their own
  sidecar, `<output>.pages.I-of-N.jsonl`, so no two processes write one file; `read_pages` merges every
  sidecar of an output, and `remove_sidecars` deletes them all once the output is assembled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import OutputError
from ..files import atomic_write_text, fsync_dir
from ..render.document import SUFFIX_FOR_FORMAT
from ..render.results import PageResult

SIDECAR_SUFFIX = ".pages.jsonl"
_STORE_VERSION = 1
_RESULT_FIELDS = {field.name for field in dataclasses.fields(PageResult)}


def output_path_for(input_path: Path, inputs_root: Path, out_dir: Path | None, fmt: str,
                    keep_suffix: bool = False) -> Path:
    """The output of `input_path`: its path relative to `inputs_root`, under `out_dir`, suffix by `fmt`.

    With `out_dir` None the output sits next to the input. `keep_suffix` keeps the input's suffix
    (`a.pdf` -> `a.pdf.md`); `plan_outputs` sets it for inputs whose outputs would clash.
    """
    try:
        relative = input_path.relative_to(inputs_root)
    except ValueError:
        relative = Path(input_path.name)
    if out_dir is None:
        out_dir, relative = input_path.parent, Path(input_path.name)
    name = relative.name if keep_suffix else relative.stem
    return out_dir / relative.parent / f"{name}{SUFFIX_FOR_FORMAT[fmt]}"


def plan_outputs(inputs: Iterable[Path], roots: Iterable[Path], out_dir: Path | None,
                 fmt: str) -> dict[Path, Path]:
    """Map each input to its output path, checking that no two inputs share one.

    `roots` are the paths the user named; an input's path is kept relative to the first named
    directory that contains it (a named file lands directly in `out_dir`).

    Raises:
        OutputError: two inputs still map to one output after keeping full names (e.g. `x/a.pdf` found
        under two named directories); the message names both.
    """
    inputs = list(inputs)
    root_dirs = [Path(root) for root in roots if Path(root).is_dir()]

    def root_of(path: Path) -> Path:
        return next((root for root in root_dirs if path.is_relative_to(root)), path.parent)

    plain = {path: output_path_for(path, root_of(path), out_dir, fmt) for path in inputs}
    counts: dict[Path, int] = {}
    for out in plain.values():
        counts[out] = counts.get(out, 0) + 1
    planned: dict[Path, Path] = {}
    owner: dict[Path, Path] = {}
    for path in inputs:
        out = plain[path]
        if counts[out] > 1:
            out = output_path_for(path, root_of(path), out_dir, fmt, keep_suffix=True)
        if out in owner:
            raise OutputError(f"{path} and {owner[out]} would both be written to {out}; convert them "
                              "with separate --out-dir values")
        owner[out] = path
        planned[path] = out
    return planned


def sidecar_path(output: Path | str, tag: str | None = None) -> Path:
    """Where the per-page resume state of `output` lives: `<output>.pages.jsonl` next to it, or
    `<output>.pages.<tag>.jsonl` for one process of several (tag `I-of-N`)."""
    output = Path(output)
    return output.with_name(output.name + (SIDECAR_SUFFIX if tag is None else f".pages.{tag}.jsonl"))


def sidecar_paths(output: Path | str) -> list[Path]:
    """Every sidecar of `output` on disk: the single-process one and those of shard processes."""
    output = Path(output)
    prefix = output.name + ".pages."
    try:
        names = os.listdir(output.parent)
    except OSError:
        return []
    return sorted(output.parent / name for name in names if name.startswith(prefix) and name.endswith(".jsonl"))


def is_finished(output: Path | str) -> bool:
    """True when `output` was completely written: it exists and no resume state is left beside it."""
    return Path(output).is_file() and not sidecar_paths(output)


def read_pages(output: Path | str, source_fingerprint: str,
               settings_fingerprint: str | None) -> dict[int | None, PageResult]:
    """The latest result of every page in all sidecars of `output` written for this input version and
    these settings (`settings_fingerprint` None: any settings, as long as all sidecars agree).

    A page finished in one sidecar wins over a failure of it in another. Unreadable files and lines are
    skipped, as `PageStore` skips them.

    Raises:
        OutputError: with `settings_fingerprint` None, the sidecars hold pages of different settings.
    """
    merged: dict[int | None, PageResult] = {}
    settings_seen = set()
    for path in sidecar_paths(output):
        try:
            records = [_parse(line) for line in path.read_bytes().split(b"\n")[:-1]]
        except OSError:
            continue  # another process assembled the output and removed it meanwhile
        if not records or not isinstance(records[0], dict) or records[0].get("vary_pages") != _STORE_VERSION:
            continue
        header = records[0]
        if header.get("source") != source_fingerprint:
            continue
        if settings_fingerprint is not None and header.get("settings") != settings_fingerprint:
            continue
        settings_seen.add(header.get("settings"))
        for record in records[1:]:
            result = _to_result(record)
            if result is not None and (result.page not in merged or merged[result.page].finish_reason == "error"
                                       or result.finish_reason != "error"):
                merged[result.page] = result
    if len(settings_seen) > 1:
        raise OutputError(f"{output}: its page stores were written with different settings; run the "
                          "conversion again (or delete the stale .pages.*.jsonl files)")
    return merged


def remove_sidecars(output: Path | str) -> None:
    """Delete every sidecar of `output` (after the output was written with `atomic_write_text`)."""
    for path in sidecar_paths(output):
        path.unlink(missing_ok=True)
    fsync_dir(Path(output).parent)


def source_fingerprint(path: Path | str) -> str:
    """Identify an input file's version by size and modification time (as make does), without reading it."""
    stat = Path(path).stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def settings_fingerprint(settings: Mapping[str, Any]) -> str:
    """A short stable hash of everything that changes a page's text (model, prompt, generation, DPI)."""
    blob = json.dumps(settings, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


class PageStore:
    """Durable per-page results of one output, for resuming a conversion after a crash.

    The sidecar's first line records both fingerprints; each later line is one `PageResult`. On
    opening, the finished pages are loaded into `finished` (page -> result) unless a fingerprint
    differs or `resume` is False, in which case the old state is ignored and overwritten on the first
    `add`. Failed pages (`finish_reason == "error"`) are stored but never count as finished, so a
    restart retries them. A last line cut short by a kill is dropped. One process per sidecar: shard
    processes pass their `tag` (see `sidecar_path`).
    """

    def __init__(self, output: Path | str, source_fingerprint: str, settings_fingerprint: str,
                 resume: bool = True, tag: str | None = None) -> None:
        self.path = sidecar_path(output, tag)
        self._header = {"vary_pages": _STORE_VERSION, "source": source_fingerprint,
                        "settings": settings_fingerprint}
        self.finished: dict[int | None, PageResult] = {}
        self._handle: Any = None
        # Whether the sidecar on disk can be appended to as it is; otherwise the first add rewrites it.
        self._clean = False
        if resume:
            self._load()

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot read resume state ({exc.strerror or exc}); delete it "
                              "or run with --recompute") from None
        # Split on b"\n" only: str.splitlines would also split on U+2028 inside the JSON text.
        lines = data.split(b"\n")
        complete, tail = lines[:-1], lines[-1]  # `tail` is b"" unless the last write was cut short
        records = [_parse(line) for line in complete]
        if not records or records[0] != self._header:
            return  # another input version or other settings: nothing here is valid
        results: dict[int | None, PageResult] = {}
        for record in records[1:]:
            result = _to_result(record)
            if result is not None:
                results[result.page] = result  # the last record of a page wins (a retried failure)
        self.finished = {page: r for page, r in results.items() if r.finish_reason != "error"}
        self._clean = not tail and all(record is not None for record in records)

    def add(self, result: PageResult) -> None:
        """Append one page's result to the sidecar, durably (flush + fsync) before returning."""
        try:
            if self._handle is None:
                self._open()
            self._handle.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot save page progress ({exc.strerror or exc}); check that "
                              "the directory is writable and the disk has space") from None
        if result.finish_reason != "error":
            self.finished[result.page] = result

    def _open(self) -> None:
        if not self._clean:
            # Rewrite from what was loaded: drops a stale fingerprint, a torn last line (appending after
            # it would corrupt the next record too) and any unreadable line.
            lines = [self._header] + [r.to_json() for r in self.finished.values()]
            atomic_write_text(self.path, "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
            self._clean = True
        self._handle = open(self.path, "a", encoding="utf-8", newline="\n")

    def close(self) -> None:
        """Close the sidecar, keeping it (the conversion is not finished)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def finish(self) -> None:
        """Delete the sidecar; call after the final output has been written with `atomic_write_text`."""
        self.close()
        self.path.unlink(missing_ok=True)
        fsync_dir(self.path.parent)

    def __enter__(self) -> PageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse(line: bytes) -> Any:
    try:
        return json.loads(line)
    except ValueError:  # includes UnicodeDecodeError and JSONDecodeError
        return None


def _to_result(record: Any) -> PageResult | None:
    if not isinstance(record, dict) or not {"source", "text", "finish_reason"} <= record.keys():
        return None
    try:
        return PageResult(**{key: value for key, value in record.items() if key in _RESULT_FIELDS})
    except TypeError:
        return None
