"""PDFs with known text for the `vary data` tests, written with reportlab at known positions.

Each page maker draws its lines where a reader would expect them and returns the text a correct
reading gives: paragraphs separated by a blank line, ligatures spelled out, hyphenated breaks joined.
DejaVu Sans (shipped with matplotlib) is embedded so the ligature glyphs have Unicode in the PDF.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
from PIL import Image, ImageDraw
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

FONT = "DejaVuSans"
pdfmetrics.registerFont(TTFont(FONT, str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")))
WIDTH, HEIGHT = A4

ONE_COLUMN_TITLE = "Reading order matters"
ONE_COLUMN = [
    ["The \ufb01rst paragraph starts here and its words", "run over two lines with a hyphen-",
     "ated word in the middle of it."],
    ["A second paragraph follows after a blank line.", "It ends the page with a \ufb02ourish and    spaces."],
]
ONE_COLUMN_TEXT = (
    "Reading order matters\n\n"
    "The first paragraph starts here and its words run over two lines with a hyphenated word in the middle of it."
    "\n\nA second paragraph follows after a blank line. It ends the page with a flourish and spaces.")

LEFT = [["Left column text opens the body.", "It has a second line here."], ["Then a new left paragraph.",
                                                                             "Its last line ends it."]]
RIGHT = [["Right column comes after the left.", "Its lines sit beside the left ones."],
         ["The final paragraph on the right.", "Nothing follows it on the page."]]
TWO_COLUMN_TITLE = "A Title Across Both Columns Of The Page"
TWO_COLUMN_TEXT = "\n\n".join([TWO_COLUMN_TITLE] + [" ".join(p) for p in LEFT + RIGHT])


def _paragraph_lines(paragraphs: list[list[str]], top: float, leading: float = 14) -> list[tuple[float, str]]:
    """(baseline, text) of each line, with one empty line between paragraphs."""
    placed, y = [], top
    for paragraph in paragraphs:
        for line in paragraph:
            placed.append((y, line))
            y -= leading
        y -= leading
    return placed


def one_column_page(c: canvas.Canvas) -> str:
    c.setFont(FONT, 18)
    c.drawString(72, HEIGHT - 72, ONE_COLUMN_TITLE)
    c.setFont(FONT, 11)
    for y, line in _paragraph_lines(ONE_COLUMN, HEIGHT - 110):
        c.drawString(72, y, line)
    c.showPage()
    return ONE_COLUMN_TEXT


def two_column_page(c: canvas.Canvas) -> str:
    """Two columns drawn row by row (left line, right line, ...), so only geometry gives the order."""
    c.setFont(FONT, 16)
    c.drawString(72, HEIGHT - 72, TWO_COLUMN_TITLE)
    c.setFont(FONT, 10)
    left, right = _paragraph_lines(LEFT, HEIGHT - 110), _paragraph_lines(RIGHT, HEIGHT - 110)
    for (y_left, text_left), (y_right, text_right) in zip(left, right):
        c.drawString(72, y_left, text_left)
        c.drawString(320, y_right, text_right)
    c.showPage()
    return TWO_COLUMN_TEXT


CHINESE = [["视觉词表的扩展让模型能够读懂", "密集的文档页面和图表。"], ["第二段从这里开始。"]]
CHINESE_TEXT = "视觉词表的扩展让模型能够读懂密集的文档页面和图表。\n\n第二段从这里开始。"


def chinese_page(c: canvas.Canvas) -> str:
    """Chinese in one of the PDF standard CID fonts: no spaces, so lines join without one."""
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    c.setFont("STSong-Light", 12)
    for y, line in _paragraph_lines(CHINESE, HEIGHT - 90, leading=16):
        c.drawString(72, y, line)
    c.showPage()
    return CHINESE_TEXT


def scanned_page(c: canvas.Canvas) -> None:
    """A page that is one picture of text: no text layer at all."""
    picture = Image.new("RGB", (600, 800), "white")
    ImageDraw.Draw(picture).text((40, 40), "This text is only pixels.", fill="black")
    c.drawImage(ImageReader(picture), 0, 0, WIDTH, HEIGHT)
    c.showPage()


def write_pdf(path: Path, pages, **canvas_options) -> list[str | None]:
    """Write the pages (makers above) into `path`; their expected texts (None for a scanned page)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    c = canvas.Canvas(str(path), pagesize=A4, **canvas_options)
    texts = [page(c) for page in pages]
    c.save()
    return texts


def sample_corpus(directory: Path) -> dict[str, list[str | None]]:
    """A folder with a good PDF (text, two columns, scanned), another good one, a broken and an encrypted PDF."""
    directory.mkdir(parents=True, exist_ok=True)
    texts = {"good.pdf": write_pdf(directory / "good.pdf", [one_column_page, two_column_page, scanned_page]),
             "more.pdf": write_pdf(directory / "sub" / "more.pdf", [two_column_page, one_column_page])}
    (directory / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage\n")
    write_pdf(directory / "locked.pdf", [one_column_page], encrypt="secret")
    return texts
