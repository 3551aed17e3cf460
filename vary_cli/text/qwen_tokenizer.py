"""Qwen's byte-level BPE tokenizer, read from a checkpoint's `qwen.tiktoken` or `tokenizer.json` (vary.md §7).

`QwenTokenizer.from_file(path)` builds a tiktoken `Encoding` from the ranks with Qwen-1's
pre-tokenization pattern and special tokens (`<|endoftext|>`, `<|im_start|>`, `<|im_end|>`, 205 extras,
then the Qwen-VL tokens whose `<img>`, `</img>`, `<imgpad>` Vary uses), numbered after the last rank.
`encode()` never parses special tokens out of text: a page or prompt that contains `<|im_end|>` is
encoded as ordinary text. Special tokens enter a prompt only by id (see `prompts.py`). Used by
`checkpoint.load()`, `prompts.py` and `generate.py`'s callers.

GOT-OCR2.0 uses the same vocabulary and special tokens, tokenized as transformers tokenizes it
(`GotOcr2Processor`): with the pattern of transformers' `TikTokenConverter` (`GOT_PATTERN`, digits in
runs of up to three where Qwen-1 splits every digit) and without Qwen-1's NFC normalization. The
original release's `qwen.tiktoken` is read with that pattern (`from_file(path, GOT_PATTERN, nfc=False)`);
the hf release's `tokenizer.json`, which transformers converted from the same file, is read back into
the same ranks by `from_tokenizer_json`, so one tiktoken encoder serves every release.
"""

from __future__ import annotations

import base64
import unicodedata
from pathlib import Path

from ..errors import WeightsError

# tokenization_qwen.py's PAT_STR.
QWEN_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
                r"""\s*[\r\n]+|\s+(?!\S)|\s+""")
# transformers' TikTokenConverter default, which convert_got_ocr2_weights_to_hf.py passes for GOT's
# tokenizer.json (the cl100k/Llama-3 pattern: `\p{N}{1,3}` where Qwen-1 has `\p{N}`).
GOT_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
               r"""\s*[\r\n]+|\s+(?!\S)|\s+""")
ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
IMG_START, IMG_END, IMG_PAD = "<img>", "</img>", "<imgpad>"
# Order matters: ids are assigned in this order right after the last BPE rank.
SPECIAL_TOKENS: tuple[str, ...] = (
    (ENDOFTEXT, IM_START, IM_END)
    + tuple(f"<|extra_{i}|>" for i in range(205))
    + ("<ref>", "</ref>", "<box>", "</box>", "<quad>", "</quad>", IMG_START, IMG_END, IMG_PAD)
)


def read_ranks(path: Path) -> dict[bytes, int]:
    """Parse a `qwen.tiktoken` file: one `base64(bytes) rank` per line."""
    if not path.is_file():
        raise WeightsError(f"{path.parent}: no {path.name}; the checkpoint's tokenizer file is missing")
    ranks: dict[bytes, int] = {}
    try:
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                token, rank = line.split()
                ranks[base64.b64decode(token, validate=True)] = int(rank)
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a tiktoken rank file (line {number}: {exc})") from None
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise WeightsError(f"{path}: ranks are not 0..{len(ranks) - 1} without gaps")
    return ranks


class QwenTokenizer:
    """Qwen-1 tokenizer with the Qwen-VL special tokens; ids match the released Vary models."""

    def __init__(self, ranks: dict[bytes, int], name: str = "qwen", pattern: str = QWEN_PATTERN,
                 nfc: bool = True) -> None:
        import tiktoken

        self.special = {token: len(ranks) + i for i, token in enumerate(SPECIAL_TOKENS)}
        self.encoding = tiktoken.Encoding(name=name, pat_str=pattern, mergeable_ranks=ranks,
                                          special_tokens=self.special)
        self.nfc = nfc
        self.n_ranks = len(ranks)
        self.endoftext_id = self.special[ENDOFTEXT]
        self.im_start_id = self.special[IM_START]
        self.im_end_id = self.special[IM_END]
        self.img_start_id = self.special[IMG_START]
        self.img_end_id = self.special[IMG_END]
        self.img_pad_id = self.special[IMG_PAD]

    @classmethod
    def from_file(cls, path: Path, pattern: str = QWEN_PATTERN, nfc: bool = True) -> "QwenTokenizer":
        return cls(read_ranks(Path(path)), name=str(path), pattern=pattern, nfc=nfc)

    @classmethod
    def from_tokenizer_json(cls, path: Path) -> "QwenTokenizer":
        """Read a `tokenizer.json` that transformers converted from a `qwen.tiktoken` (GOT's hf release).

        Such a file holds the ranks as its BPE vocabulary (byte-level characters, ids 0..n-1), merges in
        rank order, `ignore_merges` (a piece in the vocabulary is one token, as in tiktoken), the split
        pattern, and the special tokens after the ranks. Anything else is refused, since reading it as
        ranks would then give other ids than the file's own tokenizer.
        """
        data = _read_tokenizer_json(path)
        try:
            model, pre = data["model"], data["pre_tokenizer"]
            splits = [p for p in pre.get("pretokenizers", [pre]) if p.get("type") == "Split"]
            pattern = splits[0]["pattern"]["Regex"]
            vocab = model["vocab"]
            kind_ok = model.get("type") == "BPE" and model.get("ignore_merges") and len(splits) == 1 \
                and not data.get("normalizer")
        except (KeyError, IndexError, TypeError, AttributeError):
            kind_ok = False
        if not kind_ok:
            raise WeightsError(f"{path}: not a Qwen tokenizer converted from qwen.tiktoken (expected a BPE with "
                               "ignore_merges, one Split pre-tokenizer and no normalizer)")
        from .gpt2_tokenizer import byte_decoder

        table = byte_decoder()
        try:
            ranks = {bytes(table[c] for c in token): rank for token, rank in vocab.items()}
        except KeyError:
            raise WeightsError(f"{path}: the vocabulary holds a token that is not byte-level BPE") from None
        if sorted(ranks.values()) != list(range(len(ranks))):
            raise WeightsError(f"{path}: vocabulary ids are not 0..{len(ranks) - 1} without gaps")
        added = {entry["content"]: entry["id"] for entry in data.get("added_tokens", [])}
        expected = {token: len(ranks) + i for i, token in enumerate(SPECIAL_TOKENS)}
        wrong = [t for t, i in expected.items() if added.get(t) != i]
        if wrong:
            raise WeightsError(f"{path}: special token {wrong[0]} has id {added.get(wrong[0])}, expected "
                               f"{expected[wrong[0]]} (Qwen's order after the {len(ranks)} ranks)")
        return cls(ranks, name=str(path), pattern=pattern, nfc=False)

    @property
    def vocab_size(self) -> int:
        """Ranks plus special tokens (the model's embedding may be larger: it is padded)."""
        return self.n_ranks + len(self.special)

    def encode(self, text: str) -> list[int]:
        """Ids of `text` with every special-token string treated as plain text.

        Text is NFC-normalized first, as Qwen-1's `QWenTokenizer.tokenize` does (not for GOT: `nfc`).
        """
        if self.nfc:
            text = unicodedata.normalize("NFC", text)
        return self.encoding.encode(text, allowed_special=set(), disallowed_special=())

    def decode(self, ids: list[int]) -> str:
        """Text of `ids` without special tokens; broken UTF-8 becomes U+FFFD as in the original."""
        return self.encoding.decode([i for i in ids if i < self.n_ranks], errors="replace")

    def decode_bytes(self, ids: list[int]) -> bytes:
        return self.encoding.decode_bytes([i for i in ids if i < self.n_ranks])


def _read_tokenizer_json(path: Path) -> dict:
    import json

    if not path.is_file():
        raise WeightsError(f"{path.parent}: no {path.name}; the checkpoint's tokenizer file is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise WeightsError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: expected a JSON object")
    return data


class StreamDecoder:
    """Turns a token stream into text pieces, holding back a piece until its UTF-8 is complete."""

    def __init__(self, tokenizer: QwenTokenizer) -> None:
        self.tokenizer = tokenizer
        self.pending = b""

    def feed(self, token: int) -> str:
        self.pending += self.tokenizer.decode_bytes([token])
        try:
            text = self.pending.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.reason == "unexpected end of data":
                return ""  # a multi-byte character continues in the next token
            text = self.pending.decode("utf-8", errors="replace")
        self.pending = b""
        return text
