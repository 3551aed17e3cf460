"""`vary data mix`: several data files into one shuffled, weighted training set and a held-out eval set.

Each source is `FILE[:WEIGHT]` (a data.jsonl, or a `vary data` output directory). First a fraction of
every source, `eval_fraction`, is held out (drawn by the seed) so no eval record is ever trained on;
then each source's remaining records are taken WEIGHT times: the whole part of the weight as full
copies, the fraction as a random subset (0.5 takes half, 2 takes every record twice). The training
records are shuffled together. Images are not copied: every image path is rewritten relative to the
new files. Every source record is first checked with `vary train`'s own parser, so a record it would
refuse names its source file and line and nothing is written. Writes DIR/data.jsonl, DIR/eval.jsonl and
DIR/manifest.json atomically.
"""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..files import atomic_write_text, check_target
from ..train.dataset import parse_sample, read_records
from .writer import package_versions


@dataclass(frozen=True)
class Source:
    """One input of the mix: its data files (a directory's shards are one source) and its weight."""

    paths: tuple[Path, ...]
    weight: float


@dataclass
class MixSummary:
    data: Path
    eval: Path
    manifest: Path
    train: int
    held_out: int


def parse_source(text: str) -> Source:
    """`FILE`, `FILE:W` or `DIR[:W]` (DIR/data.jsonl, or else its shards' data-I-of-N.jsonl); W >= 0, default 1."""
    path, weight = text, 1.0
    head, sep, tail = text.rpartition(":")
    if sep and head:
        try:
            path, weight = head, float(tail)
        except ValueError:
            pass  # a colon that belongs to the path
    source = Path(path)
    files = [source]
    if source.is_dir():
        files = [source / "data.jsonl"] if (source / "data.jsonl").is_file() else \
            sorted(source.glob("data-*-of-*.jsonl"))
    if not files or not all(f.is_file() for f in files):
        raise InputError(f"{path}: no such data file (nor a directory with data.jsonl or shards' data-I-of-N.jsonl)")
    if not (math.isfinite(weight) and weight >= 0):  # inf would mean infinitely many copies; nan no number
        raise InputError(f"{text}: the weight must be a finite number >= 0, not {tail}")
    return Source(tuple(files), weight)


def _read(source: Path, out: Path) -> list[dict]:
    records = []
    for number, record in read_records(source):  # what `vary train` reads, JSON lists included
        parse_sample(source, number, record)  # refused here, naming the source line, before anything is written
        if isinstance(record.get("image"), str) and record["image"]:
            image = (source.parent / record["image"]).resolve()
            record["image"] = Path(os.path.relpath(image, out.resolve())).as_posix()
        records.append(record)
    return records


def mix(sources: list[Source], out: Path, eval_fraction: float = 0.0, seed: int = 0) -> MixSummary:
    """Write the mix; see the module docstring.

    Raises:
        InputError: a bad source or fraction; OutputError: `out` cannot be written.
    """
    if not 0 <= eval_fraction < 1:
        raise InputError("--eval-fraction must be in [0, 1)")
    if not sources:
        raise InputError("give at least one data file")
    out = Path(out)
    check_target(out, "--out", directory=True)
    rng = random.Random(seed)
    train: list[dict] = []
    held: list[dict] = []
    per_source = []
    for source in sources:
        records = [record for path in source.paths for record in _read(path, out)]
        order = list(range(len(records)))
        rng.shuffle(order)
        n_eval = round(eval_fraction * len(records))
        held += [records[i] for i in sorted(order[:n_eval])]
        rest = [records[i] for i in sorted(order[n_eval:])]
        whole, part = divmod(source.weight, 1)
        taken = rest * int(whole) + rng.sample(rest, round(part * len(rest)))
        train += taken
        per_source.append({"files": [str(p) for p in source.paths], "weight": source.weight, "records": len(records),
                           "eval": n_eval, "train": len(taken)})
    rng.shuffle(train)
    if not train:
        raise InputError("the mix has no training records (all weights 0, or every record held out)")
    lines = lambda rows: "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)  # noqa: E731
    summary = MixSummary(out / "data.jsonl", out / "eval.jsonl", out / "manifest.json", len(train), len(held))
    atomic_write_text(summary.data, lines(train))
    if held:
        atomic_write_text(summary.eval, lines(held))
    manifest = {"kind": "mix", "data": "data.jsonl", "eval": "eval.jsonl" if held else None, "records": len(train),
                "eval_records": len(held), "sources": per_source, "seed": seed,
                "settings": {"eval_fraction": eval_fraction}, "versions": package_versions()}
    atomic_write_text(summary.manifest, json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
    return summary
