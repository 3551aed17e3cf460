"""`vary data pdf`: every page of a PDF as an image + the text of its own text layer (Vary §3.2.2).

`list_pages` opens each PDF once to count its pages (a PDF that does not open, broken or encrypted, is
an error line and the run goes on); every page is an `Item` keyed `"<doc>#<page>"`, where `<doc>` is
the file's name, or `<dir>/<path inside it>` for a directory argument, so the keys (and the shards
and seeds they pick) do not depend on where the corpus is mounted. `make_page` reads the page's
text (pdf_text.py), skips pages with no text layer (scanned), too little text, undecodable glyphs
or another language, and only then renders the page (long side >= `long_side` px) to
`images/<doc>-<hash>/<page>.jpg` (JPEG, as Vary-toy §3.1.1 saves its pages).
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..convert.raster import parse_page_ranges
from ..convert.shard import Shard, stable_hash
from ..errors import InputError, one_line
from ..convert.pdf_text import page_chars, page_text, script_language
from ..files import atomic_write_bytes
from .writer import IMAGES, Item, Outcome, conversation

OCR_PROMPT = "Provide the OCR results of this image."  # Vary-toy §3.1.1, for English and Chinese pages
LANGUAGES = ("en", "zh")


@dataclass(frozen=True)
class PdfSettings:
    """How pages become samples; every field is in the manifest and a rerun must match it."""

    out: str
    prompt: str = OCR_PROMPT
    min_chars: int = 100
    languages: tuple[str, ...] = LANGUAGES
    long_side: int = 1024
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if self.min_chars < 1:
            raise InputError("--min-chars must be at least 1")
        if self.long_side < 1024:
            raise InputError("--long-side must be at least 1024 (the vision vocabulary reads 1024x1024)")
        unknown = set(self.languages) - set(LANGUAGES)
        if unknown or not self.languages:
            raise InputError(f"--lang takes a comma list of {', '.join(LANGUAGES)}, got {','.join(self.languages)}")

    def manifest(self) -> dict:
        return {"prompt": self.prompt, "min_chars": self.min_chars, "languages": list(self.languages),
                "long_side": self.long_side, "jpeg_quality": self.jpeg_quality}


def find_pdfs(inputs: list[Path]) -> list[tuple[str, Path]]:
    """(key, path) of every PDF named or found (recursively, sorted) in a directory, each once.

    Raises:
        InputError: an input does not exist, or a directory holds no PDF.
    """
    found: list[tuple[str, Path]] = []
    seen: set[Path] = set()
    keys: set[str] = set()
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            docs = []
            for folder, dirnames, filenames in os.walk(path):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                docs += [Path(folder) / n for n in filenames if n.lower().endswith(".pdf") and not n.startswith(".")]
            if not docs:
                raise InputError(f"{path}: no PDF files in this directory")
            base = path.resolve().name
            named = sorted(((f"{base}/{d.relative_to(path).as_posix()}", d) for d in docs))
        elif path.is_file():
            named = [(path.name, path)]
        else:
            raise InputError(f"{path}: no such file or directory")
        for key, doc in named:
            if doc.resolve() in seen:
                continue
            seen.add(doc.resolve())
            unique, n = key, 1
            while unique in keys:  # two files of one name from different arguments
                n += 1
                unique = f"{key}~{n}"
            keys.add(unique)
            found.append((unique, doc))
    return found


def list_pages(docs: list[tuple[str, Path]], pages: str | None, shard: Shard) -> tuple[list[Item], list[str]]:
    """Every selected page of every PDF as an Item, and one error line per PDF that does not open.

    `pages` ("1-3,7", 1-based) picks pages in every document; pages past a document's end are ignored.
    A document's error is reported by the shard that owns the document's key, so it is said once.
    """
    import pypdfium2 as pdfium

    ranges = parse_page_ranges(pages) if pages else None
    items: list[Item] = []
    errors: list[str] = []
    for key, path in docs:
        try:
            document = pdfium.PdfDocument(str(path))
        except pdfium.PdfiumError as exc:
            if shard.owns(key):
                errors.append(f"{path}: cannot open ({_pdfium_reason(exc)}); skipped")
            continue
        except OSError as exc:
            if shard.owns(key):
                errors.append(f"{path}: cannot read ({exc.strerror or exc}); skipped")
            continue
        try:
            count = len(document)
        finally:
            document.close()
        numbers = range(1, count + 1) if ranges is None else sorted(
            {n for start, end in ranges for n in range(start, min(end or count, count) + 1)})
        for number in numbers:
            items.append(Item(f"{key}#{number}", len(items), (str(path), key, number)))
    return items, errors


def _pdfium_reason(exc: BaseException) -> str:
    text = one_line(exc)
    if "password" in text.lower():
        return "encrypted; it needs a password"
    match = re.search(r"PDFium: ([^)]+)", text)  # pypdfium2: "Failed to load document (PDFium: Data format error)."
    return match.group(1).lower() if match else text


_open: dict[str, object] = {}  # this worker's open document, reused by its next pages


def _document(path: str):
    import pypdfium2 as pdfium

    if path not in _open:
        close_documents()
        _open[path] = pdfium.PdfDocument(path)
    return _open[path]


def close_documents() -> None:
    """Close the document this process kept open between pages (workers' close when they exit)."""
    for document in _open.values():
        document.close()
    _open.clear()


def image_name(doc_key: str, number: int) -> str:
    """`images/<doc>-<hash>/<page>.jpg`: readable, and unique for every document key."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(doc_key.split("/")[-1]).stem)[:40] or "doc"
    return f"{IMAGES}/{stem}-{stable_hash(doc_key) % 16 ** 8:08x}/{number:04d}.jpg"


def make_page(settings: PdfSettings, item: Item, seed: int) -> Outcome:
    """Read one page's text, decide whether it is a sample, and render it; see the module docstring."""
    import pypdfium2 as pdfium

    path, doc_key, number = item.payload
    try:
        page = _document(path)[number - 1]
    except pdfium.PdfiumError as exc:  # a damaged page is skipped; the run goes on
        return Outcome(item.key, item.index, skipped=f"page does not load ({_pdfium_reason(exc)})")
    try:
        text, image = _read_and_render(page, settings)
    except pdfium.PdfiumError as exc:
        return Outcome(item.key, item.index, skipped=f"page does not render ({_pdfium_reason(exc)})")
    finally:
        page.close()
    if image is None:
        return Outcome(item.key, item.index, skipped=text)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=settings.jpeg_quality)
    name = image_name(doc_key, number)
    atomic_write_bytes(Path(settings.out) / name, buffer.getvalue())
    record = conversation(name, settings.prompt, text, item.key)
    return Outcome(item.key, item.index, records=[record], counts={f"pages_{script_language(text)}": 1})


def _read_and_render(page, settings: PdfSettings):
    """(text, image) of a page that makes a sample, or (why not, None); the text is read first, so
    pages that are skipped are never rendered."""
    textpage = page.get_textpage()
    try:
        text = page_text(page_chars(textpage))
    finally:
        textpage.close()
    if text.chars == 0:
        return "no text layer (scanned or figure-only page)", None
    if text.broken:
        return "undecodable glyphs (cid:N / U+FFFD)", None
    if text.chars < settings.min_chars:
        return f"too little text (< {settings.min_chars} characters)", None
    if "<image>" in text.text:  # vary train's image placeholder cannot stand in an answer
        return "text contains the <image> placeholder", None
    language = script_language(text.text)
    if language not in settings.languages:
        return f"language {language} not in --lang", None
    width, height = page.get_size()
    # pdfium rounds the bitmap size down; a hair more scale keeps the long side at the target.
    bitmap = page.render(scale=(settings.long_side + 0.5) / max(width, height))
    try:
        return text.text, bitmap.to_pil().convert("RGB")
    finally:
        bitmap.close()
