"""stream.convert_document and `vary convert` on a tiny release-layout checkpoint: whole documents."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from vary_cli.convert import pipeline, stream
from vary_cli.models.checkpoint import load_directory
from vary_cli.cli.app import app
from vary_cli.engine.config import GenerationConfig
from vary_cli.errors import InputError
from vary_cli.convert.output import sidecar_path

GEN = GenerationConfig(max_new_tokens=6)


def make_pdf(path: Path, n_pages: int) -> Path:
    pages = []
    for i in range(n_pages):
        image = Image.new("RGB", (200, 260), (255 - 20 * i, 255, 255))
        ImageDraw.Draw(image).text((20, 20 + 10 * i), f"page {i + 1}", fill="black")
        pages.append(image)
    pages[0].save(path, save_all=True, append_images=pages[1:])
    return path


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    return load_directory(tiny_checkpoint, torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def pdf(tmp_path_factory):
    return make_pdf(tmp_path_factory.mktemp("docs") / "paper.pdf", 5)


def convert(loaded, source, output, **kw):
    kw.setdefault("prompt", "markdown")
    kw.setdefault("fmt", "jsonl")
    kw.setdefault("gen", GEN)
    return stream.convert_document(loaded, source, output, **kw)


def patch_encoder(loaded, monkeypatch, check):
    """Make `loaded.encode_inputs` call `check(colours)` first, with the red of pixel (5, 5) of each page it
    encodes (what tells the test pages apart), so a test can fail chosen pages."""
    colours = {}
    real_prepare, real_encode = loaded.prepare_page, loaded.encode_inputs

    def prepare(image, prompt="ocr"):
        inputs, ids = real_prepare(image, prompt)
        colours[id(inputs)] = image.getpixel((5, 5))[0]
        return inputs, ids

    def encode(inputs, vision_batch=None):
        check([colours[id(page)] for page in inputs])
        return real_encode(inputs, vision_batch)

    monkeypatch.setattr(loaded, "prepare_page", prepare)
    monkeypatch.setattr(loaded, "encode_inputs", encode)


def count_requests(monkeypatch) -> list:
    """Pages sent to the engine from now on (one entry each)."""
    made = []
    real = stream.page_request
    monkeypatch.setattr(stream, "page_request", lambda *a, **k: made.append(1) or real(*a, **k))
    return made


def records(text):
    return [json.loads(line) for line in text.splitlines()]


def test_every_batch_size_gives_batch_size_one(loaded, pdf):
    one = records(convert(loaded, pdf, None, batch_size=1)[1])
    for size in (2, 4):
        batched = records(convert(loaded, pdf, None, batch_size=size)[1])
        assert [r["text"] for r in batched] == [r["text"] for r in one]
        assert [r["tokens"] for r in batched] == [r["tokens"] for r in one]
    assert [r["page"] for r in one] == [1, 2, 3, 4, 5]


def test_page_ranges_and_their_errors(loaded, pdf):
    report, text = convert(loaded, pdf, None, pages=[(2, 3), (5, None)])
    assert [r["page"] for r in records(text)] == [2, 3, 5]
    with pytest.raises(InputError, match="5 pages"):
        convert(loaded, pdf, None, pages=[(4, 9)])


@pytest.mark.parametrize("fmt,marker", [("md", r"<!-- page (\d+) -->"), ("mmd", r"<!-- page (\d+) -->"),
                                        ("tex", r"% page (\d+)"), ("txt", None)])
def test_text_formats_have_splittable_page_markers(loaded, pdf, fmt, marker):
    _, text = convert(loaded, pdf, None, fmt=fmt, pages=[(1, 3)])
    if marker:
        assert re.findall(marker, text) == ["1", "2", "3"]
    else:
        assert text.count("\f") == 2


def test_a_looping_page_is_cut_and_marked(loaded, pdf, monkeypatch):
    real = stream.page_result

    def looping(loaded_, source, page, outcome):
        g = outcome.generation  # what a looping page model produces, run through the real guard
        from vary_cli.engine.guard import RepetitionGuard

        gen = GenerationConfig(max_new_tokens=6, repetition_span=30)
        guard = RepetitionGuard(gen.repetition_span, gen.repetition_max_period, gen.repetition_min_repeats)
        tokens = g.token_ids[:3] + [65, 66, 67] * 200
        for t in tokens:
            keep = guard.feed(t)
            if keep is not None:
                g.token_ids, g.finish_reason = tokens[:keep], "repetition"
                break
        return real(loaded_, source, page, outcome)

    monkeypatch.setattr(stream, "page_result", looping)
    report, text = convert(loaded, pdf, None, fmt="md", pages=[(1, 1)],
                           gen=GenerationConfig(max_new_tokens=6, repetition_span=30))
    assert report.results[0].finish_reason == "repetition"
    assert report.results[0].text.endswith("ABC") and "ABCABC" not in report.results[0].text
    assert "[REPETITION_CUT:1]" in text


def test_a_failing_page_is_retried_alone_then_marked_and_the_rest_survive(loaded, pdf, monkeypatch):
    calls = []

    def flaky(colours):
        calls.append(len(colours))
        if 255 - 20 * 2 in colours:  # page 3's colour
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    patch_encoder(loaded, monkeypatch, flaky)
    report, text = convert(loaded, pdf, None, batch_size=4)
    result = {r["page"]: r for r in records(text)}
    assert result[3]["finish_reason"] == "error" and "out of memory" in result[3]["error"]
    assert all(result[n]["finish_reason"] != "error" and result[n]["tokens"] for n in (1, 2, 4, 5))
    assert calls[:2] == [4, 1] and report.failed_pages == 1
    _, md = convert(loaded, pdf, None, fmt="md", batch_size=4)
    assert "[MISSING_PAGE_FAIL:3]" in md


def make_text_pdf(path: Path, n_pages: int) -> Path:
    """A PDF with a text layer (what a born-digital paper has), one line per page."""
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path), pagesize=(200, 260))
    for i in range(n_pages):
        pdf.drawString(20, 200, f"Layer text {i + 1}: 50% of $5 & x_1")
        pdf.showPage()
    pdf.save()
    return path


def test_text_layer_fallback_fills_failed_pages_only_when_asked(loaded, tmp_path, monkeypatch):
    pytest.importorskip("reportlab")
    source = make_text_pdf(tmp_path / "born_digital.pdf", 3)
    rendered = []

    def failing_page_two(colours):
        rendered.append(colours[0])
        if len(rendered) == 2:
            raise RuntimeError("CUDA out of memory")

    patch_encoder(loaded, monkeypatch, failing_page_two)
    report, md = convert(loaded, source, None, fmt="md", fallback="text-layer")
    assert report.failed_pages == 1 and report.results[1].finish_reason == "error"  # counted as the model left it
    assert "[TEXT_LAYER_FALLBACK:2]\n\nLayer text 2: 50% of \\$5 & x\\_1" in md and "MISSING_PAGE_FAIL" not in md
    assert "Layer text 1" not in md and "Layer text 3" not in md  # pages the model read keep its text
    rendered.clear()
    _, jsonl = convert(loaded, source, None, fmt="jsonl", fallback="text-layer")
    page_two = records(jsonl)[1]
    assert page_two["finish_reason"] == "text-layer" and page_two["error"].startswith("model: error: CUDA")
    rendered.clear()
    _, md = convert(loaded, source, None, fmt="md")
    assert "[MISSING_PAGE_FAIL:2]" in md and "Layer text" not in md  # off by default


def test_finished_outputs_are_skipped_unless_recompute(loaded, pdf, tmp_path):
    out = tmp_path / "paper.jsonl"
    first, _ = convert(loaded, pdf, out)
    assert out.is_file() and not sidecar_path(out).exists() and first.pages == 5
    again, _ = convert(loaded, pdf, out)
    assert again.skipped
    redo, _ = convert(loaded, pdf, out, recompute=True)
    assert not redo.skipped and redo.pages == 5


KILLER = """
import os, signal, sys, torch
from pathlib import Path
from vary_cli.convert import output
from vary_cli.convert import pipeline, stream
from vary_cli.models.checkpoint import load_directory
from vary_cli.engine.config import GenerationConfig
added = []
real_add = output.PageStore.add
def add(self, result):
    real_add(self, result)
    added.append(result.page)
    if len(added) == int(sys.argv[4]):
        os.kill(os.getpid(), signal.SIGKILL)
output.PageStore.add = add
generated = []
real_request = stream.page_request
def counting(*a, **k):
    generated.append(1)
    return real_request(*a, **k)
stream.page_request = counting
loaded = load_directory(Path(sys.argv[1]), torch.device("cpu"), torch.float32)
stream.convert_document(loaded, Path(sys.argv[2]), Path(sys.argv[3]), prompt="markdown", fmt="md",
                          gen=GenerationConfig(max_new_tokens=6), batch_size=1)
print("generated", len(generated))
"""


def test_kill_and_resume_equals_an_uninterrupted_run(tiny_checkpoint, pdf, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(KILLER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    killed = tmp_path / "killed.md"
    run = subprocess.run([sys.executable, str(script), str(tiny_checkpoint), str(pdf), str(killed), "3"],
                         env=env, capture_output=True, text=True)
    assert run.returncode == -9
    assert not killed.exists() and sidecar_path(killed).exists()
    resumed = subprocess.run([sys.executable, str(script), str(tiny_checkpoint), str(pdf), str(killed), "0"],
                             env=env, capture_output=True, text=True, check=True)
    assert "generated 2" in resumed.stdout  # only pages 4 and 5 were generated again
    whole = tmp_path / "whole.md"
    subprocess.run([sys.executable, str(script), str(tiny_checkpoint), str(pdf), str(whole), "0"],
                   env=env, capture_output=True, text=True, check=True)
    assert killed.read_text() == whole.read_text()
    assert not sidecar_path(killed).exists()


def test_cli_converts_good_documents_and_reports_bad_ones(tiny_checkpoint, pdf, tmp_path):
    docs = tmp_path / "in"
    (docs / "sub").mkdir(parents=True)
    make_pdf(docs / "sub" / "good.pdf", 2)
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\n garbage")
    Image.new("RGB", (50, 60), "white").save(docs / "scan.png")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["convert", str(docs), "--out-dir", str(out), "--model", str(tiny_checkpoint),
                                      "--max-new-tokens", "4", "--format", "md", "--batch-size", "2"])
    assert result.exit_code == 1, result.output
    assert (out / "sub" / "good.md").is_file() and (out / "scan.md").is_file()
    assert not (out / "broken.md").exists()
    assert "broken.pdf" in result.output and "Traceback" not in result.output
    assert "1 failed document(s)" in result.output


def test_cli_single_output_by_suffix_and_bad_flags(tiny_checkpoint, pdf, tmp_path):
    runner = CliRunner()
    target = tmp_path / "paper.tex"
    ok = runner.invoke(app, ["convert", str(pdf), "-o", str(target), "--model", str(tiny_checkpoint),
                             "--max-new-tokens", "3", "--pages", "2-3"])
    assert ok.exit_code == 0, ok.output
    tex = target.read_text()
    assert re.findall(r"% page (\d+)", tex) == ["2", "3"] and "\\begin{document}" in tex
    engine = re.match(r"% !TEX program = (\w+)", tex)
    engine = engine.group(1) if engine else "pdflatex"
    if shutil.which(engine):  # whatever the (random) model wrote, the document compiles
        run = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", target.name], cwd=tmp_path,
                             capture_output=True, text=True, errors="replace", timeout=120)
        assert run.returncode == 0, run.stdout[-2000:]
    bad = runner.invoke(app, ["convert", str(pdf), "-o", str(tmp_path / "x.md"), "--model", str(tiny_checkpoint),
                              "--pages", "7-9"])
    # A page range outside the document fails that document (exit 1), with the page count in one line.
    assert bad.exit_code == 1 and "5 pages" in bad.output and not (tmp_path / "x.md").exists()
    fallback = runner.invoke(app, ["convert", str(pdf), "--fallback", "ocr"])
    assert fallback.exit_code == 2 and "--fallback must be one of text-layer" in fallback.output
    missing = runner.invoke(app, ["convert", str(tmp_path / "nope.pdf")])
    assert missing.exit_code == 2 and len(missing.output.strip().splitlines()) == 1


def test_ctrl_c_exits_130_in_one_line_and_keeps_finished_pages(tiny_checkpoint, pdf, tmp_path, monkeypatch):
    from vary_cli.convert import output

    real_add = output.PageStore.add
    added = []

    def add_then_interrupt(self, result):
        real_add(self, result)
        added.append(result.page)
        if len(added) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(output.PageStore, "add", add_then_interrupt)
    target = tmp_path / "paper.md"
    result = CliRunner().invoke(app, ["convert", str(pdf), "-o", str(target), "--model", str(tiny_checkpoint),
                                      "--max-new-tokens", "3", "--batch-size", "1"])
    assert result.exit_code == 130
    assert result.output.strip().splitlines()[-1].startswith("interrupted")
    assert not target.exists()
    assert len(sidecar_path(target).read_text().splitlines()) == 1 + 2  # header + two finished pages


def test_default_batch_size_follows_free_memory(loaded, monkeypatch):
    monkeypatch.setattr(pipeline, "_free_memory", lambda device: None)
    assert pipeline.default_batch_size(loaded, 2048) == 1
    monkeypatch.setattr(pipeline, "_free_memory", lambda device: 64 * 2**30)
    assert pipeline.default_batch_size(loaded, 2048) == 8  # the CPU cap
    monkeypatch.setattr(pipeline, "_free_memory", lambda device: 2**20)
    assert pipeline.default_batch_size(loaded, 2048) == 1
    layers, width = len(loaded.model.layers), loaded.model.lm_head.in_features
    per_page = (2 * layers + 16) * width * (len(loaded.prompt_ids("ocr")) + 2048) * 4
    monkeypatch.setattr(pipeline, "_free_memory", lambda device: 2 * 3 * per_page)
    assert pipeline.default_batch_size(loaded, 2048) == 3


def test_a_rerun_retries_only_the_failed_pages(loaded, pdf, tmp_path, monkeypatch):
    out = tmp_path / "paper.md"
    def page_two_fails(colours):
        if 255 - 20 in colours:
            raise RuntimeError("boom")

    with monkeypatch.context() as patched:
        patch_encoder(loaded, patched, page_two_fails)
        first, _ = convert(loaded, pdf, out, fmt="md")
    assert first.failed_pages == 1 and "[MISSING_PAGE_FAIL:2]" in out.read_text()
    assert sidecar_path(out).exists()  # not finished: the failed page is still to do
    generated = count_requests(monkeypatch)
    second, _ = convert(loaded, pdf, out, fmt="md")
    assert generated == [1] and second.resumed_pages == 4 and second.failed_pages == 0
    assert "MISSING_PAGE_FAIL" not in out.read_text() and not sidecar_path(out).exists()
    assert out.read_text() == convert(loaded, pdf, None, fmt="md")[1]


def test_drafting_from_the_text_layer_changes_no_token(loaded, tmp_path):
    pytest.importorskip("reportlab")
    source = make_text_pdf(tmp_path / "born_digital.pdf", 3)
    from vary_cli.engine.config import DraftConfig

    gen = GenerationConfig(max_new_tokens=24)
    _, off = convert(loaded, source, None, gen=gen, draft=DraftConfig(mode="off"))
    for mode in ("auto", "text-layer", "ngram"):
        _, on = convert(loaded, source, None, gen=gen, batch_size=2, draft=DraftConfig(mode=mode))
        assert [(r["text"], r["tokens"]) for r in records(on)] == [(r["text"], r["tokens"]) for r in records(off)]
    assert all(r["forward_passes"] == r["tokens"] + (r["finish_reason"] == "stop") for r in records(off))


def test_cli_summary_gives_tokens_per_forward_pass(tiny_checkpoint, pdf, tmp_path):
    out = tmp_path / "paper.jsonl"
    result = CliRunner().invoke(app, ["convert", str(pdf), "-o", str(out), "--model", str(tiny_checkpoint),
                                      "--device", "cpu", "--max-new-tokens", "4", "--pages", "1-2", "--draft", "ngram"])
    assert result.exit_code == 0, result.output
    assert "tokens per forward pass" in result.stderr
    bad = CliRunner().invoke(app, ["convert", str(pdf), "--model", str(tiny_checkpoint), "--draft", "maybe"])
    assert bad.exit_code != 0 and "--draft must be one of" in bad.stderr
