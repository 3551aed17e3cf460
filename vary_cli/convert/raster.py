"""Inputs -> pages: find the documents a user named, open them, and stream their pages as RGB images.

`discover_inputs` expands the paths given to `vary convert` (files, and directories searched recursively)
into a sorted list of documents; `parse_page_ranges` + `select_pages` turn `--pages 1-4,7` into page
numbers; `open_document` returns a `Document` whose `iter_pages` renders one page at a time, so a
500-page PDF is never held in memory. `stream.convert_many` calls these; `cli/app.py` calls
`discover_inputs` and `parse_page_ranges` to fail fast on bad arguments.

PDFs go through pdf2image (poppler's `pdfinfo` and `pdftoppm`). Every failure a user can cause (missing
file, empty, corrupt, encrypted, not a PDF, poppler missing) is an `InputError` with a one-line message.
This module does not import torch at import time; the shared RGB conversion in `models/preprocess.py` is
imported when the first page is decoded, which happens only once a model is about to run anyway.
"""

from __future__ import annotations

import math
import os
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from PIL import Image, UnidentifiedImageError
from pdf2image import convert_from_path, pdfinfo_from_path
from pdf2image.exceptions import (PDFInfoNotInstalledError, PDFPageCountError, PDFPopplerTimeoutError,
                                  PDFSyntaxError, PopplerNotInstalledError)

from ..errors import InputError, one_line

PDF_SUFFIXES = frozenset({".pdf"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif"})
# Only TIFF frames are pages; the frames of a GIF or WebP are an animation, so those give their first frame.
MULTIPAGE_SUFFIXES = frozenset({".tif", ".tiff"})

# Rendering size (vary.md §2): the SAM branch squashes every page to 1024x1024 with PIL bicubic and the
# CLIP branch shrinks the short side to 224. So a page is rendered with its SHORT side at >= 1024 px:
# the short axis is then never upsampled (upsampling a low-resolution render blurs small print), and the
# long axis is only downsampled by PIL's antialiasing bicubic. More pixels than that are thrown away by
# the squash. The DPI is chosen per page from pdfinfo's page size (in points, 1/72 inch); pdftoppm rounds
# pixel sizes up, so ceil(72 * 1024 / short_pt) gives >= 1024 px. A letter page comes out at 121 dpi,
# 1029x1331 px; an A0 poster at ~31 dpi. The long side is capped at MAX_LONG_SIDE so a strip-shaped page
# (a receipt 1:20) cannot ask for a 20k-pixel render; only pages beyond 1:8 fall below 1024 px on the
# short side. A page whose size pdfinfo does not report is rendered at FALLBACK_DPI.
TARGET_SHORT_SIDE = 1024
MAX_LONG_SIDE = 8192
FALLBACK_DPI = 200
# A page that takes poppler longer than this to render is reported as a broken page, not waited on forever.
PAGE_TIMEOUT_S = 600

_RANGE = re.compile(r"^(\d+)(?:(-)(\d*))?$")
_PAGE_FIELD = re.compile(r"^Page\s+(\d+)\s+(size|rot)$")
_POINTS = re.compile(r"([\d.]+)\s*x\s*([\d.]+)")


class PopplerMissingError(InputError):
    """poppler's `pdfinfo`/`pdftoppm` are not installed, so PDFs cannot be read."""


def parse_page_ranges(spec: str) -> list[tuple[int, int | None]]:
    """Parse `--pages` ("1-4,7", "5-") into 1-based inclusive ranges; None as the end means "to the last page".

    Raises:
        InputError: empty spec, page 0, a range whose start is after its end, or anything else malformed.
    """
    ranges: list[tuple[int, int | None]] = []
    for part in spec.split(","):
        match = _RANGE.match(part.strip())
        if match is None:
            raise InputError(f"--pages {spec!r}: cannot read {part.strip()!r}; use page numbers and ranges "
                             "like 1-4,7 or 5- (pages count from 1)")
        start = int(match.group(1))
        end: int | None = start if match.group(2) is None else (int(match.group(3)) if match.group(3) else None)
        if start < 1 or (end is not None and end < start):
            raise InputError(f"--pages {spec!r}: {part.strip()!r} is not a valid range; pages count from 1 "
                             "and a range runs from low to high, like 2-5")
        ranges.append((start, end))
    return ranges


def select_pages(ranges: Sequence[tuple[int, int | None]] | None, page_count: int,
                 source: Path | str = "input") -> list[int]:
    """The sorted, de-duplicated page numbers that `ranges` pick from a document of `page_count` pages.

    None selects every page. Sorted because the output is one document in page order.

    Raises:
        InputError: a range reaches past the last page; the message names the file and its page count.
    """
    if ranges is None:
        return list(range(1, page_count + 1))
    pages: set[int] = set()
    for start, end in ranges:
        last = page_count if end is None else end
        if start > page_count or last > page_count:
            shown = f"{start}-" if end is None else (str(start) if start == end else f"{start}-{end}")
            raise InputError(f"{source}: --pages {shown} is out of range; the document has "
                             f"{page_count} page{'s' if page_count != 1 else ''}")
        pages.update(range(start, last + 1))
    return sorted(pages)


def discover_inputs(paths: Iterable[Path | str]) -> list[Path]:
    """Expand files and directories into the documents to convert, in a deterministic order.

    A file is taken as given (its type is checked when it is opened). A directory is searched
    recursively for PDFs and images by suffix (case-insensitive), skipping hidden files and folders
    (such as `.vary-partial` state); its documents come sorted by relative path. Arguments keep their
    order, and a document named twice is kept once.

    Raises:
        InputError: a path does not exist, or a directory holds no document.
    """
    found: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            docs = _walk_documents(path)
            if not docs:
                raise InputError(f"{path}: no PDF or image files found in this directory (looked for "
                                 f"{', '.join(sorted(PDF_SUFFIXES | IMAGE_SUFFIXES))})")
        elif path.exists():
            docs = [path]
        else:
            raise InputError(f"{path}: no such file or directory")
        for doc in docs:
            key = doc.resolve()
            if key not in seen:
                seen.add(key)
                found.append(doc)
    return found


def _walk_documents(root: Path) -> list[Path]:
    docs: list[Path] = []
    # os.walk does not follow symlinked directories, so a link loop cannot make the search endless.
    for folder, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in PDF_SUFFIXES | IMAGE_SUFFIXES:
                docs.append(Path(folder) / name)
    return sorted(docs, key=lambda p: p.relative_to(root).parts)


class Document(ABC):
    """An opened input: `source`, `page_count`, and `iter_pages` to render pages one at a time.

    `kind` is "pdf" or "image"; a multi-page TIFF is an "image" with several pages. A single plain
    image is page 1 here; `PageResult.page` is None for it (see `is_single_image`).
    """

    kind: str

    def __init__(self, source: Path, page_count: int) -> None:
        self.source = source
        self.page_count = page_count

    @property
    def is_single_image(self) -> bool:
        return self.kind == "image" and self.page_count == 1

    def iter_pages(self, pages: Sequence[int] | None = None) -> Iterator[tuple[int, Image.Image]]:
        """Yield (page number, RGB image) for each requested 1-based page, in the order given.

        Each page is rendered when it is asked for and not kept afterwards.

        Raises:
            InputError: a page number outside 1..page_count, or a page that cannot be decoded.
        """
        wanted = list(range(1, self.page_count + 1)) if pages is None else list(pages)
        for number in wanted:
            if not 1 <= number <= self.page_count:
                raise InputError(f"{self.source}: page {number} is out of range; the document has "
                                 f"{self.page_count} page{'s' if self.page_count != 1 else ''}")
        for number in wanted:
            yield number, self._render(number)

    @abstractmethod
    def _render(self, number: int) -> Image.Image: ...


class PdfDocument(Document):
    kind = "pdf"

    def __init__(self, source: Path, page_count: int, page_sizes: dict[int, tuple[float, float]]) -> None:
        super().__init__(source, page_count)
        self.page_sizes = page_sizes  # page -> (width, height) in points, rotation applied

    def dpi_for(self, number: int) -> int:
        """The DPI that renders page `number` with its short side at >= TARGET_SHORT_SIDE (see top)."""
        size = self.page_sizes.get(number)
        if size is None or min(size) <= 0:
            return FALLBACK_DPI
        short, long = min(size), max(size)
        dpi = math.ceil(72 * TARGET_SHORT_SIDE / short)
        if long * dpi / 72 > MAX_LONG_SIDE:
            dpi = math.floor(72 * MAX_LONG_SIDE / long)
        return max(dpi, 1)

    def _render(self, number: int) -> Image.Image:
        # One pdftoppm call per page: poppler re-reads the file each time, which costs milliseconds
        # against seconds of model time per page, and keeps exactly one page in memory.
        try:
            images = convert_from_path(self.source, dpi=self.dpi_for(number), first_page=number,
                                       last_page=number, timeout=PAGE_TIMEOUT_S)
        except (PDFInfoNotInstalledError, PopplerNotInstalledError):
            raise _poppler_missing(self.source) from None
        except PDFPopplerTimeoutError:
            raise InputError(f"{self.source}: page {number} took over {PAGE_TIMEOUT_S} s to render; "
                             "the page is probably broken, skip it with --pages") from None
        except (PDFPageCountError, PDFSyntaxError) as exc:
            raise InputError(f"{self.source}: page {number} could not be rendered "
                             f"(poppler: {_poppler_reason(exc)})") from None
        if not images:
            raise InputError(f"{self.source}: page {number} could not be rendered (poppler returned no image)")
        from ..models.preprocess import load_image_from_pil  # imports torch; see the module docstring

        return load_image_from_pil(images[0], name=f"{self.source} page {number}")


class ImageDocument(Document):
    kind = "image"

    def _render(self, number: int) -> Image.Image:
        from ..models.preprocess import load_image, load_image_from_pil  # imports torch; see the module docstring

        if self.page_count == 1:
            return load_image(self.source)
        try:
            with Image.open(self.source) as image:
                image.seek(number - 1)
                image.load()
                # convert() copies; an RGB frame is copied by hand, since the file closes on return.
                return load_image_from_pil(image.copy(), name=f"{self.source} page {number}")
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise InputError(f"{self.source}: page {number} of the TIFF is truncated or corrupt "
                             f"({one_line(exc)})") from None


def open_document(path: Path | str) -> Document:
    """Open a PDF or image file and count its pages, without rendering any of them.

    A file that starts with `%PDF-` is a PDF whatever its suffix; anything else is read as an image.

    Raises:
        InputError: missing, empty, unreadable, encrypted, corrupt, or not a PDF/image file.
        PopplerMissingError: the file is a PDF and poppler is not installed.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory; pass it to `vary convert` to convert the files inside")
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(1024)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file ({exc.strerror or one_line(exc)})") from None
    if size == 0:
        raise InputError(f"{path}: file is empty (0 bytes); nothing to convert")
    # Content decides, not the suffix. The PDF spec allows junk before the header within the first 1024
    # bytes (poppler accepts it), so a file named .pdf may have its header a little later.
    if head.startswith(b"%PDF-") or (path.suffix.lower() in PDF_SUFFIXES and b"%PDF-" in head):
        return _open_pdf(path)
    if path.suffix.lower() in PDF_SUFFIXES:
        raise InputError(f"{path}: not a PDF file (no %PDF- header); check that the file is not damaged "
                         "or mis-named")
    return _open_image(path)


def _open_pdf(path: Path) -> PdfDocument:
    try:
        info = pdfinfo_from_path(path)
        count = int(info["Pages"])
        # A second call with -f/-l makes pdfinfo list every page's size; one process for the whole file.
        sizes = _page_sizes(pdfinfo_from_path(path, first_page=1, last_page=count)) if count else {}
    except (PDFInfoNotInstalledError, PopplerNotInstalledError):
        raise _poppler_missing(path) from None
    except PDFPopplerTimeoutError:
        raise InputError(f"{path}: poppler timed out reading the PDF; the file is probably broken") from None
    except (PDFPageCountError, PDFSyntaxError, ValueError, KeyError) as exc:
        reason = _poppler_reason(exc)
        if "password" in reason.lower():
            raise InputError(f"{path}: the PDF is encrypted with a password; decrypt it first, e.g. "
                             "`qpdf --decrypt --password=PASSWORD in.pdf out.pdf`") from None
        raise InputError(f"{path}: corrupt or truncated PDF (poppler: {reason}); re-export or repair it, "
                         "e.g. `qpdf in.pdf repaired.pdf`") from None
    if count < 1:
        raise InputError(f"{path}: the PDF has no pages")
    return PdfDocument(path, count, sizes)


def _page_sizes(info: dict) -> dict[int, tuple[float, float]]:
    sizes: dict[int, tuple[float, float]] = {}
    rotations: dict[int, str] = {}
    for key, value in info.items():
        match = _PAGE_FIELD.match(key)
        if match is None:
            continue
        number = int(match.group(1))
        if match.group(2) == "rot":
            rotations[number] = str(value).strip()
        elif (points := _POINTS.search(str(value))) is not None:
            sizes[number] = (float(points.group(1)), float(points.group(2)))
    # pdftoppm renders a /Rotate 90 page turned, so its pixel width is the page's height.
    return {n: (h, w) if rotations.get(n) in ("90", "270") else (w, h) for n, (w, h) in sizes.items()}


def _open_image(path: Path) -> ImageDocument:
    try:
        with Image.open(path) as image:
            frames = getattr(image, "n_frames", 1) if path.suffix.lower() in MULTIPAGE_SUFFIXES else 1
    except UnidentifiedImageError:
        raise InputError(f"{path}: not a PDF or an image file that Pillow can read (PNG, JPEG, TIFF, "
                         "WebP, BMP, ...)") from None
    except Image.DecompressionBombError as exc:
        raise InputError(f"{path}: image too large to open safely ({one_line(exc)})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: truncated or corrupt image ({one_line(exc)})") from None
    return ImageDocument(path, max(int(frames), 1))


def _poppler_missing(path: Path) -> PopplerMissingError:
    return PopplerMissingError(f"{path}: reading PDFs needs poppler, which is not installed; install it with "
                               "`apt-get install poppler-utils` (Debian/Ubuntu) or `brew install poppler` "
                               "(macOS), then run again")


def _poppler_reason(exc: BaseException) -> str:
    # pdf2image puts poppler's stderr after a generic first line; the last "Error" line says what broke.
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = [line for line in lines if "error" in line.lower() and not line.startswith("Unable to get")]
    return (detail[-1] if detail else lines[-1] if lines else type(exc).__name__)[:200]
