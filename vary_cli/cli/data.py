"""`vary data`: make `vary train` data: pdf pages, charts, negatives, detection, and a weighted mix.

A Typer sub-app mounted by cli/app.py with `app.add_typer(data_app, name="data")`. Each command
parses its flags into the data engine's settings, runs it with a rich progress bar on stderr and
prints one summary line; a `VaryError` is one red line and its exit code, and a run that had to skip
a whole input (a PDF that does not open) still finishes the rest and exits 1. matplotlib, pypdfium2
and torch are imported inside the commands, so `vary --help` stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from ..errors import InputError, VaryError
from .common import DebugOption, fail, stderr

data_app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False,
                       help="Make training data for `vary train`: PDF pages, charts, negatives, detection, mixes.")

OutOption = Annotated[Path, typer.Option("--out", "-o", help="Output directory: data.jsonl, images/, manifest.json.",
                                         show_default=False)]
WorkersOption = Annotated[Optional[int], typer.Option(
    min=1, help="Worker processes [default: the CPU cores].", show_default=False)]
SeedOption = Annotated[int, typer.Option(help="Seed; each item's own seed comes from it and the item, so any "
                                              "--workers gives the same output.")]
ShardOption = Annotated[Optional[str], typer.Option(
    help="Do share I of N (0-based), e.g. 0/4; torchrun/SLURM set it from the environment. Shards write "
         "data-I-of-N.jsonl into one --out; concatenate them.", show_default=False)]


def _workers(workers: int | None) -> int:
    if workers:
        return workers
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class _Bar:
    """The engine's progress callback drawn with rich on stderr (plain when stderr is not a terminal)."""

    def __init__(self, what: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.what = what
        self.progress = Progress(TextColumn(what), MofNCompleteColumn(), BarColumn(), TimeRemainingColumn(),
                                 console=stderr, disable=not stderr.is_terminal, transient=True)
        self.task = None

    def __enter__(self) -> "_Bar":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def start(self, total: int, done: int) -> None:
        if done:
            stderr.print(f"resuming: {done} of {total} {self.what} already done")
        self.task = self.progress.add_task(self.what, total=total, completed=done)

    def advance(self, n: int = 1) -> None:
        if self.task is not None:
            self.progress.advance(self.task, n)


def _report(summary, what: str) -> None:
    for error in summary.errors:
        stderr.print(f"[red]error:[/red] {escape(error)}")
    skipped = sum(summary.skipped.values())
    reasons = "; ".join(f"{n} {reason}" for reason, n in summary.skipped.most_common())
    stderr.print(f"wrote {summary.records} records to {escape(str(summary.data))} from {summary.items} {what}"
                 + (f" ({summary.resumed} resumed)" if summary.resumed else "")
                 + (f"; skipped {skipped}: {escape(reasons)}" if skipped else ""))
    if summary.errors:
        raise typer.Exit(code=1)


def _shard(flag: str | None):
    from ..convert.shard import resolve_shard

    return resolve_shard(flag)


@data_app.command()
def pdf(
    inputs: Annotated[list[Path], typer.Argument(help="PDF files or directories (searched recursively).",
                                                 show_default=False)],
    out: OutOption,
    lang: Annotated[str, typer.Option(help="Keep pages whose script is one of these (en, zh; auto-detected).")] = "en,zh",
    pages: Annotated[Optional[str], typer.Option(help="Pages of every PDF, e.g. 1-4,7 (from 1).",
                                                 show_default=False)] = None,
    min_chars: Annotated[int, typer.Option(help="Skip pages with fewer characters of text.")] = 100,
    long_side: Annotated[int, typer.Option(help="Rendered long side in pixels (at least 1024).")] = 1024,
    prompt: Annotated[str, typer.Option(help="The question of every sample.")] = "Provide the OCR results of this image.",
    workers: WorkersOption = None,
    seed: SeedOption = 0,
    shard: ShardOption = None,
    debug: DebugOption = False,
) -> None:
    """PDF pages + the text of their own text layer, in reading order (Vary's document data)."""
    try:
        from functools import partial

        from ..data.pdf_pages import PdfSettings, find_pdfs, list_pages, make_page
        from ..data.writer import run_items

        settings = PdfSettings(out=str(out), prompt=prompt, min_chars=min_chars,
                               languages=tuple(x.strip() for x in lang.split(",") if x.strip()), long_side=long_side)
        where = _shard(shard)
        items, errors = list_pages(find_pdfs(inputs), pages, where)
        from importlib.metadata import version

        with _Bar("pages") as bar:
            summary = run_items("pdf", items, partial(make_page, settings), out, seed=seed, workers=_workers(workers),
                                shard=where, settings=settings.manifest(), errors=errors, progress=bar,
                                versions={"pypdfium2": version("pypdfium2")})
        _report(summary, "pages")
    except VaryError as error:
        fail(error, debug)
