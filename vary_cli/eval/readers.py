"""Benchmark files read in place, as `vary eval score` and `vary eval run` take them.

Every reader returns plain records; a file that cannot be used raises `InputError` naming the file (and
the line, for JSONL). Text is decoded as strict UTF-8 and kept exactly as written, whitespace included,
because the reference scripts score their JSON strings as they are: surrounding spaces change edit
distance, got-scene's character tokens, the length rules that skip pages, ANLS's denominator and relaxed
accuracy's string match. The one exception is a page *file* (directory layouts, nougat .mmd): its final
line ending ("\n" or "\r\n") ends the file, not the page, and is dropped; any other whitespace stays.

Layouts:
- a directory of `.md` / `.mmd` / `.txt` / `.tex` files, keyed by relative path without suffix;
- JSONL pages as `vary convert --format jsonl` writes them (`source`, `page`, `text`), keyed by the
  source's file stem and page (`a#3`);
- JSONL answers `{"id", "answer"}` (predictions) and `{"id", "answers": [...]}` (ground truth);
- Fox page OCR (`en_page_ocr.json` / `cn_page_ocr.json`: `image` + `conversations`) and Fox's results
  file (`image`, `label`, `answer`), keyed by image stem;
- DocVQA `val_v1.0.json` (`data`: `questionId`, `question`, `image`, `answers`), keyed by questionId;
- ChartQA `test_human.json` / `test_augmented.json` (`imgname`, `query`, `label`), keyed by position;
- nougat-style directories of `X.pdf` + `X.mmd` pairs (for `vary eval run`);
- a JSONL manifest for `vary eval run`: `{"image": ...}` or `{"pdf": ..., "page": N}`, optional `id`
  and `prompt`, and `answers` (for OCR, the page's text as the one answer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..errors import InputError

TEXT_SUFFIXES = (".md", ".mmd", ".txt", ".tex", ".markdown")
TASKS = ("ocr", "docvqa", "chartqa")


@dataclass
class Item:
    """One page or question of a benchmark: the ground truth and where its image is."""

    key: str
    answers: list[str]
    """The ground truth: for OCR the one page text, for VQA every accepted answer."""
    image: Path | None = None
    pdf: Path | None = None
    page: int | None = None
    prompt: str | None = None


@dataclass
class Benchmark:
    """The items of one ground-truth file and the task they are scored as."""

    path: Path
    task: str
    items: list[Item] = field(default_factory=list)


def read_text(path: Path) -> str:
    """A page file's text without the file's final line ending; InputError when it is missing or not UTF-8."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    text = _decode(data, str(path))
    # Only the one line ending a text file conventionally ends with: "a\n\n" keeps its blank line.
    return text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


def _load_json(path: Path) -> Any:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    try:
        return json.loads(_decode(path.read_bytes(), str(path)))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def jsonl_records(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) of each non-blank line; InputError naming the line of a malformed one."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    for number, raw in enumerate(path.read_bytes().split(b"\n"), 1):
        line = _decode(raw, f"{path}:{number}")
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        yield number, record


def _field(record: dict, name: str, kind: type | tuple, where: str) -> Any:
    if name not in record:
        raise InputError(f"{where}: missing \"{name}\"")
    value = record[name]
    if not isinstance(value, kind):
        raise InputError(f"{where}: \"{name}\" must be {getattr(kind, '__name__', 'a string or number')}")
    return value


def page_key(source: str, page: int | None) -> str:
    stem = Path(source).stem
    return f"{stem}#{page}" if page is not None else stem


def _put(found: dict, key: str, value: Any, where: str) -> None:
    if key in found:
        raise InputError(f"{where}: \"{key}\" appears twice")
    found[key] = value


# ---- predictions: key -> text ---------------------------------------------------------------------------


def read_predictions(path: Path) -> dict[str, str]:
    """Predicted text by key from a directory, a JSONL file (pages or answers) or Fox's results JSON."""
    if path.is_dir():
        return read_directory(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.suffix == ".json":
        data = _load_json(path)
        if not isinstance(data, list) or not all(isinstance(r, dict) and "answer" in r and "image" in r for r in data):
            raise InputError(f"{path}: expected Fox's results file (a list of {{\"image\", \"answer\"}})")
        found: dict[str, str] = {}
        for index, record in enumerate(data):
            _put(found, Path(str(record["image"])).stem, str(record["answer"]), f"{path}: entry {index}")
        return found
    found = {}
    for number, record in jsonl_records(path):
        where = f"{path}:{number}"
        if "id" in record:
            value = record.get("answer", record.get("text"))
            if not isinstance(value, str):
                raise InputError(f"{where}: \"answer\" must be a string")
            _put(found, str(record["id"]), value, where)
        else:
            source = _field(record, "source", str, where)
            page = record.get("page")
            if page is not None and not isinstance(page, int):
                raise InputError(f"{where}: \"page\" must be an integer or null")
            _put(found, page_key(source, page), _field(record, "text", str, where), where)
    return found


def read_directory(root: Path) -> dict[str, str]:
    """Texts of a directory's .md/.mmd/.txt/.tex files by relative path without suffix."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in TEXT_SUFFIXES and not path.name.startswith("."):
            _put(found, path.relative_to(root).with_suffix("").as_posix(), read_text(path), str(path))
    return found


# ---- ground truth: a Benchmark ----------------------------------------------------------------------------


def read_ground_truth(path: Path, task: str | None = None) -> Benchmark:
    """The ground truth of any supported layout; `task` (docvqa, chartqa) picks answers over page text."""
    if path.is_dir():
        pdfs = sorted(path.rglob("*.pdf"))
        if pdfs:
            return _nougat_pairs(path, pdfs)
        return Benchmark(path, "ocr", [Item(key, [text]) for key, text in read_directory(path).items()])
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.suffix == ".jsonl":
        return _jsonl_ground_truth(path, task)
    data = _load_json(path)
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        return _docvqa(path, data["data"])
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        if "conversations" in data[0]:
            return _fox(path, data)
        if "imgname" in data[0]:
            return _chartqa(path, data)
    raise InputError(f"{path}: not a known benchmark layout (Fox page OCR, DocVQA val_v1.0.json, ChartQA "
                     "test_*.json, or JSONL)")


def _jsonl_ground_truth(path: Path, task: str | None) -> Benchmark:
    bench = Benchmark(path, task or "ocr")
    seen: set[str] = set()
    for number, record in jsonl_records(path):
        where = f"{path}:{number}"
        if "answers" in record:
            answers = record["answers"]
            if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers) or not answers:
                raise InputError(f"{where}: \"answers\" must be a non-empty list of strings")
            key = str(record.get("id", number))
            image = pdf = None
            if "image" in record:
                image = path.parent / _field(record, "image", str, where)
            if "pdf" in record:
                pdf = path.parent / _field(record, "pdf", str, where)
            page = record.get("page")
            if pdf is not None and not isinstance(page, int):
                raise InputError(f"{where}: a \"pdf\" entry needs an integer \"page\"")
            prompt = record.get("prompt")
            if prompt is not None and not isinstance(prompt, str):
                raise InputError(f"{where}: \"prompt\" must be a string")
            item = Item(key, answers, image, pdf, page, prompt)
        else:
            source = _field(record, "source", str, where)
            item = Item(page_key(source, record.get("page")), [_field(record, "text", str, where)])
        if item.key in seen:
            raise InputError(f"{where}: \"{item.key}\" appears twice")
        seen.add(item.key)
        bench.items.append(item)
    return bench


def _fox(path: Path, data: list[dict]) -> Benchmark:
    # Fox's page images sit in en_pdf_png/ or cn_pdf_png/ beside the json (its README).
    image_dir = path.parent / f"{path.name.split('_')[0]}_pdf_png"
    bench = Benchmark(path, "ocr")
    for index, record in enumerate(data):
        where = f"{path}: entry {index}"
        turns = record.get("conversations")
        if not isinstance(turns, list) or len(turns) < 2 or not all(isinstance(t, dict) for t in turns):
            raise InputError(f"{where}: \"conversations\" must hold a question and an answer")
        image = _field(record, "image", str, where)
        prompt = str(turns[0].get("value", "")).replace("<image>", "").strip()
        bench.items.append(Item(Path(image).stem, [str(turns[1].get("value", ""))],
                                _first_existing(image_dir / image, path.parent / image), prompt=prompt))
    return bench


def _docvqa(path: Path, data: list) -> Benchmark:
    bench = Benchmark(path, "docvqa")
    for index, record in enumerate(data):
        where = f"{path}: data[{index}]"
        if not isinstance(record, dict):
            raise InputError(f"{where}: expected an object")
        answers = record.get("answers")
        if not isinstance(answers, list) or not answers:
            raise InputError(f"{where}: \"answers\" missing (the test split has no answers; use val_v1.0.json)")
        key = str(_field(record, "questionId", (int, str), where))
        image = _field(record, "image", str, where)
        bench.items.append(Item(key, [str(a) for a in answers], path.parent / image,
                                prompt=str(record.get("question", ""))))
    return bench


def _chartqa(path: Path, data: list[dict]) -> Benchmark:
    bench = Benchmark(path, "chartqa")
    for index, record in enumerate(data):
        where = f"{path}: entry {index}"
        name = _field(record, "imgname", str, where)
        label = _field(record, "label", (str, int, float), where)
        bench.items.append(Item(str(index), [str(label)], _first_existing(path.parent / "png" / name, path.parent / name),
                                prompt=str(record.get("query", ""))))
    return bench


def _nougat_pairs(root: Path, pdfs: list[Path]) -> Benchmark:
    bench = Benchmark(root, "ocr")
    for pdf in pdfs:
        mmd = pdf.with_suffix(".mmd")
        if mmd.is_file():
            bench.items.append(Item(pdf.relative_to(root).with_suffix("").as_posix(), [read_text(mmd)], pdf=pdf))
    if not bench.items:
        raise InputError(f"{root}: no X.pdf has an X.mmd beside it (nougat layout)")
    return bench


def _first_existing(*paths: Path) -> Path:
    return next((p for p in paths if p.exists()), paths[0])
