"""Makes examples/serve/page.png: `vary serve`'s web page after converting examples/sample.pdf.

    python examples/serve/make_screenshot.py

The server runs in this process over the tests' fake engine with canned page texts (Mathpix Markdown with
a formula and a table, as Vary writes them), since no real weights can be assumed here; everything else
(the page, the rendering to HTML and MathML, the events) is the real server. Needs the system's Chromium
and Playwright.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "serve")]

PAGES = [
    "## 1 Introduction\n\nVary scales up the vision vocabulary of a large vision-language model. Trained on a page "
    "of \\(n\\) image tokens \\(v\\), the model minimises\n\n\\[\n\\mathcal{L}(\\theta) = -\\sum_{t=1}^{T} "
    "\\log p_{\\theta}\\left(x_{t} \\mid x_{<t}, v\\right)\n\\]\n\nwhere the new vocabulary gives 256 tokens per page.",
    "## 2 Results\n\n\\begin{tabular}{|l|c|c|}\n\\hline Method & Edit distance & F1 \\\\\n\\hline Nougat & 0.255 & "
    "74.5 \\\\\n\\hline Vary & 0.082 & 91.3 \\\\\n\\hline\n\\end{tabular}\n\nThe gain holds for every "
    "\\(\\alpha \\geq 0.5\\).",
]


def canned(image, prompt: str) -> str:
    from PIL import ImageStat

    # sample.pdf's first page holds more text (is darker) than its second.
    return PAGES[0] if ImageStat.Stat(image.convert("L")).mean[0] < 253.5 else PAGES[1]


def main() -> None:
    from playwright.sync_api import expect, sync_playwright

    from fake_engine import FakeBackend
    from live_server import ThreadServer
    from vary_cli.serve.app import create_app
    from vary_cli.serve.config import ServeConfig
    from vary_cli.serve.service import Service

    class Canned(FakeBackend):
        def info(self) -> dict:
            return {"model": "canned page texts", "device": "cpu", "dtype": "float32"}

    with tempfile.TemporaryDirectory() as tmp:
        service = Service(ServeConfig(jobs_dir=Path(tmp) / "jobs"), [Canned(batch_size=2, text=canned)])
        with ThreadServer(create_app(service)) as server, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{server.url}/")
            page.set_input_files("#files", str(ROOT / "examples" / "sample.pdf"))
            expect(page.locator("#state")).to_contain_text("done", timeout=60_000)
            page.wait_for_timeout(300)
            page.screenshot(path=str(ROOT / "examples" / "serve" / "page.png"), full_page=True)
            browser.close()


if __name__ == "__main__":
    main()
