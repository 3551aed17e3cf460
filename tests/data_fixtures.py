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


BODY = ["Reading order is what a reader would follow on the page,", "line after line and column after column,",
        "with every word of it kept in place."]
BODY_TEXT = " ".join(BODY)


def rotated_page(c: canvas.Canvas) -> str:
    """A landscape page stored portrait with /Rotate 90: every glyph is turned a quarter in page space, so
    only the page's own direction says what is upright. Its margin stamp runs across that direction."""
    c.setPageRotation(90)
    c.saveState()
    c.translate(WIDTH, 0)
    c.rotate(90)  # the landscape frame: x along the page's long side
    c.setFont(FONT, 11)
    for i, line in enumerate(BODY):
        c.drawString(72, WIDTH - 90 - 14 * i, line)
    c.restoreState()
    c.saveState()
    c.setFont(FONT, 9)
    c.drawString(60, 40, "arXiv:2312.06109v1 stamp")  # upright in page space: across the text
    c.restoreState()
    c.showPage()
    return BODY_TEXT


def skewed_page(c: canvas.Canvas) -> str:
    """Lines drawn turned by 0.2 rad, as a skewed scan's text layer is."""
    c.saveState()
    c.translate(72, HEIGHT / 2)
    c.rotate(0.2 * 180 / 3.141592653589793)
    c.setFont(FONT, 11)
    for i, line in enumerate(BODY):
        c.drawString(0, -14 * i, line)
    c.restoreState()
    c.showPage()
    return BODY_TEXT


def no_space_page(c: canvas.Canvas) -> str:
    """Every word placed on its own with half a space between, and no space glyph in the whole page, in
    font size 1.1 under a x10 matrix: only the gaps, measured in the size as drawn, say where words end."""
    c.saveState()
    c.scale(10, 10)
    c.setFont(FONT, 1.1)
    space = c.stringWidth(" ", FONT, 1.1)
    for i, line in enumerate(BODY):
        x = 7.2
        for word in line.split():
            c.drawString(x, (HEIGHT - 90 - 14 * i) / 10, word)
            x += c.stringWidth(word, FONT, 1.1) + 0.5 * space
    c.restoreState()
    c.showPage()
    return BODY_TEXT


GRID = [["Box one opens the grid.", "It has two lines."], ["Box two sits to its right.", "Also two lines."],
        ["Box three starts row two.", "Under box one."], ["Box four ends the grid.", "Under box two."]]


def grid_page(c: canvas.Canvas) -> str:
    """A 2 x 2 grid of numbered boxes, rows far apart: read 1, 2, 3, 4 (rows), not 1, 3, 2, 4 (columns)."""
    c.setFont(FONT, 10)
    for number, lines in enumerate(GRID):
        x, top = 72 + 250 * (number % 2), HEIGHT - 100 - 200 * (number // 2)
        c.rect(x - 8, top - 40, 220, 60)
        for i, line in enumerate(lines):
            c.drawString(x, top - 14 * i, line)
    c.showPage()
    return "\n\n".join(" ".join(lines) for lines in GRID)


def accent_page(c: canvas.Canvas) -> str:
    """Accents drawn as glyphs of their own over the letter, as TeX does ("Min´a´c"): before the letter in
    the stream (TeX's order) and after the whole word (other tools' order)."""
    c.setFont(FONT, 12)
    y, x = HEIGHT - 100, 72.0

    def put(text: str) -> float:
        c.drawString(x, y, text)
        return c.stringWidth(text, FONT, 12)

    def over(accent: str, letter_x: float, letter: str) -> None:
        width = c.stringWidth(letter, FONT, 12) - c.stringWidth(accent, FONT, 12)
        c.drawString(letter_x + width / 2, y + 1, accent)

    x += put("We thank J")
    over("\u00b4", x, "a")
    x += put("a")
    x += put("n Min")
    a_at = x
    x += put("a")
    c_at = x
    x += put("c for his help.")
    over("\u00b4", a_at, "a")  # drawn after the word
    over("\u02c7", c_at, "c")
    c.showPage()
    return "We thank J\u00e1n Min\u00e1\u010d for his help."


def hyphen_page(c: canvas.Canvas) -> str:
    """Line-end hyphens: a word cut in two ("differ-" "ent") joins; a compound ("problem-" "solving") keeps it."""
    c.setFont(FONT, 11)
    for i, line in enumerate(["The results of this method differ-", "ent from those of other problem-",
                              "solving methods in a few ways."]):
        c.drawString(72, HEIGHT - 90 - 14 * i, line)
    c.showPage()
    return "The results of this method different from those of other problem-solving methods in a few ways."


def scaled_matrix_page(c: canvas.Canvas) -> str:
    """The same lines drawn once with font size 1.1 under a x10 matrix and once with size 110 under x0.1:
    the size read from the font alone is off by 10x either way."""
    for scale, size, top in ((10.0, 1.1, HEIGHT - 90), (0.1, 110.0, HEIGHT - 300)):
        c.saveState()
        c.scale(scale, scale)
        c.setFont(FONT, size)
        for i, line in enumerate(BODY):
            c.drawString(72 / scale, (top - 14 * i) / scale, line)
        c.restoreState()
    c.showPage()
    return BODY_TEXT + "\n\n" + BODY_TEXT


def running_head_page(c: canvas.Canvas) -> str:
    """A running head, the body and a page number: all of it is in the image, so all of it is in the text."""
    c.setFont(FONT, 8)
    c.drawString(72, HEIGHT - 40, "Journal of Reading Order 12 (2026)")
    c.setFont(FONT, 11)
    for i, line in enumerate(BODY):
        c.drawString(72, HEIGHT - 100 - 14 * i, line)
    c.setFont(FONT, 8)
    c.drawString(WIDTH / 2, 30, "7")
    c.showPage()
    return "Journal of Reading Order 12 (2026)\n\n" + BODY_TEXT + "\n\n7"


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
