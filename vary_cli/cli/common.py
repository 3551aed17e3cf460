"""What every `vary` command shares: the stderr console, one-line errors, the common options, model loading.

Imported by `app.py` and the command modules (`convert`, `train`, `models`), never the
other way round, so any of them can be imported first.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console
from rich.text import Text

from ..errors import VaryError

# Markup and emoji codes are off on every console: paths, keys and messages are user text, and rich would
# read "[b]" as a style and ":-1:" as an emoji. Colour comes only from `labelled`, which builds a Text.
stderr = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)

ModelOption = Annotated[str, typer.Option("--model", "-m", help="A model name from `vary models` or a checkpoint directory.")]
PromptOption = Annotated[str, typer.Option(
    help="A preset (ocr: 'Provide the ocr results of this image.', markdown: 'Convert the document to "
         "markdown format.') or any text, used as given.")]
MaxTokensOption = Annotated[int, typer.Option("--max-new-tokens", min=1, help="Most tokens generated per page.")]
DeviceOption = Annotated[str, typer.Option(help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")]
DtypeOption = Annotated[str, typer.Option(help="auto (bf16/fp16 on GPUs, fp32 on CPU), fp32, bf16 or fp16.")]
TemperatureOption = Annotated[float, typer.Option(min=0.0, help="0 decodes greedily (default); > 0 samples.")]
TopPOption = Annotated[float, typer.Option("--top-p", help="Nucleus sampling mass (with --temperature > 0).")]
SeedOption = Annotated[Optional[int], typer.Option(help="Seed for sampling, for reproducible samples.")]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")]
CropsOption = Annotated[str, typer.Option(
    "--crops", help="GOT-OCR2 only: auto (a large or dense page is cut into up to 12 tiles of 1024x1024 plus the "
                    "whole page, read as one), N (at most N tiles) or off (default: the whole page as one tile).")]
DraftOption = Annotated[str, typer.Option(
    "--draft", help="Speculative decoding from the page's own text, the same tokens in fewer forward passes "
                    "(greedy only): auto (the PDF page's text layer where it has one, then the page's own output "
                    "and earlier pages), text-layer, ngram (own output and earlier pages) or off.")]


def stdout_console() -> Console:
    """A console for stdout (tables, results) with markup and emoji codes off, as `stderr`."""
    return Console(highlight=False, markup=False, emoji=False)


def labelled(label: str, color: str, text: str) -> Text:
    """`label` in `color`, then `text` exactly as given (no markup, no emoji codes)."""
    return Text.assemble((label, color), " ", text)


def fail(error: VaryError, debug: bool) -> NoReturn:
    """Print `error` as one red line (or re-raise it with --debug) and exit with its code."""
    if debug:
        raise error
    stderr.print(labelled("error:", "red", " ".join(str(error).split())))
    raise typer.Exit(code=error.exit_code)


def page_options(crops: str = "off", box: str | None = None, color: str | None = None):
    """`--crops`, `--box`, `--color` as PageOptions (a malformed value is a usage error, a box with x2 < x1
    or a colour GOT does not know a one-line error)."""
    from ..models.loaded import PageOptions

    tiles: str | int = crops
    if crops not in ("auto", "off"):
        if not crops.isdigit():
            raise typer.BadParameter(f"--crops must be auto, off or a number of tiles, not {crops!r}")
        tiles = int(crops)
    corners = None
    if box is not None:
        try:
            corners = tuple(float(part) for part in box.split(","))
        except ValueError:
            corners = ()
        if len(corners) != 4:
            raise typer.BadParameter(f"--box must be four numbers x1,y1,x2,y2 (pixels), not {box!r}")
    return PageOptions(crops=tiles, box=corners, color=color)


def draft_config(mode: str):
    """The `--draft` option as a DraftConfig (a bad mode is a one-line error)."""
    from ..engine.config import DraftConfig

    return DraftConfig(mode=mode)


def generation_config(max_new_tokens: int, temperature: float, top_p: float, seed: int | None):
    from ..engine.config import GenerationConfig

    return GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed)


def load_model(model: str, device: str, dtype: str, quiet: bool = False):
    """Load `model` (name or directory) with a spinner on a terminal; one line on stderr saying where."""
    from ..models.checkpoint import load

    with stderr.status(f"loading {model}", spinner="dots") if stderr.is_terminal and not quiet else nullcontext():
        loaded = load(model, device=device, dtype=dtype)
    if not quiet:
        stderr.print(f"{loaded.directory.name} on {loaded.device} ({str(loaded.dtype).removeprefix('torch.')})")
    return loaded
