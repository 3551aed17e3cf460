"""Draft tokens for speculative decoding, looked up in the page's own text (prompt-lookup drafting).

A row's last n generated tokens are looked up in its draft sources: the page's PDF text layer (tokenized
with the model's own tokenizer), the page's output so far, and the document's earlier pages. What
followed the match is the draft; the engine verifies it in one forward pass and keeps the longest prefix
equal to the model's own greedy choices, so drafts change how many passes a page takes, never its tokens.

The text layer is read in order: a cursor follows the accepted matches, and the match nearest after it
wins (a running head or a repeated phrase elsewhere on the page would derail a first-match lookup). The
draft length adapts per row: it doubles after a fully accepted draft and halves after a rejected one,
and a row whose drafts keep failing pauses drafting for 1, 3, 7, ... passes, so a page the sources do
not predict costs about what it costs without drafting (the padded columns of a rejected draft are
extra work in the verifying pass).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Sequence

from .config import DraftConfig


class NgramIndex:
    """Where every n-gram (ngram_min <= n <= ngram_max) of a growing token sequence ends."""

    def __init__(self, cfg: DraftConfig, tokens: Sequence[int] = ()) -> None:
        self.cfg = cfg
        self.tokens: list[int] = []
        self.ends: dict[tuple[int, ...], list[int]] = {}  # n-gram -> indices just past it, ascending
        self.extend(tokens)

    def extend(self, tokens: Sequence[int]) -> None:
        for token in tokens:
            self.tokens.append(token)
            end = len(self.tokens)
            for n in range(self.cfg.ngram_min, min(self.cfg.ngram_max, end) + 1):
                self.ends.setdefault(tuple(self.tokens[end - n:end]), []).append(end)

    def follow(self, tail: tuple[int, ...], length: int, after: int | None = None,
               before: int | None = None) -> tuple[int, list[int]] | None:
        """(index, the `length` tokens from it) after an occurrence of `tail`: the first one at or after
        `after` if given (else the last one), among those ending before `before`; None if none."""
        ends = self.ends.get(tail)
        if not ends:
            return None
        if before is not None:
            ends = ends[:bisect_left(ends, before)]
            if not ends:
                return None
        end = ends[-1]
        if after is not None:
            i = bisect_left(ends, after)
            end = ends[i] if i < len(ends) else ends[-1]
        following = self.tokens[end:end + length]
        return (end, following) if following else None


class RowDrafter:
    """One row's draft sources and its adaptive draft length."""

    def __init__(self, cfg: DraftConfig, text_layer: Sequence[int] | None, earlier: Sequence[Sequence[int]],
                 own_output: bool) -> None:
        self.cfg = cfg
        self.text = NgramIndex(cfg, text_layer) if text_layer else None
        self.earlier = [NgramIndex(cfg, page) for page in earlier if page]
        self.own = NgramIndex(cfg) if own_output else None
        self.cursor = 0  # where the text layer's reading has got to
        self.length = cfg.start_tokens
        self.misses = 0  # drafts rejected in a row
        self.paused = 0  # passes left without drafting
        self._text_match: int | None = None  # where the last draft came from in the text layer

    @property
    def has_sources(self) -> bool:
        return bool(self.text or self.earlier or self.own)

    def propose(self, generated: list[int], room: int) -> list[int]:
        """Up to min(adaptive length, room) tokens likely to follow `generated`; [] for none."""
        self._text_match = None
        if self.own is not None:
            self.own.extend(generated[len(self.own.tokens):])
        length = min(self.length, room)
        if length < 1 or self.paused:
            self.paused = max(0, self.paused - 1)
            return []
        for n in range(min(self.cfg.ngram_max, len(generated)), self.cfg.ngram_min - 1, -1):
            tail = tuple(generated[-n:])
            if self.text is not None:
                found = self.text.follow(tail, length, after=self.cursor)
                if found:
                    self._text_match = found[0]
                    return found[1]
            if self.own is not None:  # not the tail itself: an earlier occurrence
                found = self.own.follow(tail, length, before=len(generated))
                if found:
                    return found[1]
            for page in self.earlier:
                found = page.follow(tail, length)
                if found:
                    return found[1]
        return []

    def feedback(self, proposed: int, accepted: int) -> None:
        """The engine verified a draft of `proposed` tokens and accepted the first `accepted`."""
        if self._text_match is not None and accepted:
            self.cursor = self._text_match + accepted
        if accepted == proposed:
            self.length = min(2 * self.length, self.cfg.max_tokens)
            self.misses = 0
        elif accepted == 0:
            self.length = max(1, self.length // 2)
            self.misses += 1
            self.paused = min(2 ** self.misses - 1, 63)
        else:
            self.misses = 0
