"""The data engine's runner: items through a process pool into `DIR/data.jsonl`, resumably and reproducibly.

Every `vary data` kind (pdf pages, charts, negatives, detection) is a list of `Item`s, each with a
stable `key` and its `index` in the whole list, and a picklable `work(item, seed)` function that
writes the item's images under `DIR/images/` (atomically) and returns an `Outcome`: its records, or
why it was skipped. `run_items`:

- keeps the items this shard owns (`Shard.owns(key)`, so `--shard I/N`, torchrun and SLURM split a
  corpus with no communication; each shard writes `data-I-of-N.jsonl` beside the others, so the
  shards' files concatenate into one data set whose image paths all stay valid);
- skips items already in the journal (`.data[-I-of-N].journal.jsonl`, one line per finished item,
  appended by this process only after the item's images are in place): a rerun resumes;
- runs the rest in `workers` processes (in this process for 1), each item seeded by
  `item_seed(seed, key)`, so neither the worker count nor the order changes a byte;
- writes `data.jsonl` (records in item order, streamed from the journal, so memory does not grow with
  the corpus) and `manifest.json` (counts, skip reasons, errors, settings, package versions)
  atomically, checking the records batch by batch with `vary train`'s own reader.

Used by `pdf_pages.py`, `charts.py`, `negatives.py`, `detection.py`; the CLI passes a progress callback.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import secrets
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

from ..convert.shard import Shard, stable_hash
from ..errors import InputError, OutputError
from ..files import atomic_write_text, fsync_dir

IMAGES = "images"


@dataclass(frozen=True)
class Item:
    """One unit of work: `key` names it (journal, shard, seed), `index` places it in the output."""

    key: str
    index: int
    payload: Any = None


@dataclass
class Outcome:
    """What one item gave: records (image paths relative to the output directory) or a skip reason."""

    key: str
    index: int
    records: list[dict] = field(default_factory=list)
    skipped: str | None = None
    counts: dict[str, int] = field(default_factory=dict)  # kind-specific tallies for the manifest

    def to_json(self) -> dict:
        return {"key": self.key, "index": self.index, "records": self.records, "skipped": self.skipped,
                "counts": self.counts}


@dataclass
class Summary:
    """What a run wrote: paths, counts and the problems worth a line each."""

    data: Path
    manifest: Path
    items: int = 0
    resumed: int = 0
    records: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # skip reason -> the first item skipped for it
    errors: list[str] = field(default_factory=list)


class Progress(Protocol):
    def start(self, total: int, done: int) -> None: ...

    def advance(self, n: int = 1) -> None: ...


class _NoProgress:
    def start(self, total: int, done: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


def item_seed(seed: int, key: str) -> int:
    """The seed of one item: the same for a given --seed and key in every process and run."""
    return stable_hash(f"{seed}\x00{key}")


def output_names(shard: Shard) -> tuple[str, str, str]:
    """(data, manifest, journal) file names in DIR: with a shard suffix when the work is split."""
    suffix = "" if shard.is_single else f"-{shard.index:05d}-of-{shard.count:05d}"
    return f"data{suffix}.jsonl", f"manifest{suffix}.json", f".data{suffix}.journal.jsonl"


def relative_image(path: Path, out: Path) -> str:
    """`path` as a data.jsonl image reference: relative to `out`, with forward slashes."""
    return Path(os.path.relpath(Path(path).resolve(), Path(out).resolve())).as_posix()


def conversation(image: str, question: str, answer: str, key: str) -> dict:
    """A `vary train` conversation record: the image, one human turn (`<image>` then the question), the answer."""
    human = "<image>" + ("\n" + question if question else "")
    return {"image": image, "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": answer}],
            "id": key}


def run_items(kind: str, items: list[Item], work: Callable[[Item, int], Outcome], out: Path, *, seed: int,
              workers: int, shard: Shard, settings: dict, errors: Iterable[str] = (),
              progress: Progress | None = None, versions: dict[str, str] | None = None) -> Summary:
    """Run `work` over the items this shard owns and write data.jsonl and manifest.json in `out`.

    Args:
        kind: "pdf", "charts", ... (said in the manifest).
        items: every item of the whole job, in output order (the shard's share is taken here).
        work: module-level function (picklable, e.g. a functools.partial) run once per item.
        settings: what decides the output (said in the manifest; a rerun with other settings is refused).
        errors: problems found while listing the items (a PDF that does not open); the CLI exits 1.

    Raises:
        OutputError: `out` cannot be written, or it holds a run made with other settings.
    """
    progress = progress or _NoProgress()
    out = Path(out)
    data_name, manifest_name, journal_name = output_names(shard)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create the output directory ({exc.strerror or exc})") from None
    owned = [item for item in items if shard.owns(item.key)]
    header = {"kind": kind, "seed": seed, "settings": settings}
    journal = out / journal_name
    keys = {item.key for item in owned}
    done = {key: entry for key, entry in _read_journal(journal, header).items() if key in keys}
    todo = [item for item in owned if item.key not in done]
    summary = Summary(out / data_name, out / manifest_name, items=len(owned), resumed=len(done),
                      errors=list(errors))
    try:
        with open(journal, "ab") as log, _pool(workers, len(todo)) as pool:
            progress.start(len(owned), len(done))
            if log.tell() == 0:
                log.write(_line({"header": header}))
            for outcome in _outcomes(pool, todo, work, seed, workers):
                done[outcome.key] = _Entry(outcome.index, outcome.skipped, outcome.counts, len(outcome.records),
                                           log.tell())
                log.write(_line(outcome.to_json()))
                log.flush()  # the item's images are already in place; a crash after this keeps the item
                progress.advance()
    except OSError as exc:
        raise OutputError(f"{journal}: cannot write the journal ({exc.strerror or exc})") from None
    ordered_keys = sorted(done, key=lambda k: done[k].index)
    ordered = [done[key] for key in ordered_keys]
    counts: Counter = Counter()
    for key, entry in zip(ordered_keys, ordered):
        if entry.skipped:
            summary.skipped[entry.skipped] += 1
            summary.examples.setdefault(entry.skipped, key)  # so the summary line can name one
        counts.update(entry.counts)
    summary.records = _write_data(journal, ordered, summary.data)
    manifest = {"kind": kind, "data": data_name, "shard": None if shard.is_single else str(shard),
                "items": len(owned), "records": summary.records, "skipped": dict(sorted(summary.skipped.items())),
                "errors": summary.errors, "counts": dict(sorted(counts.items())), "seed": seed,
                "settings": settings, "versions": package_versions(versions)}
    atomic_write_text(summary.manifest, json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
    return summary


@dataclass(frozen=True)
class _Entry:
    """A finished item as the journal holds it; its records stay on disk at `offset` until data.jsonl is
    written, so a run of millions of pages does not hold their texts in memory."""

    index: int
    skipped: str | None
    counts: dict
    records: int
    offset: int


def _line(value: dict) -> bytes:
    return (json.dumps(value, ensure_ascii=False) + "\n").encode("utf-8")


CHECK_EVERY = 5000  # records per batch handed to vary train's reader


def _write_data(journal: Path, ordered: list[_Entry], data: Path) -> int:
    """Stream the records of `ordered` from the journal into `data` (temporary file, fsync, rename),
    checking them with `vary train`'s reader batch by batch; the number of records."""
    tmp = data.with_name(f".{data.name}.{secrets.token_hex(4)}.tmp")
    written, batch = 0, []
    try:
        with open(journal, "rb") as source, open(tmp, "w", encoding="utf-8") as sink:
            for entry in ordered:
                if not entry.records:
                    continue
                source.seek(entry.offset)
                for record in json.loads(source.readline())["records"]:
                    batch.append(json.dumps(record, ensure_ascii=False) + "\n")
                if len(batch) >= CHECK_EVERY:
                    written += _flush(batch, sink, data)
            written += _flush(batch, sink, data)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(tmp, data)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(f"{data}: cannot write ({exc.strerror or exc})") from None
        raise
    fsync_dir(data.parent)
    return written


def _flush(batch: list[str], sink, data: Path) -> int:
    if not batch:
        return 0
    check = data.with_name(f".{data.name}.check.{secrets.token_hex(4)}.jsonl")
    try:
        check.write_text("".join(batch), encoding="utf-8")
        check_records(check)
    finally:
        check.unlink(missing_ok=True)
    sink.write("".join(batch))
    n = len(batch)
    batch.clear()
    return n


@contextmanager
def _pool(workers: int, jobs: int):
    """A process pool for `jobs` items, or None to run them here (1 worker, or at most one item)."""
    if workers <= 1 or jobs <= 1:
        yield None
        return
    # fork where there is one: workers start at once and inherit the settings. The pool is made before
    # the progress display starts its refresh thread, so no lock can be held by a thread at fork time.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with context.Pool(min(workers, jobs)) as pool:
        yield pool


def _outcomes(pool, todo: list[Item], work: Callable[[Item, int], Outcome], seed: int, workers: int):
    if pool is None:
        for item in todo:
            yield work(item, item_seed(seed, item.key))
        return
    jobs = [(work, item, item_seed(seed, item.key)) for item in todo]
    chunk = max(1, min(8, len(jobs) // (workers * 8)))  # neighbours (pages of one PDF) share a worker
    yield from pool.imap_unordered(_call, jobs, chunksize=chunk)


def _call(job: tuple) -> Outcome:
    work, item, seed = job
    return work(item, seed)


def _read_journal(journal: Path, header: dict) -> dict[str, _Entry]:
    """The finished items of an earlier run in `out`; a line torn by a crash is cut off (its item is redone)."""
    if not journal.exists():
        return {}
    done: dict[str, _Entry] = {}
    offset = 0
    with open(journal, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.endswith(b"\n"):  # the last line of a crashed run: cut it so appends start clean
                os.truncate(journal, offset)
                break
            try:
                entry = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise OutputError(f"{journal}:{number}: damaged journal line; delete the file to start over") from None
            if "header" in entry:
                if entry["header"] != header:
                    raise OutputError(f"{journal.parent}: holds a run with other settings "
                                      f"({_difference(entry['header'], header)}); use another --out, or delete "
                                      f"{journal.name} there to redo it")
            else:
                done[entry["key"]] = _Entry(entry["index"], entry["skipped"], entry.get("counts", {}),
                                            len(entry["records"]), offset)
            offset += len(raw)
    return done


def _difference(old: dict, new: dict) -> str:
    flat_old = {"kind": old.get("kind"), "seed": old.get("seed"), **old.get("settings", {})}
    flat_new = {"kind": new.get("kind"), "seed": new.get("seed"), **new.get("settings", {})}
    changed = [f"{k}: {flat_old.get(k)!r} then, {flat_new.get(k)!r} now" for k in sorted(set(flat_old) | set(flat_new))
               if flat_old.get(k) != flat_new.get(k)]
    return "; ".join(changed[:3]) or "different settings"


def check_records(path: Path) -> None:
    """Read `path` with `vary train`'s own reader; a record it refuses is an OutputError (a bug here)."""
    # The exact reader `vary train` uses: a record it would refuse is a bug here, not the user's problem.
    from ..train.dataset import read_samples

    try:
        read_samples(path)
    except InputError as exc:
        raise OutputError(f"vary data wrote a record vary train refuses ({exc}); please report this") from None


def package_versions(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Versions of what shapes the output: Python, vary-cli, Pillow, and the kind's own libraries."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for package in ("vary-cli", "pillow", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    versions.update(extra or {})
    return versions
