"""`vary data`: make `vary train` data: pdf pages, charts, negatives, detection, and a weighted mix.

A Typer sub-app mounted by cli/app.py with `app.add_typer(data_app, name="data")`. Each command
parses its flags into the data engine's settings, runs it with a rich progress bar on stderr and
prints one summary line; a `VaryError` is one red line and its exit code, and a run that had to skip
a whole input (a PDF that does not open) still finishes the rest and exits 1. matplotlib, pypdfium2
and torch are imported inside the commands, so `vary --help` stays fast.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import InputError, VaryError
from .common import DebugOption, fail, labelled, stderr

data_app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False,
                       help="Make training data for `vary train`: PDF pages, charts, negatives, detection, mixes.")

OutOption = Annotated[Path, typer.Option("--out", "-o", help="Output directory: data.jsonl, images/, manifest.json.",
                                         show_default=False)]
WorkersOption = Annotated[Optional[int], typer.Option(
    min=1, help="Worker processes (default: the CPU cores).", show_default=False)]
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
    """The engine's progress callback drawn with rich on stderr (nothing when stderr is not a terminal).

    The display (and its refresh thread) starts in `start`, which the engine calls after its worker
    processes are forked.
    """

    def __init__(self, what: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.what = what
        self.progress = Progress(TextColumn(what), MofNCompleteColumn(), BarColumn(), TimeRemainingColumn(),
                                 console=stderr, disable=not stderr.is_terminal, transient=True)
        self.task = None

    def __enter__(self) -> "_Bar":
        return self

    def __exit__(self, *exc) -> None:
        if self.task is not None:
            self.progress.stop()

    def start(self, total: int, done: int) -> None:
        if done:
            stderr.print(f"resuming: {done} of {total} {self.what} already done")
        self.progress.start()
        self.task = self.progress.add_task(self.what, total=total, completed=done)

    def advance(self, n: int = 1) -> None:
        if self.task is not None:
            self.progress.advance(self.task, n)


def _report(summary, what: str) -> None:
    for error in summary.errors:
        stderr.print(labelled("error:", "red", error))
    skipped = sum(summary.skipped.values())
    reasons = "; ".join(f"{n} {reason} (e.g. {summary.examples[reason]})" if reason in summary.examples
                        else f"{n} {reason}" for reason, n in summary.skipped.most_common())
    stderr.print(f"wrote {summary.records} records to {summary.data} from {summary.items} {what}"
                 + (f" ({summary.resumed} resumed)" if summary.resumed else "")
                 + (f"; skipped {skipped}: {reasons}" if skipped else ""))
    if summary.errors:
        raise typer.Exit(code=1)


@contextmanager
def _one_line_errors(debug: bool) -> Iterator[None]:
    try:
        yield
    except VaryError as error:
        fail(error, debug)
    except KeyboardInterrupt:
        stderr.print("interrupted; run the same command again to continue")
        raise typer.Exit(code=130) from None


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
    with _one_line_errors(debug):
        from functools import partial
        from importlib.metadata import version

        from ..data.pdf_pages import PdfSettings, close_documents, find_pdfs, list_pages, make_page
        from ..data.writer import run_items

        settings = PdfSettings(out=str(out), prompt=prompt, min_chars=min_chars,
                               languages=tuple(x.strip() for x in lang.split(",") if x.strip()), long_side=long_side)
        where = _shard(shard)
        items, errors = list_pages(find_pdfs(inputs), pages, where)
        try:
            with _Bar("pages") as bar:
                summary = run_items("pdf", items, partial(make_page, settings), out, seed=seed,
                                    workers=_workers(workers), shard=where, settings=settings.manifest(),
                                    errors=errors, progress=bar, versions={"pypdfium2": version("pypdfium2")})
        finally:
            close_documents()
        _report(summary, "pages")


@data_app.command()
def charts(
    out: OutOption,
    count: Annotated[int, typer.Option(min=1, help="How many charts.")] = 1000,
    lang: Annotated[str, typer.Option(help="Languages to draw in, picked per chart: en, zh.")] = "en,zh",
    kinds: Annotated[str, typer.Option(help="Chart kinds, picked per chart.")] = "bar,line,pie,composite",
    corpus: Annotated[Optional[Path], typer.Option(
        help="A text file whose words become titles and labels (default: the shipped word lists).",
        show_default=False)] = None,
    workers: WorkersOption = None,
    seed: SeedOption = 0,
    shard: ShardOption = None,
    debug: DebugOption = False,
) -> None:
    """Bar, line, pie and composite charts with their data as a python-dict target (Vary's chart data)."""
    with _one_line_errors(debug):
        from functools import partial
        from importlib.metadata import version

        from ..data.charts import ChartSettings, chart_items, find_cjk_font, make_chart, read_corpus, require_cjk_font
        from ..data.writer import run_items

        languages = tuple(x.strip() for x in lang.split(",") if x.strip())
        words = read_corpus(corpus) if corpus else ()
        cjk = require_cjk_font() if "zh" in languages or any(not w.isascii() for w in words) else find_cjk_font()
        settings = ChartSettings(out=str(out), languages=languages,
                                 kinds=tuple(x.strip() for x in kinds.split(",") if x.strip()), corpus=words,
                                 corpus_name=corpus.name if corpus else "", cjk_font=cjk)
        with _Bar("charts") as bar:
            summary = run_items("charts", chart_items(count), partial(make_chart, settings), out, seed=seed,
                                workers=_workers(workers), shard=_shard(shard), settings=settings.manifest(),
                                progress=bar, versions={"matplotlib": version("matplotlib")})
        _report(summary, "charts")


@data_app.command()
def negatives(
    images: Annotated[Path, typer.Argument(help="A directory of natural images (searched recursively).",
                                           show_default=False)],
    out: OutOption,
    workers: WorkersOption = None,
    seed: SeedOption = 0,
    shard: ShardOption = None,
    debug: DebugOption = False,
) -> None:
    """Natural images with one of the paper's five "this is nature" answers (Vary's negative samples)."""
    with _one_line_errors(debug):
        from functools import partial

        from ..data.negatives import NATURE_ANSWERS, find_images, make_negative
        from ..data.writer import run_items

        with _Bar("images") as bar:
            summary = run_items("negatives", find_images(images), partial(make_negative, str(out)), out, seed=seed,
                                workers=_workers(workers), shard=_shard(shard),
                                settings={"images": str(images.resolve()), "answers": list(NATURE_ANSWERS)},
                                progress=bar)
        _report(summary, "images")


@data_app.command()
def detection(
    annotations: Annotated[Path, typer.Argument(help="A COCO-format detection json (instances_*.json).",
                                                show_default=False)],
    images: Annotated[Path, typer.Option(help="The directory its file_names are in.", show_default=False)],
    out: OutOption,
    max_boxes: Annotated[int, typer.Option(
        help="Images with more boxes name a random set of classes instead (Vary-toy's 30-box rule).")] = 30,
    refer_samples: Annotated[int, typer.Option(
        help="Samples per image with more than --max-boxes boxes, each naming other random classes.")] = 1,
    workers: WorkersOption = None,
    seed: SeedOption = 0,
    shard: ShardOption = None,
    debug: DebugOption = False,
) -> None:
    """COCO boxes as "Class: boxes" answers, box corners in 0-1000 (Vary-toy's detection data)."""
    with _one_line_errors(debug):
        from functools import partial

        from ..data.detection import DetectionSettings, make_detection, read_coco
        from ..data.writer import run_items

        if not images.is_dir():
            raise InputError(f"--images {images}: not a directory")
        settings = DetectionSettings(out=str(out), max_boxes=max_boxes, refer_samples=refer_samples)
        items = read_coco(annotations, images)
        with _Bar("images") as bar:
            summary = run_items("detection", items, partial(make_detection, settings), out, seed=seed,
                                workers=_workers(workers), shard=_shard(shard),
                                settings=dict(settings.manifest(), annotations=str(annotations.resolve())),
                                progress=bar)
        _report(summary, "images")


@data_app.command("mix")
def mix_command(
    sources: Annotated[list[str], typer.Argument(
        help="Data files or `vary data` directories, each FILE:WEIGHT (weight 1 if left out; 0.5 takes half, "
             "2 every record twice).", show_default=False)],
    out: OutOption,
    eval_fraction: Annotated[float, typer.Option(help="Share of every source held out into eval.jsonl.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the hold-out, the subsets and the shuffle.")] = 0,
    debug: DebugOption = False,
) -> None:
    """One shuffled, weighted training set (+ a held-out eval set); images are referenced, not copied."""
    with _one_line_errors(debug):
        from ..data.mix import mix, parse_source

        summary = mix([parse_source(s) for s in sources], out, eval_fraction, seed)
        held = f", {summary.held_out} held out in {summary.eval}" if summary.held_out else ""
        stderr.print(f"wrote {summary.train} records to {summary.data}{held}")
