"""`vary models`: list, download, verify and remove the registry's weights.

A Typer sub-app that cli/app.py mounts with `app.add_typer(models_app, name="models")`; plain
`vary models` lists. The commands call `hub` and `registry` and print; a `VaryError` becomes one red
line on stderr and exit code `err.exit_code` (`--debug` re-raises it, as in cli/app.py). Nothing here
imports torch, so these commands start fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..weights import hub

from ..weights import registry
from .common import DebugOption, fail, stdout_console
from ..errors import VaryError, WeightsError

models_app = typer.Typer(help="List, download, verify and remove model weights.",
                         pretty_exceptions_show_locals=False)

NameArg = Annotated[str, typer.Argument(help="Model name from `vary models list`, e.g. vary-toy.",
                                        show_default=False)]


@contextmanager
def _one_line_errors(debug: bool) -> Iterator[None]:
    try:
        yield
    except VaryError as err:
        fail(err, debug)


def _out() -> Console:
    return stdout_console()


@models_app.callback(invoke_without_command=True)
def models(ctx: typer.Context) -> None:
    """List, download, verify and remove model weights (plain `vary models` lists them)."""
    if ctx.invoked_subcommand is None:
        list_models()


@models_app.command("list")
def list_models(debug: DebugOption = False) -> None:
    """Show every known model: size, whether it is downloaded, and where."""
    with _one_line_errors(debug):
        table = Table(box=None, pad_edge=False)
        for column in ("name", "size", "downloaded", "path"):
            table.add_column(column, overflow="fold")
        for entry in registry.entries().values():
            if not entry.downloadable:
                table.add_row(entry.name, entry.size, "-", "no public download: use --model DIR")
                continue
            downloaded, path = hub.status(entry)
            table.add_row(entry.name, entry.size, "yes" if downloaded else "no", str(path) if path else "")
        _out().print(table)


@models_app.command()
def download(name: NameArg,
             force: Annotated[bool, typer.Option("--force", help="Download every file again and re-record "
                                                                "its sha256.")] = False,
             debug: DebugOption = False) -> None:
    """Download NAME's pinned files into the Hugging Face cache (nothing happens when they are there)."""
    with _one_line_errors(debug):
        directory = hub.download(registry.lookup(name), force=force)
        _out().print(f"{name}: {directory}", soft_wrap=True)


@models_app.command()
def verify(name: NameArg, debug: DebugOption = False) -> None:
    """Rehash every file of NAME and compare with weights.toml and the lock recorded at download."""
    with _one_line_errors(debug):
        report = hub.verify(registry.lookup(name))
        table = Table(box=None, pad_edge=False)
        for column in ("status", "file", "sha256"):
            table.add_column(column, overflow="fold")
        for check in report.files:
            table.add_row(check.status, check.path, check.actual or check.expected)
        _out().print(table)
        if not report.ok:
            raise WeightsError(report.summary())
        _out().print(report.summary(), soft_wrap=True)


@models_app.command("rm")
def remove(name: NameArg,
           yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
           debug: DebugOption = False) -> None:
    """Delete NAME's files from the Hugging Face cache and forget its recorded hashes."""
    with _one_line_errors(debug):
        entry = registry.lookup(name)
        downloaded, path = hub.status(entry)
        if not downloaded and not hub.lock_path(entry).exists():
            freed = hub.remove(entry)  # clears an interrupted download, if there is one
            _out().print(f"{name}: not downloaded" + (f"; removed a partial download ({freed / 1e6:.1f} MB)"
                                                      if freed else "; nothing to remove"))
            return
        if not yes:
            typer.confirm(f"Remove {name} ({path or 'partial download'}) from the Hugging Face cache?", abort=True)
        freed = hub.remove(entry)
        _out().print(f"{name}: removed ({freed / 1e6:.1f} MB freed)")
