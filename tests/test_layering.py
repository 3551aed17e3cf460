"""The package's folders import downward only, in the order vary_cli/__init__.py states, with no cycles."""

import ast
import re
from pathlib import Path

import vary_cli

PACKAGE = Path(vary_cli.__file__).parent
# Lowest first: a module may import from its own folder and from the folders before it, never after.
LAYERS = ["errors", "files", "weights", "text", "models", "engine", "render", "convert", "eval", "train", "data", "serve", "cli"]
ENTRY_POINTS = {"__init__", "__main__"}  # the public API and `python -m`: they sit above everything


def folder_of(module: str) -> str:
    """`vary_cli.models.checkpoint` -> `models`."""
    parts = module.split(".")
    assert parts[0] == "vary_cli", module
    return parts[1]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every vary_cli import in a file, at any depth (lazy imports count)."""
    package = ["vary_cli", *path.relative_to(PACKAGE).parent.parts]  # what `from .` means in this file
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
                if not node.module:  # `from . import x`: each name is a module of that package
                    found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
                    continue
            else:
                module = node.module or ""
            if module.startswith("vary_cli."):
                found.append((node.lineno, module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("vary_cli.")]
    return found


def test_every_folder_has_a_layer():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    leaves = {p.stem for p in PACKAGE.glob("*.py")} - ENTRY_POINTS
    assert folders | leaves <= set(LAYERS), "add the new folder to LAYERS and to vary_cli/__init__.py"


def test_imports_only_point_down():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if len(rel.parts) == 1 and path.stem in ENTRY_POINTS:
            continue
        source = rel.parts[0] if len(rel.parts) > 1 else path.stem
        for line, module in imported_modules(path):
            target = folder_of(module)
            if LAYERS.index(target) > LAYERS.index(source):
                upward.append(f"{rel}:{line} imports {module} ({source} may not import {target})")
    assert not upward, "\n".join(upward)


def test_the_package_docstring_names_the_order():
    block = vary_cli.__doc__.split("lowest first")[1]
    named = re.findall(r"^\s+(\w+)(?:\.py|/)", block, flags=re.M)
    assert named == LAYERS, "state LAYERS' order in vary_cli/__init__.py's docstring, one line per folder"
