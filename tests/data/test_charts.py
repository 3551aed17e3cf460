"""data/charts.py and `vary data charts`: targets are dict literals whose every value is drawn on the chart,
the same seed gives the same files with 1 or 2 workers, and --lang zh without a CJK font is one line."""

from __future__ import annotations

import ast
import json
import random

import pytest
from typer.testing import CliRunner

from vary_cli.cli.app import app
from vary_cli.data import charts
from vary_cli.data.charts import ChartSettings, build_figure, chart_spec, find_cjk_font, target
from vary_cli.train.dataset import read_samples

runner = CliRunner()


def _drawn_texts(figure) -> set[str]:
    texts = set()
    for axes in figure.axes:
        texts |= {t.get_text() for t in axes.texts}
        texts |= {t.get_text() for t in axes.get_xticklabels() + axes.get_yticklabels()}
        texts.add(axes.get_title("center") + axes.get_title("left"))
        legend = axes.get_legend()
        if legend:
            texts |= {t.get_text() for t in legend.get_texts()}
    return texts


@pytest.mark.parametrize("seed", range(12))
def test_targets_parse_as_dicts_and_every_value_is_drawn(seed):
    settings = ChartSettings(out=".", cjk_font=find_cjk_font())
    spec = chart_spec(settings, random.Random(seed))
    parsed = ast.literal_eval(target(spec))
    assert parsed == {"title": spec["title"], "data": spec["data"]}
    with charts._look(spec, settings.cjk_font):
        figure = build_figure(spec)
    drawn = _drawn_texts(figure)
    assert parsed["title"] in drawn
    data = parsed["data"]
    nested = isinstance(next(iter(data.values())), dict)
    for name, values in (data.items() if nested else [("", data)]):
        assert not name or name in drawn  # series names are in the legend
        for label, value in values.items():
            assert label in drawn
            shown = f"{value}%" if spec["kind"] == "pie" else str(value)
            assert shown in drawn, (spec["kind"], label, shown)
    if spec["kind"] == "pie":
        assert sum(data.values()) == pytest.approx(100.0)
    if spec["kind"] == "bar":  # bar lengths are the values themselves
        axes = figure.axes[0]
        lengths = [p.get_width() if spec["horizontal"] else p.get_height() for p in axes.patches]
        expected = [v for values in (data.values() if nested else [data]) for v in values.values()]
        assert lengths == pytest.approx(expected)


def test_every_kind_and_language_comes_up():
    settings = ChartSettings(out=".")
    specs = [chart_spec(settings, random.Random(seed)) for seed in range(60)]
    assert {s["kind"] for s in specs} == {"bar", "line", "pie", "composite"}
    assert {s["language"] for s in specs} == {"en", "zh"}
    assert "echarts" in {s["look"] for s in specs}


def test_one_and_two_workers_write_identical_charts(tmp_path):
    outs = []
    for workers in ("1", "2"):
        out = tmp_path / workers
        result = runner.invoke(app, ["data", "charts", "--count", "5", "--out", str(out), "--workers", workers,
                                     "--seed", "7"])
        assert result.exit_code == 0, result.output
        outs.append(out)
    assert (outs[0] / "data.jsonl").read_bytes() == (outs[1] / "data.jsonl").read_bytes()
    records = [json.loads(line) for line in (outs[0] / "data.jsonl").read_text().splitlines()]
    assert len(records) == 5 and len(read_samples(outs[0] / "data.jsonl")) == 5
    for record in records:
        assert (outs[0] / record["image"]).read_bytes() == (outs[1] / record["image"]).read_bytes()
        assert record["conversations"][0]["value"] == "<image>\nConvert this chart to python-dict"
        assert isinstance(ast.literal_eval(record["conversations"][1]["value"]), dict)
    other = runner.invoke(app, ["data", "charts", "--count", "2", "--out", str(tmp_path / "s8"), "--seed", "8",
                                "--workers", "1"])
    assert other.exit_code == 0
    assert (tmp_path / "s8" / "data.jsonl").read_text().splitlines()[0] != (outs[0] / "data.jsonl").read_text().splitlines()[0]


def test_a_corpus_gives_the_words(tmp_path):
    corpus = tmp_path / "words.txt"
    corpus.write_text(" ".join(f"zeta{chr(97 + i)}word" for i in range(20)))
    out = tmp_path / "out"
    result = runner.invoke(app, ["data", "charts", "--count", "3", "--out", str(out), "--lang", "en", "--corpus",
                                 str(corpus), "--workers", "1"])
    assert result.exit_code == 0, result.output
    for line in (out / "data.jsonl").read_text().splitlines():
        answer = ast.literal_eval(json.loads(line)["conversations"][1]["value"])
        assert "zeta" in answer["title"].lower()


def test_chinese_without_a_cjk_font_is_one_line_naming_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(charts, "find_cjk_font", lambda: "")
    result = runner.invoke(app, ["data", "charts", "--count", "1", "--out", str(tmp_path / "o"), "--lang", "zh"])
    assert result.exit_code == 2 and "fonts-noto-cjk" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
    bad = runner.invoke(app, ["data", "charts", "--count", "1", "--out", str(tmp_path / "o"), "--kinds", "radar",
                                "--lang", "en"])
    assert bad.exit_code == 2 and "--kinds" in bad.output
