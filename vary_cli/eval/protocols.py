"""`--protocol`: how each benchmark's own script scores OCR pages, one frozen record per benchmark.

The scripts disagree in ways that move the numbers (checked against the scripts themselves):

- nougat (facebookresearch/nougat, nougat/metrics.py `compute_metrics`): whitespace tokens; a page whose
  prediction or ground truth has fewer than 4 characters is left out of every mean.
- fox (ucaslcl/Fox, eval_tools/eval_ocr_test.py): jieba tokens when either string has Chinese, else
  whitespace; every page counts but one with nothing on either side (below).
- got (Ucas-HaoranWei/GOT-OCR2.0, eval/pyevaltools/eval_ocr.py): Fox's tokens; a page with an empty
  prediction or ground truth is dropped from the mean (`minlen=1`).
- got-scene (eval_ocr_scene.py): one token per character, spaces included; empty pages dropped.

Every script scores the strings as they are, without stripping whitespace, and so do we (readers.py):
under nougat "abc " has 4 characters and is scored, under got a page of one space is scored.

A page with nothing to score on either side (both empty, or whitespace only where tokens are split on
whitespace) is skipped and counted under every protocol. The scripts cannot score it: Fox's edit
distance divides by zero on two empty strings, and nltk's precision and recall of two empty token sets
are None, which every script's mean then fails on. Nor would one value be right on every metric: edit
distance would call the page perfect while F1, BLEU and METEOR call it a miss. A page empty on one
side only is a miss on every metric (edit distance 1, the rest 0).

Fox and GOT call `cal_per_metrics(ann["label"], ann["answer"])` into parameters named (pred, gt): the
ground truth goes in as the prediction. Their published precision is therefore recall (and the reverse)
and their BLEU/METEOR score the ground truth against the prediction. `--swap-pred-gt` reproduces that
order; the default is the correct one. Edit distance and F1 are symmetric and do not change.
"""

from __future__ import annotations

from dataclasses import dataclass

from .tokens import TOKENIZERS


@dataclass(frozen=True)
class Protocol:
    """How one benchmark's script scores a page."""

    name: str
    tokenizer: str
    """One of tokens.TOKENIZERS."""
    min_length: int
    """A page whose prediction or ground truth is shorter than this (in characters) is skipped."""
    source: str
    """The reference script this follows."""

    def __post_init__(self) -> None:
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"protocol {self.name}: tokenizer must be one of {TOKENIZERS}")
        if self.min_length < 0:
            raise ValueError(f"protocol {self.name}: min_length must be >= 0")

    def skip_reason(self, pred: str, gt: str) -> str | None:
        """Why this page is left out of the means, or None when it is scored."""
        if len(pred) < self.min_length or len(gt) < self.min_length:
            side = "prediction" if len(pred) < self.min_length else "ground truth"
            return f"{side} shorter than {self.min_length} characters ({self.name} protocol)"
        if not self._has_tokens(pred) and not self._has_tokens(gt):
            return "nothing to score: empty on both sides"
        return None

    def _has_tokens(self, text: str) -> bool:
        # Without a token a text is empty, or, split on whitespace, whitespace only (jieba runs only when a
        # side holds Chinese, so it never sees a whitespace-only pair).
        return bool(text) if self.tokenizer == "chars" else bool(text.strip())


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("fox", "jieba", 0, "ucaslcl/Fox eval_tools/eval_ocr_test.py"),
    Protocol("got", "jieba", 1, "Ucas-HaoranWei/GOT-OCR2.0 GOT/eval/pyevaltools/eval_ocr.py"),
    Protocol("got-scene", "chars", 1, "Ucas-HaoranWei/GOT-OCR2.0 GOT/eval/pyevaltools/eval_ocr_scene.py"),
    Protocol("nougat", "whitespace", 4, "facebookresearch/nougat nougat/metrics.py"),
)}
DEFAULT_PROTOCOL = "fox"


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}") from None
