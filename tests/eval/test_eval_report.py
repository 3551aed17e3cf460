"""The HTML report is self-contained and renders in headless Chromium (Debian's `chromium`)."""

import json
import re
import shutil
import subprocess

import pytest
from PIL import Image

from vary_cli.eval.report import char_diff, render_report
from vary_cli.eval.score import score_files

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture
def report(tmp_path):
    """A Fox-layout benchmark of three pages, one image each, scored against a prediction directory."""
    (tmp_path / "en_pdf_png").mkdir()
    pages = {"en_1": "The quick brown fox", "en_2": "Hello <world> & friends", "en_3": "Chapter one begins"}
    records = []
    for name, text in pages.items():
        Image.new("RGB", (60, 80), "white").save(tmp_path / "en_pdf_png" / f"{name}.png")
        records.append({"image": f"{name}.png", "conversations": [{"from": "human", "value": "<image>\nOCR"},
                                                                  {"from": "gpt", "value": text}]})
    (tmp_path / "en_page_ocr.json").write_text(json.dumps(records))
    pred = tmp_path / "pred"
    pred.mkdir()
    for name, text in {"en_1": "The quick brown fox", "en_2": "Hello <word> and friends", "en_3": "Chapter"}.items():
        (pred / f"{name}.md").write_text(text)
    return score_files(pred, tmp_path / "en_page_ocr.json", with_meteor=False)


def test_char_diff_marks_and_escapes():
    left, right = char_diff("a<b>c", "a<x>c")
    assert left == "a&lt;<del>b</del>&gt;c" and right == "a&lt;<ins>x</ins>&gt;c"


def test_report_is_self_contained_worst_first_with_images(report):
    page = render_report(report, "t")
    assert not re.search(r"(src|href)=['\"]https?:", page)  # nothing from the network
    keys = re.findall(r"data-key='([^']+)'", page)
    assert keys == ["en_3", "en_2", "en_1"]  # worst edit distance first
    assert page.count("data:image/jpeg;base64,") == 3 and "<svg class='histogram'" in page
    assert "Hello <world>" not in page and "Hello &lt;" in page


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium for the headless rendering check")
def test_report_renders_in_headless_chromium(report, tmp_path):
    path = tmp_path / "report.html"
    path.write_text(render_report(report, "vary eval"), encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", path.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert dom.count("class=\"page\"") == 3 and dom.count("<rect") == 10 and "<del>" in dom
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1000,800", path.as_uri()],
                   capture_output=True, timeout=120)
    with Image.open(shot) as image:
        assert image.size == (1000, 800)
        colors = image.convert("RGB").getcolors(1 << 20)
        assert colors is not None and len(colors) > 10  # something was drawn, not a blank page
