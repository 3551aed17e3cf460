"""`vary eval score` and `vary eval run`: the Typer sub-app `eval_app`, mounted by cli/app.py.

`score` reads predictions and ground truth in any layout eval/readers.py knows and prints the means;
`run` runs a model on a benchmark through the convert pipeline, then scores it the same way. Both print a
rich table (or `--json`), and can write every page's values (`--per-page`) and an HTML report
(`--report`). The eval modules (rapidfuzz, nltk, jieba) and torch are imported inside the bodies.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (DebugOption, DeviceOption, DtypeOption, MaxTokensOption, ModelOption, fail,
                     generation_config, labelled, load_model, stderr, stdout_console)
from ..errors import VaryError
from ..files import check_target

eval_app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                       help="Score outputs with the paper's metrics, computed as each benchmark computes them.")

PROTOCOL_NAMES = ("fox", "got", "got-scene", "nougat")  # eval/protocols.py PROTOCOLS, without importing it
ProtocolOption = Annotated[str, typer.Option(
    "--protocol", help="How pages are tokenized and which are skipped: fox (jieba on Chinese, every page), got "
                       "(fox's tokens, empty pages dropped), got-scene (one token per character), nougat "
                       "(whitespace, pages under 4 characters skipped).")]
SwapOption = Annotated[bool, typer.Option(
    "--swap-pred-gt", help="Score in Fox's and GOT's published (swapped) order: precision and recall trade "
                           "places, BLEU/METEOR score the ground truth.")]
TaskOption = Annotated[Optional[str], typer.Option(
    "--task", help="docvqa (ANLS) or chartqa (relaxed accuracy): answers instead of page text.", show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object (means, counts, protocol) on stdout.")]
PerPageOption = Annotated[Optional[Path], typer.Option(
    "--per-page", help="Write every page's values to this JSONL file.", show_default=False)]
ReportOption = Annotated[Optional[Path], typer.Option(
    "--report", help="Write a self-contained HTML report (histogram, pages worst-first with differences).",
    show_default=False)]
WorkersOption = Annotated[int, typer.Option("--workers", min=0, help="Scoring processes (0: one per CPU).")]


def _check(protocol: str, task: str | None, swap: bool) -> None:
    if protocol not in PROTOCOL_NAMES:
        raise typer.BadParameter(f"--protocol must be one of {', '.join(PROTOCOL_NAMES)}, not {protocol!r}")
    if task not in (None, "ocr", "docvqa", "chartqa"):
        raise typer.BadParameter(f"--task must be docvqa or chartqa, not {task!r}")
    if swap and task in ("docvqa", "chartqa"):
        raise typer.BadParameter("--swap-pred-gt applies to page OCR only, not --task docvqa/chartqa")


@eval_app.command()
def score(
    pred: Annotated[Path, typer.Argument(help="Predictions: a directory of .md/.mmd/.txt/.tex files, `vary convert "
                                              "--format jsonl` output, or {id, answer} JSONL.", show_default=False)],
    gt: Annotated[Path, typer.Argument(help="Ground truth: a directory, JSONL, Fox en_page_ocr.json/cn_page_ocr.json, "
                                            "DocVQA val_v1.0.json or ChartQA test_*.json.", show_default=False)],
    protocol: ProtocolOption = "fox",
    swap_pred_gt: SwapOption = False,
    task: TaskOption = None,
    as_json: JsonOption = False,
    per_page: PerPageOption = None,
    report: ReportOption = None,
    workers: WorkersOption = 0,
    debug: DebugOption = False,
) -> None:
    """Score existing outputs against ground truth: edit distance, F1, precision, recall, BLEU, METEOR (or ANLS /
    relaxed accuracy with --task). Files pair by relative path without suffix, pages by source and page."""
    _check(protocol, task, swap_pred_gt)
    try:
        _check_outputs(per_page, report)
        from ..eval.score import score_files

        result = score_files(pred, gt, task, protocol, swap_pred_gt, workers or None)
        _finish(result, as_json, per_page, report, f"vary eval score {pred} {gt}")
    except VaryError as error:
        fail(error, debug)


@eval_app.command()
def run(
    bench: Annotated[Path, typer.Argument(help="Fox en_page_ocr.json/cn_page_ocr.json, DocVQA val_v1.0.json, ChartQA "
                                               "test_*.json, a nougat directory of X.pdf + X.mmd, or a JSONL manifest "
                                               "({image} or {pdf, page}, prompt, answers).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Directory for predictions.jsonl (resumed when run again).")] = Path("vary-eval"),
    model: ModelOption = "vary-toy",
    prompt: Annotated[Optional[str], typer.Option(
        help="Prompt for every page [default: the manifest's or question's; ocr for page OCR, markdown for nougat].",
        show_default=False)] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Run the first N items only.", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=0, help="Pages per batch; 0 picks from free device memory.")] = 0,
    max_new_tokens: MaxTokensOption = 2048,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    protocol: ProtocolOption = "fox",
    swap_pred_gt: SwapOption = False,
    task: TaskOption = None,
    as_json: JsonOption = False,
    per_page: PerPageOption = None,
    report: ReportOption = None,
    workers: WorkersOption = 0,
    debug: DebugOption = False,
) -> None:
    """Run a model on a benchmark and score it. Predictions are kept as they finish: run again to resume."""
    _check(protocol, task, swap_pred_gt)
    try:
        _check_outputs(per_page, report)
        check_target(out, "--out", directory=True)
        from ..eval.readers import read_ground_truth

        benchmark = read_ground_truth(bench, task)
        if not benchmark.items:
            from ..errors import InputError

            raise InputError(f"{bench}: no items to run")
        if task:
            benchmark.task = task
        if limit:
            benchmark.items = benchmark.items[:limit]
        gen = generation_config(max_new_tokens, 0.0, 1.0, None)
        loaded = load_model(model, device, dtype)
        from ..eval.run import run_benchmark
        from ..eval.score import score_items

        outcome = run_benchmark(loaded, benchmark, out, gen, prompt=prompt, batch_size=batch_size,
                                on_item=None if as_json else _item_printer())
        result = score_items(benchmark, outcome.predictions, protocol, swap_pred_gt, workers or None,
                             failed=outcome.failed)
        _finish(result, as_json, per_page, report, f"vary eval run {bench} --model {model}")
        if result.failed:
            for key, why in list(result.failed.items())[:10]:
                stderr.print(labelled("failed:", "red", f"{key}: {why}"))
            stderr.print(f"{len(result.failed)} item(s) failed and are left out of the means; run the same "
                         "command again to retry them")
            raise typer.Exit(code=1)
    except VaryError as error:
        fail(error, debug)
    except KeyboardInterrupt:
        stderr.print("interrupted; run again to resume")
        raise typer.Exit(code=130) from None


def _check_outputs(per_page: Path | None, report: Path | None) -> None:
    # Before scoring (minutes on a large set), not after it.
    if per_page is not None:
        check_target(per_page, "--per-page")
    if report is not None:
        check_target(report, "--report")


def _item_printer():
    def on_item(done: int, total: int, key: str) -> None:
        stderr.print(f"[{done}/{total}] {key}")
    return on_item


def _finish(result, as_json: bool, per_page: Path | None, report: Path | None, title: str) -> None:
    from ..errors import InputError
    from ..files import atomic_write_text

    why = result.nothing_scored()
    if why:  # every metric would be "unavailable": an error, not a table of blanks
        raise InputError(why)

    if per_page is not None:
        atomic_write_text(per_page, "".join(json.dumps(p.to_json(), ensure_ascii=False) + "\n" for p in result.pages))
    if report is not None:
        from ..eval.report import render_report

        atomic_write_text(report, render_report(result, title))
    data = result.to_json()
    for note in result.notes:
        stderr.print(labelled("note:", "yellow", note))
    if result.unpaired_ground_truth or result.unpaired_predictions:
        shown = result.unpaired_ground_truth[:10] + result.unpaired_predictions[:10]
        stderr.print(labelled("unpaired:", "yellow", f"{len(result.unpaired_ground_truth)} ground truth without "
                              f"a prediction, {len(result.unpaired_predictions)} predictions without ground truth "
                              f"(e.g. {', '.join(shown)})"))
    if as_json:
        sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
        return
    from rich.table import Table

    table = Table(title=f"{data['task']} means")
    table.add_column("metric")
    table.add_column("mean", justify="right")
    for name, value in data["metrics"].items():
        table.add_row(name, "unavailable" if value is None else f"{value:.4f}")
    console = stdout_console()
    console.print(table)
    console.print(f"protocol: {data['protocol']}\norder: {data['order']}")
    failed = f" ({data['failed']} failed)" if data["failed"] else ""
    console.print(f"pairs {data['pairs']}, scored {data['scored']}, skipped {data['skipped']}{failed}, empty predictions "
                  f"{data['empty_predictions']}, unpaired {data['unpaired']['ground_truth']} ground truth / "
                  f"{data['unpaired']['predictions']} predictions")
