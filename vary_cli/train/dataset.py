"""Training data for `vary train`: read and validate data files, build token ids and labels, batch them.

Data files are JSONL (one sample per line) or a JSON list (the original's format), in the LLaVA-style
conversation format, with image paths relative to the data file (training.md §2):

    {"image": "pages/0001.png",
     "conversations": [{"from": "human", "value": "<image>\\nProvide the ocr results of this image."},
                       {"from": "gpt", "value": "text of the page ..."}]}

or plain OCR pairs `{"image": "pages/0001.png", "text": "text of the page ..."}`, which become that same
conversation with the release's own OCR prompt. `read_samples` checks every sample's shape and
`check_images` every image before training starts; each problem is an `InputError` naming the file
and line (the original silently trained on sample 0 instead of a broken image).

`encode_conversation` renders a conversation with the inference template (prompts.py) as token ids and
builds the labels from the token spans directly: IGNORE_INDEX on the system turn, every user turn and
each `<|im_start|>assistant\\n` header; each answer and its closing `<|im_end|>` are learned
(training.md §3). `encode_vocabulary_sample` is Vary-tiny's vocabulary-stage sequence
(vary/data/caption_opt.py): the image tokens alone, then the answer. `TrainDataset` + `collate` give
right-padded batches for either family. Used by `loop.py`.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from ..models.config import GotConfig, ModelConfig, VaryConfig, VaryTinyConfig
from ..errors import InputError
from ..text.prompts import PRESETS, SYSTEM, got_query
from ..text.qwen_tokenizer import QwenTokenizer
from ..text.gpt2_tokenizer import OPTTokenizer

IGNORE_INDEX = -100
IMAGE_PLACEHOLDER = "<image>"
HUMAN, GPT = "human", "gpt"


@dataclass(frozen=True)
class Sample:
    """One training conversation: `turns` alternate (human, gpt), starting with human, ending with gpt."""

    source: Path
    line: int
    image: Path | None
    turns: tuple[tuple[str, str], ...]

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass(frozen=True)
class Encoded:
    """Token ids and labels of one sample, already truncated to the maximum length."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool

    @property
    def n_targets(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


@dataclass
class DataReport:
    """What validation found: counts for the user, and the files' fingerprint for --resume."""

    samples: int = 0
    with_image: int = 0
    tokens: int = 0
    target_tokens: int = 0
    truncated: int = 0
    # Samples whose answers were cut away entirely by --max-length: they teach nothing.
    no_targets: int = 0
    fingerprint: str = ""
    warnings: list[str] = field(default_factory=list)


def ocr_question(prompt_style: str) -> str:
    """The human turn of a plain OCR pair: the model's own inference prompt (vary.md §8); GOT's plain OCR
    query as `vary ocr` asks it (transformers' ` OCR: `)."""
    if prompt_style == "got-ocr2":
        return IMAGE_PLACEHOLDER + "\n" + got_query(False)
    sep = "\n" if prompt_style == "vary-toy" else ""
    return IMAGE_PLACEHOLDER + sep + PRESETS["ocr"]


def read_samples(path: Path, prompt_style: str = "vary-toy") -> list[Sample]:
    """Parse a JSONL file or a JSON list into Samples; any malformed sample is an InputError with its line.

    Args:
        path: the data file; image paths inside it are relative to its directory.
        prompt_style: "vary-toy" or "vary-base": the question of plain `{"image", "text"}` pairs.
    """
    path = Path(path)
    samples = [parse_sample(path, line, raw, prompt_style) for line, raw in read_records(path)]
    if not samples:
        raise InputError(f"{path}: no samples")
    return samples


def read_records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, decoded JSON value) of each record in a JSONL data file or the original's JSON list.

    Raises:
        InputError: the file is missing, unreadable, not UTF-8 or not valid JSON (naming the line).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such data file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the data file ({exc})") from None
    return _records(path, text)


def _records(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    stripped = text.lstrip()
    decoder = json.JSONDecoder()
    if stripped.startswith("["):
        # The original's JSON list: decode item by item to know the line each one starts on.
        pos = len(text) - len(stripped) + 1
        line, counted = 1, 0  # newlines are counted once, as pos moves on (not from the start every item)
        while True:
            pos = _skip_space(text, pos)
            if pos < len(text) and text[pos] == "]":
                return
            line += text.count("\n", counted, pos)
            counted = pos
            try:
                value, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
            yield line, value
            pos = _skip_space(text, pos)
            if pos < len(text) and text[pos] == ",":
                pos += 1
            elif pos >= len(text) or text[pos] != "]":
                raise InputError(f"{path}:{text.count(chr(10), 0, pos) + 1}: expected ',' or ']' in the JSON list")
        return
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            yield number, json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def parse_sample(path: Path, line: int, raw: object, prompt_style: str = "vary-toy") -> Sample:
    """One record of a data file as a Sample; InputError naming `path:line` when `vary train` would refuse it."""
    where = f"{path}:{line}"
    if not isinstance(raw, dict):
        raise InputError(f"{where}: a sample must be a JSON object, got {type(raw).__name__}")
    image = raw.get("image")
    if image is not None and (not isinstance(image, str) or not image):
        raise InputError(f"{where}: 'image' must be a non-empty path string")
    image_path = (path.parent / image) if image else None
    if "conversations" in raw:
        turns = _parse_turns(where, raw["conversations"])
    elif "text" in raw:
        if not isinstance(raw["text"], str):
            raise InputError(f"{where}: 'text' must be a string")
        if image_path is None:
            raise InputError(f"{where}: a {{'image', 'text'}} OCR pair needs an 'image'")
        turns = ((HUMAN, ocr_question(prompt_style)), (GPT, raw["text"]))
    else:
        raise InputError(f"{where}: a sample needs 'conversations' (human/gpt turns) or 'text' (an OCR pair)")
    placeholders = [role for role, value in turns for _ in range(value.count(IMAGE_PLACEHOLDER))]
    if image_path is not None and placeholders != [HUMAN]:
        # The original replaces every <image> but fills only the first with image features.
        raise InputError(f"{where}: a sample with an image needs exactly one {IMAGE_PLACEHOLDER} in a human "
                         f"turn, found {len(placeholders)}" + (" (in a gpt turn)" if GPT in placeholders else ""))
    if image_path is None and placeholders:
        raise InputError(f"{where}: {IMAGE_PLACEHOLDER} appears but the sample has no 'image'")
    return Sample(source=path, line=line, image=image_path, turns=turns)


def _parse_turns(where: str, conversations: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(conversations, list) or not conversations:
        raise InputError(f"{where}: 'conversations' must be a non-empty list of {{'from', 'value'}} turns")
    turns = []
    for index, turn in enumerate(conversations):
        if not isinstance(turn, dict) or turn.get("from") not in (HUMAN, GPT) \
                or not isinstance(turn.get("value"), str):
            raise InputError(f"{where}: turn {index + 1} must be {{\"from\": \"human\"|\"gpt\", \"value\": string}}")
        turns.append((turn["from"], turn["value"]))
    if turns[0][0] == GPT:
        turns = turns[1:]  # the original drops a leading gpt turn
    for index, (role, _) in enumerate(turns):
        if role != (HUMAN, GPT)[index % 2]:
            raise InputError(f"{where}: turns must alternate human, gpt (turn {index + 1} is {role})")
    if not turns or turns[-1][0] != GPT:
        raise InputError(f"{where}: the conversation must end with a gpt turn (the answer to learn)")
    return tuple(turns)


def encode_conversation(tokenizer: QwenTokenizer, turns: tuple[tuple[str, str], ...], image_token_len: int,
                        max_length: int) -> Encoded:
    """Ids and labels of a conversation in the release's template, truncated to `max_length` tokens.

    Every `gpt` turn is `<|im_start|>assistant\\n{answer}<|im_end|>`; labels keep the answer and its
    `<|im_end|>` and set IGNORE_INDEX elsewhere. Text between special tokens is encoded as one piece, as
    the original's whole-string tokenization does, so the ids are the original's. The original then
    masks as many tokens as `<|im_start|>assistant\\n` has when tokenized alone; counting the header
    the same way keeps its labels even when an answer's leading newline merges with the header's.
    """
    t = tokenizer
    image = [t.img_start_id] + [t.img_pad_id] * image_token_len + [t.img_end_id]
    header_len = len(t.encode("assistant\n"))
    ids = [t.im_start_id] + t.encode("system\n" + SYSTEM) + [t.im_end_id]
    labels = [IGNORE_INDEX] * len(ids)
    for role, value in turns:
        if role == HUMAN:
            before, _, after = value.partition(IMAGE_PLACEHOLDER)
            body = t.encode("user\n" + before)
            if IMAGE_PLACEHOLDER in value:
                body += image + t.encode(after)
            turn = [t.im_start_id] + body + [t.im_end_id]
            ids += turn
            labels += [IGNORE_INDEX] * len(turn)
        else:
            body = t.encode("assistant\n" + value)
            ids += [t.im_start_id] + body + [t.im_end_id]
            labels += [IGNORE_INDEX] * (1 + header_len) + body[header_len:] + [t.im_end_id]
    truncated = len(ids) > max_length
    # The original tokenizes with truncation=True: the tail is cut, nothing is appended.
    return Encoded(ids[:max_length], labels[:max_length], truncated)


def encode_vocabulary_sample(tokenizer: OPTTokenizer, turns: tuple[tuple[str, str], ...], image_token_len: int,
                             max_length: int) -> Encoded:
    """Vary-tiny's vocabulary-stage ids and labels, as vary/data/caption_opt.py builds them.

    The first human turn becomes the image alone (its text is dropped), every turn gets "\\n" appended, the
    turns are joined and `</s>` closes them: `<img>{<imgpad> x N}</img>\\n{answer}\\n</s>`, tokenized by
    OPT's slow GPT-2 tokenizer, which prepends `</s>` and, in the transformers the original pins (4.32),
    strips the whitespace beside the added image tokens: the "\\n" after `</img>` (and any leading
    whitespace of the answer) never becomes a token, while the "\\n" before `</s>` (an AddedToken that
    strips nothing) does. If truncation cuts the end, the last token is forced to `</s>`.

    Labels copy the ids, then the original's `_mask_targets` runs on per-turn lengths taken by tokenizing
    each turn alone (so each length counts a `</s>` of its own): IGNORE_INDEX on `[0, 1)` and, for each
    human turn, on `[start, length)`, with the turn's *length* as the end index. For the stage's
    image + text pairs this masks exactly `</s>` and the image tokens, and the answer, its "\\n" and the
    closing `</s>` are learned. In longer conversations the original's end index falls before the start,
    so later human turns are learned too; that is what it trained on, and it is reproduced here.
    """
    t = tokenizer
    image = [t.img_start_id] + [t.img_pad_id] * image_token_len + [t.img_end_id]
    rest = "".join(value + "\n" for _, value in turns[1:])
    ids = [t.bos_id] + image + t.encode(rest.lstrip()) + [t.eos_id]
    truncated = len(ids) > max_length
    ids = ids[:max_length]
    if ids[-1] != t.eos_id:
        ids[-1] = t.eos_id
    # Per-turn lengths as the original measures them: an empty header, the image turn, then each turn alone.
    lengths = [1, 1 + len(image)] + [1 + len(t.encode(value + "\n")) for _, value in turns[1:]]
    lengths = [min(n, max_length) for n in lengths]
    labels = list(ids)
    start = lengths[0]
    labels[:start] = [IGNORE_INDEX] * start
    for (role, _), length in zip(turns, lengths[1:]):
        if role == HUMAN:
            labels[start:length] = [IGNORE_INDEX] * len(labels[start:length])  # the original's end index
        start += length
    return Encoded(ids, labels, truncated)


def encoder_for(config: ModelConfig):
    """The sequence builder of a model family: the chat template (Qwen) or the vocabulary stage (OPT)."""
    return encode_vocabulary_sample if isinstance(config, VaryTinyConfig) else encode_conversation


def file_fingerprint(paths: list[Path]) -> str:
    """sha256 over the data files' contents, so --resume can tell that the data changed."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


def encode_all(samples: list[Sample], tokenizer: QwenTokenizer | OPTTokenizer, config: ModelConfig,
               max_length: int) -> DataReport:
    """Encode every sample once to check it fits; the report counts truncated and answer-less samples.

    Raises:
        InputError: a sample's image tokens do not fit in `max_length` (the merge would fail), or a
            vocabulary-stage sample has no image.
    """
    report = DataReport(samples=len(samples))
    encode = encoder_for(config)
    for sample in samples:
        if isinstance(config, VaryTinyConfig) and sample.image is None:
            # The original would feed an all-zero page behind the image tokens; a mistake in the data, here.
            raise InputError(f"{sample.where}: the vocabulary stage trains on image + text pairs; this sample "
                             "has no 'image'")
        encoded = encode(tokenizer, sample.turns, config.image_token_len, max_length)
        if sample.image is not None:
            report.with_image += 1
            if config.im_end_token not in encoded.input_ids:
                raise InputError(f"{sample.where}: the image tokens end after --max-length {max_length}; "
                                 "raise --max-length or shorten the question before <image>")
        report.tokens += len(encoded.input_ids)
        report.target_tokens += encoded.n_targets
        report.truncated += encoded.truncated
        report.no_targets += encoded.n_targets == 0
    if report.truncated:
        report.warnings.append(f"{report.truncated} sample(s) longer than --max-length {max_length} are cut")
    if report.no_targets:
        report.warnings.append(f"{report.no_targets} sample(s) have no answer token left after truncation "
                               "and teach nothing")
    return report


def check_images(samples: list[Sample], workers: int = 8) -> None:
    """Decode every image; raise one InputError listing the missing or unreadable ones.

    A full decode, not a header check: a truncated file would otherwise pass here and stop the run at
    its first batch, from inside a data-loader worker.
    """
    from ..models.preprocess import load_image

    def problem(sample: Sample) -> str | None:
        if sample.image is None:
            return None
        if not sample.image.is_file():
            return f"{sample.where}: {sample.image} (missing)"
        try:
            load_image(sample.image).close()
        except InputError as exc:
            return f"{sample.where}: {exc}"
        return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        problems = [p for p in pool.map(problem, samples) if p]
    if problems:
        shown = "; ".join(problems[:5])
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise InputError(f"{len(problems)} image(s) missing or unreadable: {shown}{more}")


class TrainDataset(torch.utils.data.Dataset):
    """Samples -> dicts of input_ids, labels and the pixels of the model's towers: `clip` and `sam` for
    Vary-toy/base (zeros for a sample without image), `sam` alone for Vary-tiny."""

    def __init__(self, samples: list[Sample], tokenizer: QwenTokenizer | OPTTokenizer, config: ModelConfig,
                 max_length: int):
        self.samples = samples
        self.tokenizer = tokenizer
        self.config = config
        self.max_length = max_length

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        from ..models.preprocess import load_image

        sample = self.samples[index]
        encoded = encoder_for(self.config)(self.tokenizer, sample.turns, self.config.image_token_len,
                                           self.max_length)
        ids = {"input_ids": torch.tensor(encoded.input_ids), "labels": torch.tensor(encoded.labels)}
        try:
            image = load_image(sample.image) if sample.image is not None else None
            return {**ids, **PIXELS[type(self.config)](image, self.config)}
        except InputError as exc:
            raise InputError(f"{sample.where}: {exc}") from None


def _tiny_pixels(image, config) -> dict[str, torch.Tensor]:
    # train_transform's deterministic part (its Resize + Normalize are test_transform); the random
    # augmentations it applies to a few percent of pages are left out (see train_vocabulary).
    from ..models.preprocess import linear_imagenet_pixels

    return {"sam": linear_imagenet_pixels(image, config.sam)}


def _qwen_pixels(image, config) -> dict[str, torch.Tensor]:
    from ..models.preprocess import preprocess_page

    if image is None:  # as the original: all-zero images, whose features the model adds times zero
        clip_size, sam_size = config.clip.image_size, config.sam.image_size
        return {"clip": torch.zeros(3, clip_size, clip_size), "sam": torch.zeros(3, sam_size, sam_size)}
    pixels = preprocess_page(image, config)
    return {"clip": pixels.clip, "sam": pixels.sam}


def _got_pixels(image, config) -> dict[str, torch.Tensor]:
    # One 1024² view, as GotOcr2Processor prepares an uncropped page (the original trains multi-crop
    # data in its post-training too; these samples are single pages).
    from ..models.preprocess import got_tiles

    size = config.sam.image_size
    return {"sam": torch.zeros(3, size, size) if image is None else got_tiles(image, size, None)[0]}


# The pixels each family's training batch carries, by config type.
PIXELS = {VaryTinyConfig: _tiny_pixels, VaryConfig: _qwen_pixels, GotConfig: _got_pixels}


def collate(items: list[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of samples into a batch: ids with `pad_id` (<|endoftext|>, or OPT's <pad>), labels
    with IGNORE_INDEX; the pixels are stacked ((B, 3, 224, 224) `clip`, (B, 3, 1024, 1024) `sam`)."""
    pad = torch.nn.utils.rnn.pad_sequence
    input_ids = pad([item["input_ids"] for item in items], batch_first=True, padding_value=pad_id)  # (B, T)
    labels = pad([item["labels"] for item in items], batch_first=True, padding_value=IGNORE_INDEX)  # (B, T)
    pixels = {key: torch.stack([item[key] for item in items]) for key in ("clip", "sam") if key in items[0]}
    return {"input_ids": input_ids, "labels": labels, **pixels}
