"""`vary convert`: whole documents to Markdown, Mathpix Markdown, LaTeX, text or JSON Lines, with progress and a summary.

Mounted on the app by `cli/app.py`. Parses flags, plans one output per input, loads the model once and
hands every document to `stream.convert_many`, which converts this process's share of their pages
(`--shard`, torchrun, SLURM) as one continuously batched stream; a document that cannot be opened is
reported and skipped. `--assemble-only` writes outputs from page stores without a model. Exit code 1
if any page or document failed, 130 on Ctrl-C.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (CropsOption, DebugOption, DeviceOption, DraftOption, DtypeOption, MaxTokensOption, ModelOption,
                     SeedOption, TemperatureOption, TopPOption, draft_config, fail, generation_config, labelled,
                     load_model, page_options, stderr)
from ..errors import VaryError
from ..text.prompts import FORMAT_PROMPTS as DEFAULT_PROMPT  # the prompt each format gets unless --prompt says

FALLBACKS = ("text-layer",)


def convert(
    inputs: Annotated[list[Path], typer.Argument(help="PDF files, images, or directories searched recursively.",
                                                 show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output file for one input ('-': stdout, the default).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="Directory for many outputs; relative paths are kept.")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="md (GitHub Markdown), mmd (the model's Mathpix Markdown), tex (a LaTeX document that compiles), txt or jsonl (default: from the -o suffix, else md).")] = None,
    pages: Annotated[Optional[str], typer.Option(help="1-based pages to convert, e.g. 1-4,7 or 5-.")] = None,
    model: ModelOption = "vary-toy",
    prompt: Annotated[Optional[str], typer.Option(help="A preset (ocr, markdown) or any text; default fits --format.")] = None,
    max_new_tokens: MaxTokensOption = 2048,
    batch_size: Annotated[int, typer.Option("--batch-size", min=0, help="Pages per batch; 0 picks from free device memory.")] = 0,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    temperature: TemperatureOption = 0.0,
    top_p: TopPOption = 1.0,
    seed: SeedOption = None,
    repetition_guard: Annotated[bool, typer.Option("--repetition-guard/--no-repetition-guard",
                                                   help="Stop a page that loops, keeping the text before the loop.")] = True,
    fallback: Annotated[Optional[str], typer.Option("--fallback", help="text-layer: write pages the model could not read (error, repetition) from the PDF's own text, marked [TEXT_LAYER_FALLBACK:N]; off by default.")] = None,
    recompute: Annotated[bool, typer.Option("--recompute", help="Convert again even where a finished output exists.")] = False,
    draft: DraftOption = "auto",
    crops: CropsOption = "off",
    scheduler: Annotated[str, typer.Option(help="continuous: a batch row takes the next page as soon as its page stops; static: each batch decodes until its longest page stops.")] = "continuous",
    shard: Annotated[Optional[str], typer.Option("--shard", help="I/N: convert this process's share (0-based I of N) of the pages; default from torchrun or SLURM.")] = None,
    assemble_only: Annotated[bool, typer.Option("--assemble-only", help="Write the outputs whose pages are all done from their page stores; generate nothing.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, only errors.")] = False,
    debug: DebugOption = False,
) -> None:
    """Convert PDFs and images to Markdown (default), Mathpix Markdown, LaTeX, text or JSON Lines."""
    from ..convert.output import plan_outputs
    from ..convert.raster import discover_inputs, parse_page_ranges
    from ..render.document import FORMATS, format_from_suffix

    try:
        to_stdout = output is None or str(output) == "-"
        if output is not None and out_dir is not None:
            raise typer.BadParameter("give either -o/--output or --out-dir, not both")
        fmt = fmt or (format_from_suffix(output) if not to_stdout else "md")
        if fmt not in FORMATS:
            raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        if fallback is not None and fallback not in FALLBACKS:
            raise typer.BadParameter(f"--fallback must be one of {', '.join(FALLBACKS)}, not {fallback!r}")
        gen = generation_config(max_new_tokens, temperature, top_p, seed)
        drafting = draft_config(draft)
        options = page_options(crops)
        if not repetition_guard:
            gen = gen.with_(repetition_span=0)
        ranges = parse_page_ranges(pages) if pages else None
        sources = discover_inputs(inputs)
        if len(sources) > 1 and output is not None:
            raise typer.BadParameter(f"{len(sources)} inputs: use --out-dir DIR (or no -o, to write next to each input)")
        if len(sources) == 1 and out_dir is None:
            targets = {sources[0]: None if to_stdout else output}
        else:
            targets = plan_outputs(sources, inputs, out_dir, fmt)
        if assemble_only:
            if any(target is None for target in targets.values()):
                raise typer.BadParameter("--assemble-only writes files: give --out-dir or -o")
            run_assembly(targets, fmt=fmt, ranges=ranges, quiet=quiet, fallback=fallback)
            return
        from ..convert.shard import resolve_shard

        share = resolve_shard(shard)
        if scheduler not in ("continuous", "static"):
            raise typer.BadParameter(f"--scheduler must be continuous or static, not {scheduler!r}")
        loaded = load_model(model, rank_device(device, share), dtype, quiet).with_options(options)
        run_conversion(loaded, targets, fmt=fmt, prompt=prompt or DEFAULT_PROMPT[fmt], gen=gen, ranges=ranges,
                       batch_size=batch_size, recompute=recompute, quiet=quiet, shard=share, scheduler=scheduler,
                       fallback=fallback, draft=drafting)
    except VaryError as error:
        fail(error, debug)
    except KeyboardInterrupt:
        stderr.print("interrupted: finished pages are kept; run the same command again to resume")
        raise typer.Exit(code=130) from None


def rank_device(device: str, share) -> str:
    """Each process of a torchrun/SLURM launch takes the GPU of its local rank (within CUDA_VISIBLE_DEVICES)."""
    import torch

    if share.is_single or device not in ("auto", "cuda") or not torch.cuda.is_available():
        return device
    if device == "auto" and os.environ.get("VARY_DEVICE"):
        return device
    return f"cuda:{share.local_index % torch.cuda.device_count()}"


def run_conversion(loaded, targets: dict[Path, Path | None], *, fmt: str, prompt: str, gen, ranges,
                   batch_size: int, recompute: bool, quiet: bool, shard=None, scheduler: str = "continuous",
                   fallback: str | None = None, draft=None) -> None:
    from ..engine.config import DRAFT_OFF
    from ..convert.pipeline import default_batch_size
    from ..convert.shard import Shard
    from ..convert.stream import convert_many

    shard = shard or Shard()
    batch_size = batch_size or default_batch_size(loaded, gen.max_new_tokens)
    rank = "" if shard.is_single else f"rank {shard} ({shard.source}) "
    # Each process of a shared conversion says which it is, where it runs and its share.
    plan_line = None if shard.is_single else (
        lambda pages: f"{rank}on {loaded.device}: {pages} page(s) to convert, batch {batch_size}, {scheduler} batching")
    progress = make_progress(quiet, total_documents=len(targets), plan_line=plan_line)

    def print_text(report, text: str) -> None:
        if report.output is None:
            sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
            sys.stdout.flush()

    with progress:
        run = convert_many(loaded, targets, prompt=prompt, fmt=fmt, gen=gen, pages=ranges, batch_size=batch_size,
                           recompute=recompute, shard=shard, scheduler=scheduler, fallback=fallback,
                           progress=progress, draft=draft or DRAFT_OFF, on_document=print_text)
    failed = run.failed_pages + run.failed_documents
    if not quiet or failed:
        stderr.print(f"{rank}{run.documents} document(s) ({run.skipped} already done), {run.pages} page(s), "
                     f"{run.failed_pages} failed page(s), {run.failed_documents} failed document(s), "
                     f"{run.assembled} output(s) written, {run.pages_per_second:.2f} pages/s, "
                     f"{run.tokens_per_pass:.2f} tokens per forward pass" + _glyph_summary(run.reports))
    if failed:
        raise typer.Exit(code=1)


def run_assembly(targets: dict[Path, Path], *, fmt: str, ranges, quiet: bool, fallback: str | None = None) -> None:
    from ..convert.stream import assemble_many

    progress = make_progress(quiet, total_documents=len(targets))
    with progress:
        run = assemble_many(targets, fmt, ranges, progress, fallback=fallback)
    if not quiet or run.owned_pages or run.failed_documents:
        stderr.print(f"{run.assembled} output(s) written, {run.skipped} already done, "
                     f"{run.documents - run.assembled - run.skipped} incomplete ({run.owned_pages} page(s) missing), "
                     f"{run.failed_documents} failed document(s)" + _glyph_summary(run.reports))
    if run.owned_pages or run.failed_documents:
        raise typer.Exit(code=1)


def _glyph_summary(reports) -> str:
    """`, N page(s) with characters no installed font has` for the summary line, or nothing."""
    pages = sum(len(report.missing_glyphs) for report in reports)
    return f", {pages} page(s) with characters no installed font has" if pages else ""


def glyph_warning(report) -> str | None:
    """One line naming the pages of a tex output whose characters no installed font has, or None."""
    if not report.missing_glyphs:
        return None
    pages = ", ".join(str(page) for page in sorted(report.missing_glyphs))
    chars = "".join(dict.fromkeys("".join(report.missing_glyphs.values())))
    shown = chars[:12] + ("…" if len(chars) > 12 else "")
    codes = " ".join(f"U+{ord(ch):04X}" for ch in chars[:4])
    return (f"{report.source}: page(s) {pages}: no installed font has {shown} ({codes}); xelatex will leave "
            "them out (Debian: apt-get install fonts-noto-core)")


def make_progress(quiet: bool, total_documents: int, plan_line=None):
    """Rich bars on a terminal; one plain line per document otherwise; nothing with --quiet.

    `plan_line(pages)`, if given, is the line printed once the pages to convert are known.
    """
    from ..convert.pipeline import Progress

    class PlainProgress(Progress):
        def pages_planned(self, pages, already_done) -> None:
            if plan_line and not quiet:
                self.message(plan_line(pages))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def message(self, text: str) -> None:
            stderr.print(_styled(text))

        def document_done(self, report) -> None:
            warning = glyph_warning(report)
            if warning:  # even with --quiet: the PDF will lack these characters
                stderr.print(labelled("warning:", "yellow", warning))
            if quiet:
                return
            where = "stdout" if report.output is None else str(report.output)
            state = "skipped (finished; --recompute to redo)" if report.skipped else \
                f"{report.pages} page(s), {report.failed_pages} failed -> {where}"
            stderr.print(f"{report.source}: {state}")

    if quiet or not stderr.is_terminal:
        return PlainProgress()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichBars, TextColumn, TimeRemainingColumn

    class RichProgress(PlainProgress):
        def __init__(self) -> None:
            # markup off: the description is a file name (user text)
            self.bars = RichBars(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=stderr)
            self.documents = self.bars.add_task("documents", total=total_documents, rate="")
            self.pages = None
            self.tokens = 0
            self.started = time.perf_counter()

        def __enter__(self):
            self.bars.__enter__()
            return self

        def __exit__(self, *exc):
            return self.bars.__exit__(*exc)

        def message(self, text: str) -> None:
            self.bars.console.print(_styled(text))

        def pages_planned(self, pages, already_done) -> None:
            super().pages_planned(pages, already_done)
            self.pages = self.bars.add_task("pages", total=pages, completed=already_done, rate="")

        def document_started(self, source, pages, already_done) -> None:
            if self.pages is not None:
                self.bars.remove_task(self.pages)
            self.pages = self.bars.add_task(source.name[:40], total=pages, completed=already_done, rate="")

        def token(self) -> None:
            self.tokens += 1
            if self.tokens % 16 == 0 and self.pages is not None:
                rate = self.tokens / max(time.perf_counter() - self.started, 1e-9)
                self.bars.update(self.pages, rate=f"{rate:.1f} tok/s")

        def page_done(self, result) -> None:
            self.bars.advance(self.pages)

        def document_done(self, report) -> None:
            self.bars.advance(self.documents)
            if report.failed_pages or report.skipped or report.missing_glyphs:
                super().document_done(report)

    return RichProgress()


# convert/stream.py marks its error lines with this markup prefix; the consoles print no markup (the rest of
# the line is user text), so the label is coloured here and the rest printed as it is.
_ERROR_PREFIX = "error: "  # how the library's progress messages mark an error (plain text; coloured here)


def _styled(text: str):
    if text.startswith(_ERROR_PREFIX):
        return labelled("error:", "red", text[len(_ERROR_PREFIX):])
    return text
