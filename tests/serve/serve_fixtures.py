"""Documents for the server's tests (good, broken, hostile) and a polling helper; also used by bench/bench_serve.py."""

from __future__ import annotations

import io
import struct
import time
import zlib

from PIL import Image, ImageDraw


def pdf_bytes(n_pages: int, shade: int = 0) -> bytes:
    """A PDF whose pages differ (colour and text), as the convert tests make them."""
    pages = []
    for i in range(n_pages):
        image = Image.new("RGB", (200, 260), (255 - 20 * i - shade, 255, 255))
        ImageDraw.Draw(image).text((20, 20 + 10 * i), f"page {i + 1}", fill="black")
        pages.append(image)
    buffer = io.BytesIO()
    pages[0].save(buffer, format="PDF", save_all=True, append_images=pages[1:])
    return buffer.getvalue()


def png_bytes(size=(60, 80), colour=(200, 230, 255)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def png_bomb(side: int = 40000) -> bytes:
    """A tiny PNG whose header claims side x side pixels (Pillow refuses it as a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def encrypted_pdf_bytes() -> bytes:
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, encrypt="secret")
    pdf.drawString(72, 720, "locked")
    pdf.save()
    return buffer.getvalue()


def wait_for(predicate, timeout: float = 30.0, every: float = 0.02):
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")
