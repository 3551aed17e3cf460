"""raster.py: page ranges, input discovery, PDF/TIFF/image pages, and one-line errors for bad inputs."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

from vary_cli.convert import raster
from vary_cli.errors import InputError
from vary_cli.convert.raster import (PopplerMissingError, discover_inputs, open_document, parse_page_ranges,
                                     select_pages)

needs_poppler = pytest.mark.skipif(shutil.which("pdftoppm") is None or shutil.which("pdfinfo") is None,
                                   reason="poppler-utils not installed")

# (width, height) in PDF points at resolution 72: letter, a landscape strip, and a small square.
PAGE_SIZES = [(612, 792), (800, 300), (200, 200)]
COLORS = ["white", "red", "blue"]


def make_pdf(path: Path, sizes=PAGE_SIZES) -> Path:
    pages = [Image.new("RGB", size, color) for size, color in zip(sizes, COLORS)]
    pages[0].save(path, save_all=True, append_images=pages[1:], resolution=72)
    return path


def hand_made_pdf(path: Path, page_dict: bytes, trailer_extra: bytes = b"", extra_objects=()) -> Path:
    """A minimal one-page PDF written byte by byte, for features PIL cannot produce (/Rotate, /Encrypt)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               page_dict, *extra_objects]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1,
                                                                                trailer_extra, xref)
    path.write_bytes(bytes(out))
    return path


# --- page ranges -------------------------------------------------------------------------------------

def test_parse_page_ranges():
    assert parse_page_ranges("1-4,7") == [(1, 4), (7, 7)]
    assert parse_page_ranges(" 5- ") == [(5, None)]
    assert parse_page_ranges("3") == [(3, 3)]


@pytest.mark.parametrize("spec", ["", "a", "1-2-3", "0", "4-2", "1,,2", "-3", "1.5"])
def test_parse_page_ranges_rejects(spec):
    with pytest.raises(InputError, match="--pages"):
        parse_page_ranges(spec)


def test_select_pages_sorted_deduplicated_and_open_ended():
    assert select_pages(parse_page_ranges("7,1-3,2"), 10) == [1, 2, 3, 7]
    assert select_pages(parse_page_ranges("8-"), 10) == [8, 9, 10]
    assert select_pages(None, 3) == [1, 2, 3]


def test_select_pages_out_of_bounds_names_file_and_page_count():
    with pytest.raises(InputError) as info:
        select_pages(parse_page_ranges("4-6"), 5, "paper.pdf")
    message = str(info.value)
    assert "paper.pdf" in message and "4-6" in message and "5 pages" in message and "\n" not in message
    with pytest.raises(InputError, match="1 page$"):
        select_pages(parse_page_ranges("2-"), 1, "scan.png")


# --- discovery ---------------------------------------------------------------------------------------

def test_discover_inputs_recurses_sorted_and_skips_others(tmp_path):
    for rel in ["b/z.pdf", "b/a.PNG", "a/deep/er/x.tiff", "top.jpg", "notes.txt", ".vary-partial/p.pdf",
                "b/.hidden.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = discover_inputs([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/deep/er/x.tiff", "b/a.PNG", "b/z.pdf",
                                                                  "top.jpg"]


def test_discover_inputs_keeps_argument_order_and_drops_duplicates(tmp_path):
    (tmp_path / "d").mkdir()
    for name in ["d/1.pdf", "d/2.pdf", "solo.png"]:
        (tmp_path / name).write_bytes(b"x")
    found = discover_inputs([tmp_path / "solo.png", tmp_path / "d", tmp_path / "d" / "2.pdf"])
    assert [p.name for p in found] == ["solo.png", "1.pdf", "2.pdf"]


def test_discover_inputs_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        discover_inputs([tmp_path / "missing.pdf"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("hi")
    with pytest.raises(InputError, match="no PDF or image files"):
        discover_inputs([tmp_path / "empty"])


# --- PDFs --------------------------------------------------------------------------------------------

@needs_poppler
def test_pdf_pages_stream_one_at_a_time_with_short_side_at_least_1024(tmp_path, monkeypatch):
    doc = open_document(make_pdf(tmp_path / "three.pdf"))
    assert (doc.kind, doc.page_count, doc.is_single_image) == ("pdf", 3, False)
    calls = []
    real = raster.convert_from_path
    monkeypatch.setattr(raster, "convert_from_path", lambda *a, **k: calls.append(k) or real(*a, **k))
    pages = doc.iter_pages([1, 2, 3])
    number, image = next(pages)
    assert len(calls) == 1  # lazily rendered: nothing beyond the page asked for
    seen = [(number, image)] + list(pages)
    assert [n for n, _ in seen] == [1, 2, 3]
    assert [(k["first_page"], k["last_page"]) for k in calls] == [(1, 1), (2, 2), (3, 3)]
    for (number, image), (width, height), color in zip(seen, PAGE_SIZES, COLORS):
        assert image.mode == "RGB"
        assert min(image.size) >= 1024
        assert min(image.size) < 1040  # not rendered bigger than needed
        assert abs(image.size[0] / image.size[1] - width / height) < 0.01  # aspect kept
        expected = Image.new("RGB", (1, 1), color).getpixel((0, 0))
        got = image.getpixel((image.width // 2, image.height // 2))
        assert max(abs(a - b) for a, b in zip(got, expected)) <= 3  # PIL stores PDF pages as JPEG


@needs_poppler
def test_pdf_page_subset_and_out_of_range(tmp_path):
    doc = open_document(make_pdf(tmp_path / "three.pdf"))
    assert [n for n, _ in doc.iter_pages([3])] == [3]
    with pytest.raises(InputError, match="page 4 is out of range; the document has 3 pages"):
        list(doc.iter_pages([4]))


def test_dpi_caps_long_side_of_strip_pages():
    doc = raster.PdfDocument(Path("x.pdf"), 3, {1: (612, 792), 2: (100, 5000), 3: (0, 0)})
    assert 1024 <= 612 * doc.dpi_for(1) / 72 < 1030
    assert 5000 * doc.dpi_for(2) / 72 <= raster.MAX_LONG_SIDE
    assert doc.dpi_for(3) == raster.FALLBACK_DPI


@needs_poppler
def test_rotated_pdf_page_uses_rotated_size(tmp_path):
    path = hand_made_pdf(tmp_path / "rot.pdf", b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 900] /Rotate 90 >>")
    doc = open_document(path)
    assert doc.page_sizes[1] == (900.0, 300.0)
    (_, image), = doc.iter_pages()
    assert image.width > image.height and image.height >= 1024


@needs_poppler
def test_bad_pdfs_raise_one_line_input_errors(tmp_path):
    good = make_pdf(tmp_path / "good.pdf").read_bytes()
    cases = {
        "empty.pdf": (b"", "file is empty"),
        "text.pdf": (b"just some text, not a pdf\n", "not a PDF file"),
        "truncated.pdf": (good[: len(good) // 2], "corrupt or truncated PDF"),
        "garbage.pdf": (b"%PDF-1.4\n" + bytes(range(256)) * 4, "corrupt or truncated PDF"),
    }
    for name, (data, expected) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError) as info:
            open_document(tmp_path / name)
        assert expected in str(info.value) and name in str(info.value), name
        assert "\n" not in str(info.value)


@needs_poppler
def test_encrypted_pdf_says_decrypt_first(tmp_path):
    encrypt = b"<< /Filter /Standard /V 1 /R 2 /O <" + b"11" * 32 + b"> /U <" + b"22" * 32 + b"> /P -4 >>"
    path = hand_made_pdf(tmp_path / "locked.pdf", b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
                         trailer_extra=b"/Encrypt 4 0 R /ID [<%s> <%s>] " % (b"ab" * 16, b"ab" * 16),
                         extra_objects=[encrypt])
    with pytest.raises(InputError, match="encrypted with a password; decrypt it first"):
        open_document(path)


@needs_poppler
def test_pdf_with_image_suffix_is_read_as_pdf(tmp_path):
    path = tmp_path / "scan.png"
    path.write_bytes(make_pdf(tmp_path / "x.pdf").read_bytes())
    assert open_document(path).kind == "pdf"


def test_missing_poppler_gives_install_hint(tmp_path, monkeypatch):
    path = make_pdf(tmp_path / "doc.pdf")
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))  # pdfinfo cannot be found
    with pytest.raises(PopplerMissingError) as info:
        open_document(path)
    message = str(info.value)
    assert "apt-get install poppler-utils" in message and "brew install poppler" in message
    assert "doc.pdf" in message and isinstance(info.value, InputError)


def test_missing_pdftoppm_while_rendering_gives_install_hint(monkeypatch):
    from pdf2image.exceptions import PDFInfoNotInstalledError

    def missing(*args, **kwargs):
        raise PDFInfoNotInstalledError("Unable to get page count. Is poppler installed and in PATH?")

    monkeypatch.setattr(raster, "convert_from_path", missing)
    doc = raster.PdfDocument(Path("doc.pdf"), 1, {})
    with pytest.raises(PopplerMissingError, match="brew install poppler"):
        list(doc.iter_pages())


# --- images ------------------------------------------------------------------------------------------

def test_multipage_tiff_each_frame_is_a_page(tmp_path):
    frames = [Image.new("L", (300, 400), 0), Image.new("RGB", (500, 200), "red"), Image.new("1", (64, 64), 1)]
    path = tmp_path / "scan.tiff"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    doc = open_document(path)
    assert (doc.kind, doc.page_count, doc.is_single_image) == ("image", 3, False)
    pages = list(doc.iter_pages([3, 1, 2]))
    assert [n for n, _ in pages] == [3, 1, 2]
    assert [image.size for _, image in pages] == [(64, 64), (300, 400), (500, 200)]
    assert all(image.mode == "RGB" for _, image in pages)
    assert pages[2][1].getpixel((0, 0)) == (255, 0, 0)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".bmp", ".tif"])
def test_plain_image_is_one_page(tmp_path, suffix):
    path = tmp_path / f"page{suffix}"
    Image.new("RGB", (120, 80), "white").save(path)
    doc = open_document(path)
    assert (doc.kind, doc.page_count, doc.is_single_image) == ("image", 1, True)
    (number, image), = doc.iter_pages()
    assert number == 1 and image.size == (120, 80) and image.mode == "RGB"


def test_bad_images_raise_input_errors(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(InputError, match="not a PDF or an image"):
        open_document(tmp_path / "notes.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="file is empty"):
        open_document(tmp_path / "empty.jpg")
    with pytest.raises(InputError, match="no such file"):
        open_document(tmp_path / "gone.png")
    with pytest.raises(InputError, match="is a directory"):
        open_document(tmp_path)


def test_truncated_image_fails_when_its_page_is_read(tmp_path):
    path = tmp_path / "cut.png"
    Image.effect_noise((256, 256), 50).convert("RGB").save(path)
    path.write_bytes(path.read_bytes()[:400])
    try:
        doc = open_document(path)  # the header may still parse; decoding is what fails
    except InputError:
        return
    with pytest.raises(InputError, match="cut.png"):
        list(doc.iter_pages())


def test_module_does_not_import_torch_at_import_time():
    import subprocess

    code = ("import sys, vary_cli.convert.raster, vary_cli.render.document, vary_cli.convert.output; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
