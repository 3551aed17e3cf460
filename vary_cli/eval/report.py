"""`--report report.html`: one self-contained HTML file to see where a model fails.

The file needs no network: styles inline, the histogram is inline SVG, page images are embedded as
base64 (downscaled to 1,000 px on the long side). It holds the summary (protocol, order, counts, means),
a histogram of per-page edit distance (or of the VQA score), and every page worst-first, prediction
beside ground truth with character differences marked (rapidfuzz's Levenshtein opcodes: deletions from
the prediction in red, insertions of the ground truth in green).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from rapidfuzz.distance import Levenshtein

from .score import PageScore, ScoreReport

BINS = 10
IMAGE_SIDE = 1000
# Pages longer than this (characters) are shown without the character diff (it would only be noise).
DIFF_LIMIT = 20000

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px}table.summary td,table.summary th{padding:2px 12px;text-align:left}
.page{border-top:1px solid #ccc;padding:12px 0}.page h2{font-size:15px;margin:4px 0}
.cols{display:flex;gap:12px}.cols>div{flex:1;min-width:0}
pre{white-space:pre-wrap;word-break:break-word;background:#f7f7f7;padding:8px;margin:4px 0;font:12px/1.4 monospace}
del{background:#fcc;text-decoration:none}ins{background:#cfc;text-decoration:none}
img.page-image{max-width:100%;max-height:480px;border:1px solid #ddd}.skip{color:#a60}
"""


def render_report(report: ScoreReport, title: str = "vary eval") -> str:
    """The whole HTML document for `report`."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>", _summary(report),
             _histogram(report)]
    for page in _worst_first(report):
        parts.append(_page(report, page))
    parts.append("</body></html>")
    return "\n".join(parts)


def _main_metric(report: ScoreReport) -> str:
    return report.metric_names[0]


def _worst_first(report: ScoreReport) -> list[PageScore]:
    name = _main_metric(report)
    lower_is_worse = name != "edit_distance"

    def badness(page: PageScore) -> float:
        value = page.values.get(name)
        if value is None:
            return float("-inf")  # skipped pages last
        return -value if lower_is_worse else value

    return sorted(report.pages, key=badness, reverse=True)


def _summary(report: ScoreReport) -> str:
    data = report.to_json()
    rows = [("task", report.task), ("protocol", report.protocol), ("order", report.order),
            ("pairs", data["pairs"]), ("scored", data["scored"]), ("skipped", data["skipped"]),
            ("empty predictions", data["empty_predictions"]),
            ("unpaired predictions", data["unpaired"]["predictions"]),
            ("unpaired ground truth", data["unpaired"]["ground_truth"])]
    rows += [(name, "unavailable" if value is None else f"{value:.4f}") for name, value in data["metrics"].items()]
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    notes = "".join(f"<p class='skip'>{html.escape(n)}</p>" for n in report.notes)
    unpaired = ""
    if report.unpaired_ground_truth or report.unpaired_predictions:
        listed = [f"ground truth without prediction: {k}" for k in report.unpaired_ground_truth[:200]]
        listed += [f"prediction without ground truth: {k}" for k in report.unpaired_predictions[:200]]
        unpaired = "<details><summary>unpaired</summary><pre>" + html.escape("\n".join(listed)) + "</pre></details>"
    return f"<table class='summary'>{body}</table>{notes}{unpaired}"


def _histogram(report: ScoreReport) -> str:
    name = _main_metric(report)
    values = [p.values[name] for p in report.scored if p.values.get(name) is not None]
    counts = [0] * BINS
    for value in values:
        counts[min(BINS - 1, int(value * BINS))] += 1
    width, height, bar = 420, 160, 40
    top = max(counts) or 1
    bars = []
    for i, count in enumerate(counts):
        h = round((height - 40) * count / top)
        x = i * bar + 10
        bars.append(f"<rect x='{x}' y='{height - 20 - h}' width='{bar - 4}' height='{h}' fill='#4a7bd0'>"
                    f"<title>{i / BINS:.1f}-{(i + 1) / BINS:.1f}: {count}</title></rect>"
                    f"<text x='{x + (bar - 4) / 2}' y='{height - 24 - h}' font-size='10' text-anchor='middle'>{count}</text>"
                    f"<text x='{x}' y='{height - 6}' font-size='10'>{i / BINS:.1f}</text>")
    return (f"<h2>{html.escape(name)} per page</h2><svg class='histogram' width='{width}' height='{height}' "
            f"xmlns='http://www.w3.org/2000/svg'>{''.join(bars)}</svg>")


def _page(report: ScoreReport, page: PageScore) -> str:
    values = ", ".join(f"{k} {v:.4f}" for k, v in page.values.items() if v is not None)
    status = f"<span class='skip'>skipped: {html.escape(page.skipped)}</span>" if page.skipped else values
    truth = page.answers[0] if report.task == "ocr" else " | ".join(page.answers)
    if report.task == "ocr" and max(len(page.prediction), len(truth)) <= DIFF_LIMIT:
        pred_html, gt_html = char_diff(page.prediction, truth)
    else:
        pred_html, gt_html = html.escape(page.prediction), html.escape(truth)
    image = _image(page.image)
    return (f"<div class='page' data-key='{html.escape(page.key, quote=True)}'><h2>{html.escape(page.key)}</h2><div>{status}</div><div class='cols'>"
            + (f"<div>{image}</div>" if image else "")
            + f"<div><b>prediction</b><pre>{pred_html}</pre></div>"
            f"<div><b>ground truth</b><pre>{gt_html}</pre></div></div></div>")


def char_diff(pred: str, gt: str) -> tuple[str, str]:
    """(prediction, ground truth) as HTML: characters only in the prediction in <del>, only in the truth in <ins>."""
    left, right = [], []
    for op in Levenshtein.opcodes(pred, gt):
        a, b = pred[op.src_start:op.src_end], gt[op.dest_start:op.dest_end]
        if op.tag == "equal":
            left.append(html.escape(a))
            right.append(html.escape(b))
            continue
        if a:
            left.append(f"<del>{html.escape(a)}</del>")
        if b:
            right.append(f"<ins>{html.escape(b)}</ins>")
    return "".join(left), "".join(right)


def _image(path: Path | None) -> str:
    if path is None or not Path(path).is_file():
        return ""
    try:
        from PIL import Image

        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((IMAGE_SIDE, IMAGE_SIDE))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=80)
    except (OSError, ValueError):
        return ""  # an unreadable image only costs the picture, not the report
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<img class='page-image' alt='{html.escape(Path(path).name)}' src='data:image/jpeg;base64,{data}'>"
