"""The web page at `/` in a real browser (Playwright driving the system's Chromium): upload a PDF, watch its
pages appear beside their images, see the math typeset as MathML, switch views, download the Markdown.

The server runs in this process over the fake engine, whose pages hold a formula and a table (a tiny
random checkpoint writes neither). Skipped where Chromium or Playwright is missing; Playwright's own
browser download is never used.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from serve_fixtures import pdf_bytes
from fake_engine import FakeBackend
from live_server import ThreadServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs the system's Chromium (apt-get install chromium)")

TOKEN = "page-token"


def page_markdown(image, prompt: str) -> str:
    """What the fake model writes for a page: a heading, Mathpix math and a table."""
    grey = sum(image.convert("L").resize((4, 4)).tobytes()) // 16
    return (f"## Page grey {grey}\n\nThe energy \\(E = mc^{{2}}\\) and\n\n\\[\n\\frac{{a}}{{b+{grey}}}\n\\]\n\n"
            "\\begin{tabular}{|c|c|}\n\\hline x & y \\\\\n\\hline 1 & 2 \\\\\n\\hline\n\\end{tabular}")


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def test_upload_watch_pages_and_download_markdown(browser, tmp_path):
    from vary_cli.serve.app import create_app
    from vary_cli.serve.config import ServeConfig
    from vary_cli.serve.service import Service

    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(pdf_bytes(3))
    service = Service(ServeConfig(jobs_dir=tmp_path / "jobs", model_name="vary-test", token=TOKEN),
                      [FakeBackend(batch_size=2, step_seconds=0.005, text=page_markdown)])
    with ThreadServer(create_app(service)) as server:
        page = browser.new_page(accept_downloads=True)
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{server.url}/#token={TOKEN}")  # the fragment gives the page its token; it is never sent
        assert page.url == f"{server.url}/"
        page.set_input_files("#files", str(pdf))
        expect = pytest.importorskip("playwright.sync_api").expect
        expect(page.locator("#pages .page")).to_have_count(3, timeout=60_000)
        expect(page.locator("#state")).to_contain_text("done: 3 of 3", timeout=60_000)

        cards = page.locator("#pages .page")
        assert [cards.nth(i).locator("h2.title").inner_text() for i in range(3)] == [
            f"paper.pdf · page {n}" for n in (1, 2, 3)]
        # The page images loaded, and the math is MathML the browser lays out (not $...$ text).
        assert page.evaluate("[...document.querySelectorAll('#pages img')].every(i => i.complete && i.naturalWidth > 0)")
        assert page.locator("#pages math").count() == 6
        assert page.locator("#pages math[display=block] mfrac").count() == 3
        assert page.evaluate("document.querySelector('#pages math').getBoundingClientRect().width") > 0
        assert page.locator("#pages table th").count() == page.locator("#pages table td").count() == 6
        assert "$" not in page.locator("#pages .text").first.inner_text()

        page.click("button[data-view=mmd]")
        assert "\\begin{tabular}" in page.locator("#pages pre").first.inner_text()
        page.click("button[data-view=tex]")
        assert "\\frac{a}" in page.locator("#pages pre").first.inner_text()
        page.click("button[data-view=html]")
        assert page.locator("#pages math").count() == 6

        with page.expect_download() as download_info:
            page.click("#downloads button[data-format=md]")
        download = download_info.value
        assert download.suggested_filename == "paper.md"
        job = next(iter(service.jobs.jobs))
        api = httpx.get(f"{server.url}/v1/jobs/{job}/result?format=md", headers={"Authorization": f"Bearer {TOKEN}"})
        assert Path(download.path()).read_bytes() == api.content and b"<!-- page 3 -->" in api.content
        assert errors == []
