"""Born-digital PDFs with the content drafting is meant for: prose, a table and a reference list.

`bench/make_readers.py` trains its reader checkpoints on these pages (with the repository's own
examples), and `bench/bench_draft.py` converts them. They are drawn with reportlab's platypus, as a
word processor would lay them out (justified paragraphs, a ruled table, a numbered list), in the PDF
standard fonts, so their text layer is what `vary data pdf` and `--draft text-layer` read.
"""

from __future__ import annotations

from pathlib import Path

from reportlab.lib import colors
from reportlab.lib.enums import TA_JUSTIFY
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

_STYLES = getSampleStyleSheet()
BODY = ParagraphStyle("body", parent=_STYLES["BodyText"], fontName="Times-Roman", fontSize=11, leading=14,
                      alignment=TA_JUSTIFY, spaceAfter=6)
HEADING = ParagraphStyle("heading", parent=_STYLES["Heading2"], fontName="Times-Bold", fontSize=13,
                         spaceBefore=8, spaceAfter=4)
TITLE = ParagraphStyle("title", parent=_STYLES["Title"], fontName="Times-Bold", fontSize=17)
REFERENCE = ParagraphStyle("reference", parent=BODY, fontSize=10, leading=12, leftIndent=18, firstLineIndent=-18,
                           alignment=0, spaceAfter=3)

PAPER = [
    ("title", "Reading Dense Documents with a Second Vision Vocabulary"),
    ("body", "Anna Lindqvist, Wei Zhang and Tomas Ortega"),
    ("heading", "Abstract"),
    ("body", "Large vision-language models read natural images well but struggle with dense documents, where "
             "a single page holds thousands of characters. We study a simple remedy: a second vision "
             "vocabulary, trained on rendered pages and charts, that runs beside the frozen CLIP encoder. "
             "On page-level optical character recognition the combined model lowers the normalized edit "
             "distance by more than half, while its answers to questions about natural images stay the same."),
    ("heading", "1 Introduction"),
    ("body", "Document understanding asks a model to turn a page into text that keeps its structure: "
             "headings, paragraphs, tables and formulas. Encoders trained on image-caption pairs compress "
             "a page into a few hundred tokens that describe it rather than transcribe it. A vocabulary "
             "trained to transcribe keeps the fine detail that such a task needs."),
    ("body", "Our contributions are threefold. First, we describe how the new vocabulary is trained with a "
             "small decoder. Second, we show how both vocabularies are merged into one language model. Third, "
             "we measure the result on documents, charts and natural images."),
    ("break", ""),
    ("heading", "2 Results"),
    ("body", "Table 1 compares the models on English pages. Each row gives the edit distance, the F1 score "
             "and the time per page on one GPU."),
    ("table", [["Model", "Edit distance", "F1", "Seconds"],
               ["CLIP only", "0.412", "0.631", "2.1"],
               ["New vocabulary", "0.118", "0.902", "2.3"],
               ["Both, frozen CLIP", "0.092", "0.927", "2.6"],
               ["Both, tuned", "0.089", "0.931", "2.6"]]),
    ("body", "The new vocabulary accounts for most of the gain; tuning CLIP as well adds little."),
    ("heading", "References"),
    ("reference", "[1] A. Radford, J. W. Kim, C. Hallacy et al. Learning transferable visual models from natural "
                  "language supervision. In ICML, 2021."),
    ("reference", "[2] A. Kirillov, E. Mintun, N. Ravi et al. Segment anything. In ICCV, 2023."),
    ("reference", "[3] J. Bai, S. Bai, Y. Chu et al. Qwen technical report. arXiv:2309.16609, 2023."),
    ("reference", "[4] L. Blecher, G. Cucurull, T. Scialom and R. Stojnic. Nougat: neural optical understanding "
                  "for academic documents. arXiv:2308.13418, 2023."),
]

REPORT = [
    ("title", "Quarterly Operations Report"),
    ("heading", "Summary"),
    ("body", "Shipments rose in every region this quarter, led by the north, where the new warehouse opened "
             "in the second month. Returns fell slightly. The table below lists shipments and returns by "
             "region, in thousands of units."),
    ("table", [["Region", "Shipments", "Returns", "Change"],
               ["North", "412", "9", "+18%"],
               ["South", "380", "11", "+6%"],
               ["East", "295", "7", "+4%"],
               ["West", "331", "8", "+9%"]]),
    ("heading", "Next steps"),
    ("body", "The team will extend the evening shift in the south and move two loading bays to the east site "
             "before the end of the year. Costs for both steps are within the approved budget."),
]


def _flowables(blocks):
    out = []
    for kind, content in blocks:
        if kind == "break":
            out.append(PageBreak())
        elif kind == "table":
            table = Table(content, hAlign="LEFT", colWidths=[120, 90, 60, 60])
            table.setStyle(TableStyle([("FONT", (0, 0), (-1, -1), "Times-Roman", 10),
                                       ("FONT", (0, 0), (-1, 0), "Times-Bold", 10),
                                       ("LINEABOVE", (0, 0), (-1, 0), 1, colors.black),
                                       ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.black),
                                       ("LINEBELOW", (0, -1), (-1, -1), 1, colors.black)]))
            out += [table, Spacer(1, 8)]
        else:
            out.append(Paragraph(content, {"title": TITLE, "heading": HEADING, "body": BODY,
                                           "reference": REFERENCE}[kind]))
    return out


def write_pdf(path: Path, blocks) -> Path:
    """Lay `blocks` ((kind, content) pairs) out on A4 pages in `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    SimpleDocTemplate(str(path), pagesize=A4, title=path.stem, author="vary-cli bench").build(_flowables(blocks))
    return path


def write_corpus(folder: Path) -> list[Path]:
    """paper.pdf (2 pages: prose; a table and a reference list) and report.pdf (1 page: prose and a table)."""
    return [write_pdf(folder / "paper.pdf", PAPER), write_pdf(folder / "report.pdf", REPORT)]
