"""`--fallback text-layer`: a PDF's own text for the pages the model could not read (olmOCR's pattern).

`stream.convert_many` calls `fill_from_text_layer` on the finished pages before rendering.
A page whose generation failed (`finish_reason` "error") or looped (cut by the repetition guard) is
replaced by the PDF's own text in reading order (pdf_text.py, the same text `vary data pdf` trains
on), with `finish_reason` "text-layer" so every
format marks it `[TEXT_LAYER_FALLBACK:N]`; the model's outcome is kept in `error`. A page with no
text layer (a scan) keeps the model's result. The resume store is untouched: the next run still
retries the failed pages with the model.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

from .pdf_text import page_chars, page_text as text_in_reading_order
from ..render.results import PageResult

FALLBACK_REASONS = ("error", "repetition")


def page_text(path: Path, number: int) -> str:
    """The text layer of 1-based page `number` of a PDF ('' where there is none or it cannot be read)."""
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError:
        return ""
    try:
        if not 1 <= number <= len(pdf):
            return ""
        page = pdf[number - 1]
        textpage = page.get_textpage()
        try:
            return text_in_reading_order(page_chars(textpage)).text
        finally:
            textpage.close()
            page.close()
    except pdfium.PdfiumError:
        return ""
    finally:
        pdf.close()


def fill_from_text_layer(results: Sequence[PageResult], source: Path) -> list[PageResult]:
    """`results` with each failed or looping PDF page that has a text layer replaced by that text."""
    filled = []
    for result in results:
        text = page_text(source, result.page) if result.page and result.finish_reason in FALLBACK_REASONS else ""
        if not text.strip():
            filled.append(result)
            continue
        outcome = result.finish_reason + (f": {result.error}" if result.error else "")
        filled.append(replace(result, text=text, finish_reason="text-layer", error=f"model: {outcome}"))
    return filled
