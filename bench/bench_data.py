"""Data-engine benchmark: PDF pages/s and charts/s of `vary data` with a process pool.

Writes a corpus of dense PDFs with reportlab (A4, two columns of 10 pt justified text, about 4,000
characters a page: an arXiv-like page), then runs the engine exactly as `vary data pdf` and `vary data
charts` do (data/writer.py run_items with the pdf_pages / charts work functions) and times from the
first item to the last (the one-off check of data.jsonl with `vary train`'s reader is left out).
Also times one page's steps in this process: reading the text layer, rendering at 1024 px, JPEG.

    python bench/bench_data.py                      # 2 workers, 40 pages, 40 charts
    python bench/bench_data.py --workers 8 --pages 400 --charts 200
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def write_corpus(directory: Path, pages: int, per_pdf: int = 10) -> list[Path]:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import BaseDocTemplate, Frame, PageTemplate, Paragraph

    from vary_cli.data.charts import shipped_words

    words = shipped_words("en")
    rng = random.Random(0)
    style = getSampleStyleSheet()["BodyText"]
    style.alignment = 4  # justified
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(0, pages, per_pdf):
        path = directory / f"doc{number // per_pdf:03d}.pdf"
        doc = BaseDocTemplate(str(path), pagesize=A4)
        width = (doc.width - 18) / 2
        frames = [Frame(doc.leftMargin, doc.bottomMargin, width, doc.height),
                  Frame(doc.leftMargin + width + 18, doc.bottomMargin, width, doc.height)]
        doc.addPageTemplates([PageTemplate(frames=frames)])
        story = []
        while len(story) < 12 * min(per_pdf, pages - number):
            sentence = " ".join(rng.choice(words) for _ in range(rng.randint(40, 90)))
            story.append(Paragraph(sentence.capitalize() + ".", style))
        doc.build(story)
        paths.append(path)
    return paths


class Timer:
    def start(self, total: int, done: int) -> None:
        self.total, self.began, self.last = total, time.perf_counter(), None

    def advance(self, n: int = 1) -> None:
        self.last = time.perf_counter()

    @property
    def seconds(self) -> float:
        return (self.last or self.began) - self.began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--charts", type=int, default=40)
    args = parser.parse_args()

    import pypdfium2 as pdfium

    from vary_cli.convert.shard import Shard
    from vary_cli.data.charts import ChartSettings, chart_items, find_cjk_font, make_chart
    from vary_cli.data.pdf_pages import PdfSettings, close_documents, find_pdfs, list_pages, make_page
    from vary_cli.convert.pdf_text import page_chars, page_text
    from vary_cli.data.writer import run_items

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_corpus(root / "corpus", args.pages)
        docs = find_pdfs([root / "corpus"])
        items, _ = list_pages(docs, None, Shard())

        # One page, step by step, in this process.
        document = pdfium.PdfDocument(str(docs[0][1]))
        page = document[0]
        began = time.perf_counter()
        for _ in range(5):
            textpage = page.get_textpage()
            text = page_text(page_chars(textpage))
            textpage.close()
        read = (time.perf_counter() - began) / 5
        began = time.perf_counter()
        image = page.render(scale=1024.5 / max(page.get_size())).to_pil()
        render = time.perf_counter() - began
        import io

        began = time.perf_counter()
        image.save(io.BytesIO(), format="JPEG", quality=90)
        encode = time.perf_counter() - began
        page.close()
        document.close()
        print(f"one page: {text.chars} characters; text layer + reading order {read * 1000:.0f} ms, "
              f"render {image.size[0]}x{image.size[1]} {render * 1000:.0f} ms, JPEG {encode * 1000:.0f} ms")

        timer = Timer()
        settings = PdfSettings(out=str(root / "pdf"))
        summary = run_items("pdf", items, partial(make_page, settings), root / "pdf", seed=0, workers=args.workers,
                            shard=Shard(), settings=settings.manifest(), progress=timer)
        close_documents()
        print(f"pdf: {summary.records}/{len(items)} pages in {timer.seconds:.2f} s = "
              f"{len(items) / timer.seconds:.1f} pages/s with {args.workers} workers")

        timer = Timer()
        settings = ChartSettings(out=str(root / "charts"), cjk_font=find_cjk_font())
        languages = settings.languages if settings.cjk_font else ("en",)
        settings = ChartSettings(out=settings.out, languages=languages, cjk_font=settings.cjk_font)
        summary = run_items("charts", chart_items(args.charts), partial(make_chart, settings), root / "charts",
                            seed=0, workers=args.workers, shard=Shard(), settings=settings.manifest(), progress=timer)
        print(f"charts: {summary.records} in {timer.seconds:.2f} s = {args.charts / timer.seconds:.1f} charts/s "
              f"with {args.workers} workers ({', '.join(languages)})")


if __name__ == "__main__":
    main()
