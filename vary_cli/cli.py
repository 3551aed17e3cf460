"""The `vary` command line: parse flags, call the library, print. The only module that prints or exits.

Library errors (`VaryError`) become one red line on stderr and the error's exit code; `--debug`
re-raises them for a traceback. torch and transformers are imported inside command bodies so that
`vary --help` and bad-flag errors come back at once.
"""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from .errors import VaryError

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help="Turn PDFs and images into Markdown, LaTeX or text with the Vary vision-language models.")
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

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


@app.callback()
def main_callback() -> None:
    """Turn PDFs and images into Markdown, LaTeX or text with the Vary vision-language models."""


def fail(error: VaryError, debug: bool) -> None:
    """Print `error` as one red line (or re-raise it with --debug) and exit with its code."""
    if debug:
        raise error
    message = " ".join(str(error).split())
    stderr.print(f"[red]error:[/red] {message}", markup=True, soft_wrap=True)
    raise typer.Exit(code=error.exit_code)


def generation_config(max_new_tokens: int, temperature: float, top_p: float, seed: int | None):
    from .config import GenerationConfig

    return GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed)


def load_model(model: str, device: str, dtype: str, quiet: bool = False):
    """Load `model` (name or directory) with a spinner on a terminal; one line on stderr saying where."""
    from .checkpoint import load

    with stderr.status(f"loading {model}", spinner="dots") if stderr.is_terminal and not quiet else nullcontext():
        loaded = load(model, device=device, dtype=dtype)
    if not quiet:
        stderr.print(f"{loaded.directory.name} on {loaded.device} ({str(loaded.dtype).removeprefix('torch.')})")
    return loaded


@app.command()
def ocr(
    images: Annotated[list[Path], typer.Argument(help="Image files (PNG, JPEG, TIFF, WebP, ...).", show_default=False)],
    model: ModelOption = "vary-toy",
    prompt: PromptOption = "ocr",
    max_new_tokens: MaxTokensOption = 2048,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    temperature: TemperatureOption = 0.0,
    top_p: TopPOption = 1.0,
    seed: SeedOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per image on stdout.")] = False,
    debug: DebugOption = False,
) -> None:
    """Read the text of images. One image: its text alone on stdout; several: each under a header."""
    try:
        gen = generation_config(max_new_tokens, temperature, top_p, seed)
        from .preprocess import load_image

        for path in images:  # fail on a bad image before spending time on the model
            load_image(path).close()
        loaded = load_model(model, device, dtype)
        from .pipeline import ocr_images

        for index, result in enumerate(ocr_images(loaded, images, prompt, gen)):
            if as_json:
                sys.stdout.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
            else:
                header = (("\n" if index else "") + f"==> {result.source} <==\n") if len(images) > 1 else ""
                sys.stdout.write(header + result.text + "\n")
            sys.stdout.flush()
            if result.finish_reason in ("length", "repetition"):
                cause = f"--max-new-tokens {gen.max_new_tokens}" if result.finish_reason == "length" else \
                    "a repeating loop (the text before it is kept)"
                stderr.print(f"[yellow]warning:[/yellow] {result.source}: stopped at {cause}")
    except VaryError as error:
        fail(error, debug)
    except KeyboardInterrupt:
        stderr.print("interrupted")
        raise typer.Exit(code=130) from None


from .cli_convert import convert  # noqa: E402  (it imports the options above)

from .cli_models import models_app  # noqa: E402
from .cli_train import graft_vocabulary, train  # noqa: E402

app.command()(convert)
app.command()(train)
app.command("graft-vocabulary")(graft_vocabulary)
app.add_typer(models_app, name="models", help="List, download, verify and remove model weights.")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
