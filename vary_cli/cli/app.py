"""The `vary` command line: parse flags, call the library, print. The only module that prints or exits.

Library errors (`VaryError`) become one red line on stderr and the error's exit code; `--debug`
re-raises them for a traceback. torch and transformers are imported inside command bodies so that
`vary --help` and bad-flag errors come back at once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (CropsOption, DebugOption, DeviceOption, DraftOption, DtypeOption, MaxTokensOption, ModelOption,
                     PromptOption, SeedOption, TemperatureOption, TopPOption, draft_config, fail, generation_config,
                     labelled, load_model, page_options, stderr)
from .convert import convert
from .eval import eval_app
from .data import data_app
from .models import models_app
from .serve import serve
from .train import graft_vocabulary, train
from ..errors import VaryError, one_line

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help="Turn PDFs and images into Markdown, LaTeX or text with the Vary vision-language models.")


@app.callback()
def main_callback() -> None:
    """Turn PDFs and images into Markdown, LaTeX or text with the Vary vision-language models."""


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
    draft: DraftOption = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images decoded together.")] = 1,
    crops: CropsOption = "off",
    box: Annotated[Optional[str], typer.Option("--box", help="GOT-OCR2 only: read the region x1,y1,x2,y2 (pixels of the image).")] = None,
    color: Annotated[Optional[str], typer.Option("--color", help="GOT-OCR2 only: read the text boxed in red, green or blue.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per image on stdout.")] = False,
    debug: DebugOption = False,
) -> None:
    """Read the text of images. One image: its text alone on stdout; several: each under a header."""
    try:
        gen = generation_config(max_new_tokens, temperature, top_p, seed)
        drafting = draft_config(draft)
        options = page_options(crops, box, color)
        from ..models.preprocess import load_image

        for path in images:  # fail on a bad image (or a box outside it) before spending time on the model
            with load_image(path) as image:
                options.check_image(*image.size)
        loaded = load_model(model, device, dtype).with_options(options)
        from ..convert.pipeline import ocr_images

        failed = 0
        for index, result in enumerate(ocr_images(loaded, images, prompt, gen, batch_size=batch_size, draft=drafting)):
            failed += result.finish_reason == "error"
            if as_json:
                sys.stdout.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
            else:
                header = (("\n" if index else "") + f"==> {result.source} <==\n") if len(images) > 1 else ""
                sys.stdout.write(header + result.text + "\n")
            sys.stdout.flush()
            if result.finish_reason in ("length", "repetition"):
                cause = f"--max-new-tokens {gen.max_new_tokens}" if result.finish_reason == "length" else \
                    "a repeating loop (the text before it is kept)"
                stderr.print(labelled("warning:", "yellow", f"{result.source}: stopped at {cause}"))
            elif result.finish_reason == "error":
                stderr.print(labelled("error:", "red", f"{result.source}: {result.error or ''}"))
        if failed:
            raise typer.Exit(code=1)
    except VaryError as error:
        fail(error, debug)
    except KeyboardInterrupt:
        stderr.print("interrupted")
        raise typer.Exit(code=130) from None


app.command()(convert)
app.command()(train)
app.command("graft-vocabulary")(graft_vocabulary)
app.command()(serve)
app.add_typer(models_app, name="models", help="List, download, verify and remove model weights.")
app.add_typer(eval_app, name="eval")
app.add_typer(data_app, name="data")


def main() -> None:
    """The `vary` console script: the app, with usage errors (a bad flag or value) as one line on stderr."""
    try:  # recent typer vendors click as typer._click; older typer uses click itself
        from typer._click import exceptions as click
    except ImportError:
        from click import exceptions as click

    try:
        code = app(standalone_mode=False)
    except click.NoArgsIsHelpError as help_request:  # plain `vary`: the help text, as usual
        help_request.show()
        code = help_request.exit_code
    except click.UsageError as error:
        command = error.ctx.command_path if error.ctx else "vary"
        stderr.print(labelled("error:", "red", f"{one_line(error.format_message())} (see `{command} --help`)"))
        code = error.exit_code
    except click.ClickException as error:
        stderr.print(labelled("error:", "red", one_line(error.format_message())))
        code = error.exit_code
    except typer.Abort:  # Ctrl-C outside a command body
        stderr.print("interrupted")
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
