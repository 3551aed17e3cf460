"""Qwen-1's byte-level BPE tokenizer, read from a checkpoint's `qwen.tiktoken` (vary.md §7).

`QwenTokenizer.from_file(path)` builds a tiktoken `Encoding` from the ranks with Qwen-1's
pre-tokenization pattern and special tokens (`<|endoftext|>`, `<|im_start|>`, `<|im_end|>`, 205 extras,
then the Qwen-VL tokens whose `<img>`, `</img>`, `<imgpad>` Vary uses), numbered after the last rank.
`encode()` never parses special tokens out of text: a page or prompt that contains `<|im_end|>` is
encoded as ordinary text. Special tokens enter a prompt only by id (see `prompts.py`). Used by
`checkpoint.load()`, `prompts.py` and `generate.py`'s callers.
"""

from __future__ import annotations

import base64
import unicodedata
from pathlib import Path

from ..errors import WeightsError

# tokenization_qwen.py's PAT_STR.
QWEN_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
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

    def __init__(self, ranks: dict[bytes, int], name: str = "qwen") -> None:
        import tiktoken

        self.special = {token: len(ranks) + i for i, token in enumerate(SPECIAL_TOKENS)}
        self.encoding = tiktoken.Encoding(name=name, pat_str=QWEN_PATTERN, mergeable_ranks=ranks,
                                          special_tokens=self.special)
        self.n_ranks = len(ranks)
        self.endoftext_id = self.special[ENDOFTEXT]
        self.im_start_id = self.special[IM_START]
        self.im_end_id = self.special[IM_END]
        self.img_start_id = self.special[IMG_START]
        self.img_end_id = self.special[IMG_END]
        self.img_pad_id = self.special[IMG_PAD]

    @classmethod
    def from_file(cls, path: Path) -> "QwenTokenizer":
        return cls(read_ranks(Path(path)), name=str(path))

    @property
    def vocab_size(self) -> int:
        """Ranks plus special tokens (the model's embedding may be larger: it is padded)."""
        return self.n_ranks + len(self.special)

    def encode(self, text: str) -> list[int]:
        """Ids of `text` with every special-token string treated as plain text.

        Text is NFC-normalized first, as Qwen-1's `QWenTokenizer.tokenize` does.
        """
        return self.encoding.encode(unicodedata.normalize("NFC", text), allowed_special=set(), disallowed_special=())

    def decode(self, ids: list[int]) -> str:
        """Text of `ids` without special tokens; broken UTF-8 becomes U+FFFD as in the original."""
        return self.encoding.decode([i for i in ids if i < self.n_ranks], errors="replace")

    def decode_bytes(self, ids: list[int]) -> bytes:
        return self.encoding.decode_bytes([i for i in ids if i < self.n_ranks])


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
