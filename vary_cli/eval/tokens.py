"""How each benchmark splits a page into tokens for F1, BLEU and METEOR.

- `whitespace`: `str.split()` (nougat, and Fox/GOT on text without Chinese).
- `jieba`: Fox's and GOT's rule: when either string holds a character in U+4E00..U+9FA5 (their regex,
  kept exactly), both strings are cut with `jieba.lcut`; otherwise whitespace.
- `chars`: one token per character, spaces included (GOT's scene-text script, `list(text)`).
"""

from __future__ import annotations

import logging
import re

TOKENIZERS = ("whitespace", "jieba", "chars")
# The reference scripts' `contain_chinese_string` pattern (CJK Unified Ideographs up to U+9FA5 only).
_CHINESE = re.compile(r"[\u4e00-\u9fa5]")
_jieba = None


def has_chinese(text: str) -> bool:
    return bool(_CHINESE.search(text))


def _lcut(text: str) -> list[str]:
    global _jieba
    if _jieba is None:
        import jieba

        jieba.setLogLevel(logging.WARNING)  # its "Building prefix dict" lines would land on our stderr
        _jieba = jieba
    return _jieba.lcut(text)


def load_jieba() -> None:
    """Load jieba's dictionary now (a second or two), e.g. once in a parent before its workers fork."""
    _lcut("")


def tokenize_pair(pred: str, gt: str, tokenizer: str) -> tuple[list[str], list[str]]:
    """(prediction tokens, ground-truth tokens) under `tokenizer` (one of TOKENIZERS)."""
    if tokenizer == "chars":
        return list(pred), list(gt)
    if tokenizer == "jieba" and (has_chinese(pred) or has_chinese(gt)):
        return _lcut(pred), _lcut(gt)
    if tokenizer in TOKENIZERS:
        return pred.split(), gt.split()
    raise ValueError(f"unknown tokenizer {tokenizer!r}; expected one of {TOKENIZERS}")
