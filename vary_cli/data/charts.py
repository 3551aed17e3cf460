"""`vary data charts`: bar, line, pie and composite charts drawn with matplotlib, their data as the target.

Vary §3.2.2 renders charts with matplotlib and pyecharts and asks "Convert this chart to python-dict"
for the data. Each chart here comes from its own seed: `chart_spec` draws a kind, a language (en or
zh), a title and labels from the word list shipped with the package (words_en.txt, words_zh.txt) or
the user's `--corpus`, plausible values and a look (a matplotlib style, or pyecharts' palette and
flat axes, drawn without a browser), and `draw` renders it with the Agg backend. Every value is
written on the chart exactly as it stands in the target, so the target is what the image shows:

    {"title": "Revenue by region", "data": {"North": 412, "South": 380.5}}

(JSON spelling, so it is a Python dict literal too: `ast.literal_eval` reads it). Several series nest
one level: `{"data": {"series": {"x": value}}}`; pie values are the percentages printed.
"""

from __future__ import annotations

import io
import json
import random
import re
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ..errors import InputError
from ..files import atomic_write_bytes
from .writer import IMAGES, Item, Outcome, conversation

CHART_PROMPT = "Convert this chart to python-dict"
KINDS = ("bar", "line", "pie", "composite")
LANGUAGES = ("en", "zh")
MATPLOTLIB_STYLES = ("default", "ggplot", "seaborn-v0_8-whitegrid", "bmh", "fivethirtyeight", "Solarize_Light2")
ECHARTS_PALETTE = ("#5470c6", "#91cc75", "#fac858", "#ee6666", "#73c0de", "#3ba272", "#fc8452", "#9a60b4", "#ea7ccc")
CJK_FONTS = ("Noto Sans CJK SC", "Noto Serif CJK SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
             "SimHei", "Microsoft YaHei", "PingFang SC", "Droid Sans Fallback", "AR PL UMing CN")


@dataclass(frozen=True)
class ChartSettings:
    """What charts to make; every field but `out` is in the manifest, and a rerun must match it."""

    out: str
    languages: tuple[str, ...] = LANGUAGES
    kinds: tuple[str, ...] = KINDS
    corpus: tuple[str, ...] = ()  # words of --corpus; empty: the shipped word lists
    corpus_name: str = ""
    cjk_font: str = ""

    def __post_init__(self) -> None:
        if not self.languages or set(self.languages) - set(LANGUAGES):
            raise InputError(f"--lang takes a comma list of {', '.join(LANGUAGES)}, got {','.join(self.languages)}")
        if not self.kinds or set(self.kinds) - set(KINDS):
            raise InputError(f"--kinds takes a comma list of {', '.join(KINDS)}, got {','.join(self.kinds)}")
        if self.corpus and len(set(self.corpus)) < 12:
            raise InputError(f"{self.corpus_name}: the corpus needs at least 12 different words")

    def manifest(self) -> dict:
        return {"prompt": CHART_PROMPT, "languages": list(self.languages), "kinds": list(self.kinds),
                "corpus": self.corpus_name or None, "cjk_font": self.cjk_font or None}


def find_cjk_font() -> str:
    """A font matplotlib knows that draws Chinese, or "" when none is installed."""
    from matplotlib import font_manager

    names = {font.name for font in font_manager.fontManager.ttflist}
    for name in CJK_FONTS:
        if name in names:
            return name
    return next((name for name in sorted(names) if "CJK" in name), "")


def require_cjk_font() -> str:
    """find_cjk_font(), or an InputError that names the package to install."""
    font = find_cjk_font()
    if not font:
        raise InputError("Chinese charts (--lang zh, part of the default en,zh) need a Chinese font and matplotlib "
                         "finds none; install one (Debian/Ubuntu: apt install fonts-noto-cjk) and remove "
                         "~/.cache/matplotlib so matplotlib sees it, or use --lang en")
    return font


def read_corpus(path: Path) -> tuple[str, ...]:
    """The distinct words of a text file, in first-seen order (Chinese text is cut into words by jieba
    when it is installed, else into runs of 2 characters)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the corpus ({exc})") from None
    words: list[str] = []
    for token in re.findall(r"[A-Za-z][A-Za-z'-]{1,20}|[\u4e00-\u9fff]+", text):
        if re.match(r"[\u4e00-\u9fff]", token):
            try:
                import jieba

                words += [w for w in jieba.lcut(token) if len(w) >= 2]
            except ImportError:
                words += [token[i:i + 2] for i in range(0, len(token) - 1, 2)]
        else:
            words.append(token.lower())
    return tuple(dict.fromkeys(words))


@lru_cache(maxsize=None)
def shipped_words(language: str) -> tuple[str, ...]:
    text = resources.files("vary_cli.data").joinpath(f"words_{language}.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def chart_spec(settings: ChartSettings, rng: random.Random) -> dict:
    """Everything that decides one chart, drawn from `rng`: kind, language, look, title, labels, values."""
    kind = rng.choice(settings.kinds)
    language = rng.choice(settings.languages)
    words = settings.corpus or shipped_words(language)
    label = (lambda w: w) if language == "zh" else (lambda w: w[:1].upper() + w[1:])
    picked = [label(w) for w in rng.sample(words, 12)]
    title = _title(picked[:2], language, rng)
    names = picked[2:]
    decimals = rng.choice((0, 0, 1))
    top = rng.choice((10, 50, 100, 500, 1000, 5000))

    def value() -> int | float:
        v = rng.uniform(0.05 * top, top)
        return round(v, 1) if decimals else int(round(v))

    categories = _axis(names, language, rng)
    if kind == "pie":
        parts = names[:rng.randint(3, 6)]
        weights = [rng.randint(5, 60) for _ in parts]
        tenths = [w * 1000 // sum(weights) for w in weights]
        tenths[0] += 1000 - sum(tenths)  # percentages with one decimal that add up to 100.0 exactly
        data: dict = {p: t / 10 for p, t in zip(parts, tenths)}
    elif kind == "composite":  # bars of one series and a line of another over the same categories
        bar_name, line_name = rng.sample(picked[:2] + names[-2:], 2)
        data = {bar_name: {c: value() for c in categories}, line_name: {c: value() for c in categories}}
    else:
        series = rng.choice((1, 1, 2, 3)) if kind == "bar" else rng.choice((1, 2, 3))
        if series == 1:
            data = {c: value() for c in categories}
        else:
            data = {s: {c: value() for c in categories} for s in names[-series:]}
    look = rng.choice(("echarts",) + MATPLOTLIB_STYLES)
    return {"kind": kind, "language": language, "title": title, "data": data, "look": look,
            "figsize": (round(rng.uniform(6.0, 9.0), 1), round(rng.uniform(4.0, 6.0), 1)),
            "dpi": rng.choice((110, 130, 150)), "horizontal": kind == "bar" and rng.random() < 0.2}


def _title(words: list[str], language: str, rng: random.Random) -> str:
    a, b = words
    if language == "zh":
        return rng.choice((f"{a}{b}统计", f"各{b}{a}", f"{a}与{b}", f"{a}变化趋势"))
    return rng.choice((f"{a} by {b.lower()}", f"{a} and {b.lower()}", f"{a} of {b.lower()}", f"{a} {b.lower()}"))


def _axis(names: list[str], language: str, rng: random.Random) -> list[str]:
    n = rng.randint(3, 7)
    pick = rng.random()
    if pick < 0.3:
        start = rng.randint(2000, 2020)
        return [str(start + i) + ("年" if language == "zh" else "") for i in range(n)]
    if pick < 0.45:
        months = ("一月 二月 三月 四月 五月 六月 七月" if language == "zh" else "Jan Feb Mar Apr May Jun Jul").split()
        return months[:n]
    return names[:n]


def target(spec: dict) -> str:
    """The answer: the chart's title and data as a dict literal."""
    return json.dumps({"title": spec["title"], "data": spec["data"]}, ensure_ascii=False)


def _fmt(value: int | float) -> str:
    return str(value)


def draw(spec: dict, cjk_font: str = "") -> bytes:
    """The chart as PNG bytes (matplotlib's Agg canvas; no display, no pyplot state)."""
    buffer = io.BytesIO()
    with _look(spec, cjk_font):
        figure = build_figure(spec)
        figure.savefig(buffer, format="png", dpi=spec["dpi"], metadata={"Software": None})
    return buffer.getvalue()


def build_figure(spec: dict):
    """The matplotlib Figure of a chart spec (drawn under `_look`; tests read its artists)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=spec["figsize"], dpi=spec["dpi"])
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    _plot(axes, spec)
    axes.set_title(spec["title"])
    figure.tight_layout()
    return figure


@contextmanager
def _look(spec: dict, cjk_font: str):
    import matplotlib
    import matplotlib.style

    look = spec["look"]
    # DejaVu first, the CJK font as matplotlib's per-glyph fallback for Chinese labels.
    rc = {"font.family": ["DejaVu Sans"] + ([cjk_font] if cjk_font else []), "axes.unicode_minus": False}
    if look == "echarts":  # pyecharts' default look: its palette, flat axes, dashed value grid, title at left
        from cycler import cycler

        rc.update({"axes.prop_cycle": cycler(color=ECHARTS_PALETTE), "axes.spines.top": False,
                   "axes.spines.right": False, "axes.spines.left": False, "axes.grid": True, "axes.grid.axis": "y",
                   "grid.linestyle": "--", "grid.color": "#e0e6f1", "axes.edgecolor": "#6e7079",
                   "axes.titleweight": "bold", "axes.titlelocation": "left", "text.color": "#464646"})
    with matplotlib.style.context("default" if look == "echarts" else look), matplotlib.rc_context(rc):
        yield


def _plot(axes, spec: dict) -> None:
    kind, data = spec["kind"], spec["data"]
    small = 8
    if kind == "pie":
        labels = iter(f"{_fmt(v)}%" for v in data.values())
        axes.pie(list(data.values()), labels=list(data), autopct=lambda _: next(labels), startangle=90,
                 counterclock=False, textprops={"fontsize": 9})
        axes.axis("equal")
        return
    nested = isinstance(next(iter(data.values())), dict)
    series = data if nested else {"": data}
    categories = list(next(iter(series.values())))
    positions = range(len(categories))
    if kind == "composite":
        (bar_name, bars), (line_name, line) = series.items()
        rects = axes.bar(positions, list(bars.values()), width=0.6, label=bar_name)
        axes.bar_label(rects, labels=[_fmt(v) for v in bars.values()], fontsize=small, padding=2)
        twin = axes.twinx()
        color = "C1"  # the next colour of the style's cycle, after the bars' C0
        twin.plot(positions, list(line.values()), marker="o", color=color, label=line_name)
        for x, v in zip(positions, line.values()):
            twin.annotate(_fmt(v), (x, v), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=small,
                          color=color)
        twin.set_ylim(0, max(line.values()) * 1.2)
        twin.grid(False)
        handles = [rects] + twin.get_lines()
        axes.legend(handles, [bar_name, line_name], loc="upper left", fontsize=small)
    elif kind == "bar":
        width = 0.8 / len(series)
        for i, (name, values) in enumerate(series.items()):
            offsets = [p - 0.4 + width * (i + 0.5) for p in positions]
            draw_bars = axes.barh if spec["horizontal"] else axes.bar
            rects = draw_bars(offsets, list(values.values()), width * 0.9, label=name or None)
            axes.bar_label(rects, labels=[_fmt(v) for v in values.values()], fontsize=small, padding=2)
        if len(series) > 1:
            axes.legend(fontsize=small)
    else:  # line
        for name, values in series.items():
            (line,) = axes.plot(positions, list(values.values()), marker="o", label=name or None)
            for x, v in zip(positions, values.values()):
                axes.annotate(_fmt(v), (x, v), textcoords="offset points", xytext=(0, 6), ha="center",
                              fontsize=small, color=line.get_color())
        if len(series) > 1:
            axes.legend(fontsize=small)
    if spec["horizontal"]:
        axes.set_yticks(list(positions), categories)
        axes.invert_yaxis()
        axes.set_xlim(0, _top(series) * 1.2)
    else:
        axes.set_xticks(list(positions), categories)
        axes.set_ylim(0, _top(series) * 1.2)


def _top(series: dict) -> float:
    return max(v for values in series.values() for v in values.values())


def make_chart(settings: ChartSettings, item: Item, seed: int) -> Outcome:
    """Draw chart number `item.index` from its own seed and write `images/charts/<index>.png`."""
    spec = chart_spec(settings, random.Random(seed))
    name = f"{IMAGES}/charts/{item.index:08d}.png"
    atomic_write_bytes(Path(settings.out) / name, draw(spec, settings.cjk_font))
    record = conversation(name, CHART_PROMPT, target(spec), item.key)
    return Outcome(item.key, item.index, records=[record], counts={f"{spec['kind']}_{spec['language']}": 1})


def chart_items(count: int) -> list[Item]:
    """Charts 0..count-1; the key (and so the seed and the shard) comes from the index."""
    return [Item(f"chart-{index:08d}", index) for index in range(count)]
