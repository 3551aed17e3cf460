"""Multipart uploads read as they stream in: a size limit that holds before the body is buffered, files
typed by their first bytes, and names the server chooses.

`receive_form` feeds python-multipart's streaming parser chunk by chunk and writes each file part
straight to disk under `directory` as `<index><suffix>`, the suffix taken from the content (`%PDF-`, PNG,
JPEG, TIFF, GIF, WebP, BMP signatures), never from the client's name. The client's file name is only a
label (shown in job status and in jsonl's `source`); one that looks like a path (`/`, `\\`, `..`, control
characters) is refused. Past `limit` bytes the request fails at once with 413 and the rest of the body is
never read. Used by the /v1/convert and /v1/ocr routes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from .http import ApiError

MAX_FIELD_BYTES = 64 * 1024  # a text field (format, pages, prompt, ...)
MAX_PARTS = 64
_IMAGE_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF87a", ".gif"),
                     (b"GIF89a", ".gif"), (b"II*\x00", ".tif"), (b"MM\x00*", ".tif"), (b"BM", ".bmp"))


@dataclass
class Upload:
    """One uploaded file: the client's label for it, where the server stored it, and its kind."""

    name: str
    path: Path
    kind: str  # "pdf" or "image"
    size: int


@dataclass
class Form:
    """A parsed multipart body: the file parts (in order) and the text fields (last value wins)."""

    files: list[Upload] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)


def sniff(head: bytes) -> tuple[str, str] | None:
    """(kind, suffix) from a file's first bytes: a PDF or an image format the converter reads; None otherwise.

    A PDF may have junk before `%PDF-` within its first 1024 bytes, as poppler (and raster.py) accept.
    """
    if b"%PDF-" in head[:1024]:
        return "pdf", ".pdf"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", ".webp"
    for signature, suffix in _IMAGE_SIGNATURES:
        if head.startswith(signature):
            return "image", suffix
    return None


def check_name(raw: str | None, index: int) -> str:
    """The label of the `index`-th file: the client's plain name, or `upload-N` when it sent none.

    Raises:
        ApiError: 400 for a name that is a path or holds control characters.
    """
    if not raw:
        return f"upload-{index + 1}"
    if "/" in raw or "\\" in raw or raw in (".", "..") or any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise ApiError(400, f"file name {raw[:100]!r} is a path or holds control characters; send a plain "
                            "file name (the server stores uploads under names it chooses)")
    if len(raw.encode("utf-8")) > 255:
        raise ApiError(400, "file name longer than 255 bytes; send a shorter name")
    return raw


class _Reader:
    """The parser's callbacks: one state machine over the parts of one body."""

    def __init__(self, directory: Path, file_field: str, max_files: int) -> None:
        self.directory, self.file_field, self.max_files = directory, file_field, max_files
        self.form = Form()
        self.parts = 0
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._field: str | None = None
        self._value = bytearray()
        self._file: BinaryIO | None = None
        self._file_name: str | None = None
        self._file_path: Path | None = None
        self._head = bytearray()
        self._size = 0
        self.ended = False

    def callbacks(self) -> dict:
        return {"on_part_begin": self.part_begin, "on_header_field": self.header_field,
                "on_header_value": self.header_value, "on_header_end": self.header_end,
                "on_headers_finished": self.headers_finished, "on_part_data": self.part_data,
                "on_part_end": self.part_end, "on_end": self.end}

    def end(self) -> None:
        self.ended = True

    def part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise ApiError(400, f"more than {MAX_PARTS} parts in one request")
        self._headers = {}

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def header_end(self) -> None:
        self._headers[bytes(self._header_name).lower()] = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if filename is None:  # a text field
            self._field, self._value = name, bytearray()
            return
        if name != self.file_field:
            raise ApiError(400, f"unexpected file part {name!r}; send files as {self.file_field!r} parts")
        index = len(self.form.files)
        if index >= self.max_files:
            raise ApiError(400, f"at most {self.max_files} file(s) per request")
        self._file_name = check_name(filename.decode("utf-8", "replace"), index)
        self._file_path = self.directory / f"upload-{index}.part"
        self._file = open(self._file_path, "wb")
        self._head.clear()
        self._size = 0

    def part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._file is not None:
            if len(self._head) < 1024:
                self._head += chunk[:1024 - len(self._head)]
            self._file.write(chunk)
            self._size += len(chunk)
        elif self._field is not None:
            self._value += chunk
            if len(self._value) > MAX_FIELD_BYTES:
                raise ApiError(413, f"form field {self._field!r} is longer than {MAX_FIELD_BYTES // 1024} KiB")

    def part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._finish_file()
        elif self._field is not None:
            try:
                self.form.fields[self._field] = self._value.decode("utf-8")
            except UnicodeDecodeError:
                raise ApiError(400, f"form field {self._field!r} is not UTF-8 text") from None
            self._field = None

    def _finish_file(self) -> None:
        name, path, index = self._file_name, self._file_path, len(self.form.files)
        if self._size == 0:
            raise ApiError(400, f"{name}: the file is empty (0 bytes)")
        kind = sniff(bytes(self._head))
        if kind is None:
            raise ApiError(415, f"{name}: not a PDF or an image (PNG, JPEG, TIFF, GIF, WebP, BMP) by its "
                                "content")
        final = self.directory / f"{index}{kind[1]}"
        path.rename(final)
        self.form.files.append(Upload(name, final, kind[0], self._size))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


async def receive_form(chunks: AsyncIterator[bytes], content_type: str | None, content_length: str | None,
                       directory: Path, limit: int, file_field: str = "file", max_files: int = 32) -> Form:
    """Parse a multipart/form-data body as it arrives, storing its files under `directory`.

    Raises:
        ApiError: 413 as soon as the body passes `limit` bytes (or announces more in Content-Length);
            400 for a malformed body, a path as a file name, an empty file or no file; 415 for a body that
            is not multipart or a file that is neither a PDF nor an image.
    """
    kind, options = parse_options_header(content_type or "")
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise ApiError(415, "send the files as multipart/form-data (e.g. curl -F file=@paper.pdf)")
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise ApiError(413, f"the upload is {int(content_length) / 2**20:.1f} MiB; this server takes at most "
                            f"{limit / 2**20:g} MiB (--max-upload-mb)")
    directory.mkdir(parents=True, exist_ok=True)
    reader = _Reader(directory, file_field, max_files)
    try:
        parser = MultipartParser(options[b"boundary"], reader.callbacks())
        received = 0
        async for chunk in chunks:
            received += len(chunk)
            if received > limit:
                raise ApiError(413, f"the upload is larger than {limit / 2**20:g} MiB (--max-upload-mb); "
                                    "it was cut off there")
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as error:
        raise ApiError(400, f"malformed multipart body ({error})") from None
    finally:
        reader.close()
    if not reader.ended:
        raise ApiError(400, "the multipart body ended before its closing boundary")
    if not reader.form.files:
        raise ApiError(400, f"no file in the request; send one or more {file_field!r} parts")
    return reader.form
