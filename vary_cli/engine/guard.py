"""The repetition guard: a page whose model loops stops with finish_reason "repetition"."""

from __future__ import annotations


class RepetitionGuard:
    """Spots a token stream whose tail repeats one cycle for a long stretch: the page model is looping.

    For every period p up to `max_period` it keeps the length of the current run of tokens equal to the
    token p places earlier, so each new token costs O(max_period). A loop is declared when the tail is
    periodic over at least max(span, min_repeats * p) tokens. The threshold is long on purpose: tables
    and lists legitimately repeat short patterns a few times, a looping model repeats them for ever.
    """

    def __init__(self, span: int, max_period: int, min_repeats: int) -> None:
        self.span, self.max_period, self.min_repeats = span, max_period, min_repeats
        self.tokens: list[int] = []
        self.runs = [0] * (max_period + 1)  # runs[p]: trailing tokens with t[i] == t[i - p]

    def feed(self, token: int) -> int | None:
        """Add a token; return how many tokens to keep if the stream now loops, else None."""
        tokens = self.tokens
        tokens.append(token)
        n = len(tokens)
        for p in range(1, min(self.max_period, n - 1) + 1):
            self.runs[p] = self.runs[p] + 1 if tokens[-1] == tokens[-1 - p] else 0
            periodic = self.runs[p] + p  # length of the periodic tail
            if periodic >= max(self.span, self.min_repeats * p):
                # Keep the text before the loop and one pass of the cycle, which is usually real content.
                return n - periodic + p
        return None
