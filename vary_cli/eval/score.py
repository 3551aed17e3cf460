"""Score predictions against a benchmark's ground truth: pairing, per-page metrics, means.

`score_files(pred, gt, ...)` serves `vary eval score`; `score_items(...)` serves `vary eval run` and `vary
train --eval-generate`. Edit distance is rapidfuzz's C code; tokenization, BLEU and METEOR (pure Python in
nltk, the slow part) run over a pool of processes when there are enough pages to pay for it. WordNet is
loaded once in the parent before the pool forks, so workers share it instead of each reading it again.
nltk's METEOR takes time quadratic in a page's length (seconds at 20,000 tokens, most of an hour for a
20 MB runaway page), so a page with more than METEOR_MAX_TOKENS tokens on either side gets no METEOR:
its other metrics count, and a note says how many pages were left out of the METEOR mean.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from .metrics import anls, bleu, edit_distance, meteor, relaxed_accuracy, set_scores
from .protocols import DEFAULT_PROTOCOL, Protocol, get_protocol
from .readers import Benchmark, Item, read_ground_truth, read_predictions
from .tokens import has_chinese, load_jieba, tokenize_pair
from .wordnet import ensure_wordnet

OCR_METRICS = ("edit_distance", "f1", "precision", "recall", "bleu", "meteor")
VQA_METRIC = {"docvqa": "anls", "chartqa": "relaxed_accuracy"}
VQA_SOURCE = {"docvqa": "DocVQA official ANLS (threshold 0.5)", "chartqa": "pix2struct relaxed_correctness (5%)"}
# Below this many pages a pool costs more to start than it saves.
POOL_MIN_PAGES = 32
# Pages of the benchmarks we follow have a few thousand tokens at most; past this METEOR is left out.
METEOR_MAX_TOKENS = 20_000


@dataclass
class PageScore:
    """One page's (or question's) texts and values; `skipped` says why it is left out of the means."""

    key: str
    prediction: str
    answers: list[str]
    values: dict[str, float | None] = field(default_factory=dict)
    skipped: str | None = None
    image: Path | None = None

    def to_json(self) -> dict:
        return {"key": self.key, "prediction": self.prediction, "ground_truth": self.answers[0] if len(self.answers) == 1
                else self.answers, **self.values, "skipped": self.skipped}


@dataclass
class ScoreReport:
    """Every page's scores plus what was paired, skipped and left unpaired, and how it was scored."""

    task: str
    protocol: str
    order: str
    pages: list[PageScore]
    unpaired_predictions: list[str] = field(default_factory=list)
    unpaired_ground_truth: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    """Items `vary eval run` could not run (key -> why): skipped, so they do not count as empty predictions."""

    @property
    def metric_names(self) -> tuple[str, ...]:
        return OCR_METRICS if self.task == "ocr" else (VQA_METRIC[self.task],)

    @property
    def scored(self) -> list[PageScore]:
        return [p for p in self.pages if p.skipped is None]

    def nothing_scored(self) -> str | None:
        """Why no page counts in the means, or None when some do (the CLI makes it an error, exit 2)."""
        if self.scored:
            return None
        if not self.pages:
            return "nothing was scored: no prediction pairs with the ground truth"
        reasons = sorted({p.skipped for p in self.pages if p.skipped})
        return f"nothing was scored: all {len(self.pages)} pairs were skipped ({'; '.join(reasons)[:200]})"

    def means(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name in self.metric_names:
            values = [p.values[name] for p in self.scored if p.values.get(name) is not None]
            out[name] = sum(values) / len(values) if values else None
        return out

    def to_json(self) -> dict:
        return {"task": self.task, "protocol": self.protocol, "order": self.order, "metrics": self.means(),
                "pairs": len(self.pages), "scored": len(self.scored), "skipped": len(self.pages) - len(self.scored),
                "failed": len(self.failed),
                "empty_predictions": sum(not p.prediction for p in self.pages if p.key not in self.failed),
                "unpaired": {"predictions": len(self.unpaired_predictions),
                             "ground_truth": len(self.unpaired_ground_truth)},
                "notes": self.notes}


def score_files(pred: Path, gt: Path, task: str | None = None, protocol: str = DEFAULT_PROTOCOL,
                swap: bool = False, workers: int | None = None, with_meteor: bool = True) -> ScoreReport:
    """Read PRED and GT in any supported layout, pair them by key and score every pair.

    Raises:
        InputError: a file is missing, not UTF-8, or malformed (the message names file and line).
    """
    bench = read_ground_truth(gt, task)
    if task and bench.task != task:
        bench.task = task
    if not bench.items:
        raise InputError(f"{gt}: no ground truth to score against{_layout_hint(gt)}")
    predictions = read_predictions(pred)
    if not predictions:
        raise InputError(f"{pred}: no predictions to score{_layout_hint(pred)}")
    if not any(item.key in predictions for item in bench.items):
        raise InputError(f"{pred} and {gt}: no prediction pairs with the ground truth (keys look like "
                         f"{next(iter(predictions))!r} and {bench.items[0].key!r}); see `vary eval score --help` "
                         "for how each layout is keyed")
    return score_items(bench, predictions, protocol, swap, workers, with_meteor)


def _layout_hint(path: Path) -> str:
    if not path.is_dir():
        return ""
    if any(path.rglob("*.jsonl")):  # a directory is read for page files only, never its JSONL
        return " (a directory is read for .md/.mmd/.txt/.tex files; give a .jsonl file itself)"
    return " (a directory is read for .md/.mmd/.txt/.tex files and holds none)"


def score_items(bench: Benchmark, predictions: dict[str, str], protocol: str = DEFAULT_PROTOCOL,
                swap: bool = False, workers: int | None = None, with_meteor: bool = True,
                failed: dict[str, str] | None = None) -> ScoreReport:
    """Score `predictions` (key -> text) against the benchmark's items; `failed` items (key -> why) are
    skipped with their reason, not scored as empty predictions."""
    failed = failed or {}
    paired = [item for item in bench.items if item.key in predictions and item.key not in failed]
    known = {item.key for item in bench.items}
    unpaired_pred = sorted(k for k in predictions if k not in known)
    unpaired_gt = [item.key for item in bench.items if item.key not in predictions]
    if bench.task in VQA_METRIC:
        pages = [_vqa_page(item, predictions[item.key], bench.task) for item in paired]
        report = ScoreReport(bench.task, VQA_SOURCE[bench.task], "prediction vs ground truth", pages)
    else:
        chosen = get_protocol(protocol)
        pages, notes = score_ocr(paired, predictions, chosen, swap, workers, with_meteor)
        order = ("swapped: ground truth scored as the prediction, as Fox's and GOT's scripts do" if swap
                 else "prediction vs ground truth")
        report = ScoreReport("ocr", f"{chosen.name} ({chosen.source})", order, pages, notes=notes)
    report.unpaired_predictions, report.unpaired_ground_truth = unpaired_pred, unpaired_gt
    report.failed = {item.key: failed[item.key] for item in bench.items if item.key in failed}
    if failed:  # in the benchmark's order, as the pages the items took part in
        skipped = {item.key: PageScore(item.key, "", item.answers, skipped=f"failed: {failed[item.key]}",
                                       image=item.image) for item in bench.items if item.key in failed}
        scored = {page.key: page for page in report.pages}
        report.pages = [scored.get(item.key) or skipped[item.key] for item in bench.items
                        if item.key in scored or item.key in skipped]
    return report


def _vqa_page(item: Item, prediction: str, task: str) -> PageScore:
    value = anls(prediction, item.answers) if task == "docvqa" else relaxed_accuracy(prediction, item.answers)
    return PageScore(item.key, prediction, item.answers, {VQA_METRIC[task]: value}, image=item.image)


def score_ocr(items: list[Item], predictions: dict[str, str], protocol: Protocol, swap: bool = False,
              workers: int | None = None, with_meteor: bool = True) -> tuple[list[PageScore], list[str]]:
    """Per-page OCR metrics under `protocol`; returns the pages and notes (e.g. METEOR unavailable)."""
    notes: list[str] = []
    pages, pairs = [], []
    for item in items:
        page = PageScore(item.key, predictions[item.key], item.answers, image=item.image)
        pred, gt = page.prediction, item.answers[0]
        if swap:
            pred, gt = gt, pred
        page.skipped = protocol.skip_reason(pred, gt)
        pages.append(page)
        if page.skipped is None:
            pairs.append((pred, gt))
    if with_meteor and pairs:  # WordNet takes seconds to load: not when no page is scored
        root, reason = ensure_wordnet()
        if reason:
            notes.append(reason)
            with_meteor = False
        else:
            _load_wordnet()
    jobs = [(pred, gt, protocol.tokenizer, with_meteor) for pred, gt in pairs]
    workers = workers or os.cpu_count() or 1
    if protocol.tokenizer == "jieba" and any(has_chinese(pred) or has_chinese(gt) for pred, gt, _, _ in jobs):
        load_jieba()  # once here, shared by forked workers, instead of once per worker
    if workers > 1 and len(jobs) >= POOL_MIN_PAGES:
        # fork shares the loaded WordNet (seconds per worker otherwise). Workers never call torch, so a torch
        # loaded in the parent (vary eval run) is no hazard. macOS cannot fork safely: spawn there.
        context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                 initargs=(with_meteor,)) as pool:
            results = list(pool.map(page_metrics, jobs, chunksize=max(1, len(jobs) // (workers * 8))))
    else:
        results = [page_metrics(job) for job in jobs]
    for page, values in zip((p for p in pages if p.skipped is None), results):
        page.values = values
    too_long = sum(1 for values in results if values.get("meteor_skipped"))
    for values in results:
        values.pop("meteor_skipped", None)
    if too_long:
        notes.append(f"METEOR left out on {too_long} page(s) with more than {METEOR_MAX_TOKENS:,} tokens on a side "
                     "(nltk's METEOR is quadratic in page length); their other metrics count")
    return pages, notes


def page_metrics(job: tuple[str, str, str, bool]) -> dict[str, float | None]:
    """Every OCR metric of one (prediction, ground truth) pair, in the order the arguments give them."""
    pred, gt, tokenizer, with_meteor = job
    pred_tokens, gt_tokens = tokenize_pair(pred, gt, tokenizer)
    precision, recall, f1 = set_scores(pred_tokens, gt_tokens)
    values: dict = {"edit_distance": edit_distance(pred, gt), "f1": f1, "precision": precision, "recall": recall,
                    "bleu": bleu(pred_tokens, gt_tokens), "meteor": None}
    if with_meteor and max(len(pred_tokens), len(gt_tokens)) > METEOR_MAX_TOKENS:
        values["meteor_skipped"] = True  # counted and removed by score_ocr
    elif with_meteor:
        values["meteor"] = meteor(pred_tokens, gt_tokens)
    return values


def _load_wordnet() -> None:
    import warnings

    from nltk.corpus import wordnet

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wordnet.ensure_loaded()


def _init_worker(with_meteor: bool) -> None:
    if not with_meteor:
        return
    ensure_wordnet()  # a spawned worker finds the prepared copy and loads it; after fork it is loaded
    _load_wordnet()
    from nltk.corpus import wordnet

    # nltk reads synsets by seek + readline on files it keeps open. Forked workers inherit those open
    # files, and with them one shared file offset: concurrent seeks would read each other's lines (seen
    # as synsets that are None). Each worker drops the inherited handles and opens its own.
    wordnet._data_file_map = {}
    wordnet._key_count_file = wordnet._key_synset_file = None
