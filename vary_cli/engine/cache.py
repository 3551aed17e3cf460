"""The batch's KV cache: one buffer per layer in which every row has its own length.

A decode step writes each row's new keys at that row's own length, and each row attends to its own keys
only (an additive mask per row), so pages of any length share a batch and a page joins or leaves without
touching the others. A step may feed several tokens per row (the last chosen token plus a draft to
verify); rows with shorter drafts are padded, and `keep` then sets each row's length to the tokens it
accepted, which rolls the rejected positions back (they are masked out and later overwritten).
"""

from __future__ import annotations

import torch


class RowKVCache:
    """Key/value buffers (rows, heads, capacity, head_dim) per layer where every row has its own length.

    The model's attention calls `update` once per layer in a forward pass; `begin_step` sets where each
    row's tokens go beforehand. Buffers start zeroed: keys past a row's length are masked out, and a zero
    (not uninitialised memory, which may hold NaNs) times a zero weight is 0.
    """

    def __init__(self, model: torch.nn.Module, rows: int, capacity: int) -> None:
        probe = model.new_cache(1, 1)  # the family's layer, head and dtype layout
        n_layers, (_, heads, _, head_dim) = len(probe.keys), probe.keys[0].shape
        dtype, device = probe.keys[0].dtype, probe.keys[0].device
        shape = (rows, heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.capacity = capacity
        self.lengths: list[int] = []  # valid tokens stored, per active row (rows 0 .. n-1)
        self._slots = torch.zeros((0, 1), dtype=torch.long, device=device)  # (n, T): where each fed token goes
        self._rows = torch.zeros((0, 1), dtype=torch.long, device=device)
        self._end = 0

    def begin_step(self, width: int = 1) -> torch.Tensor:
        """Prepare a forward pass feeding `width` tokens per active row; returns their slots (n, width),
        which are also the tokens' positions (a row has no padding before its length)."""
        device = self.keys[0].device
        n = len(self.lengths)
        starts = torch.tensor(self.lengths, device=device)[:, None]  # (n, 1)
        self._slots = starts + torch.arange(width, device=device)[None]  # (n, width)
        self._rows = torch.arange(n, device=device)[:, None].expand(n, width)
        self._end = max(self.lengths) + width
        if self._end > self.capacity:
            raise RuntimeError(f"KV cache full: {self._end} > {self.capacity}")
        return self._slots

    def update(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.lengths)
        # key (n, H, T, D) -> rows/slots (n, T) index a (n, T, H, D) view of the writes
        self.keys[layer][self._rows, :, self._slots] = key.transpose(1, 2)
        self.values[layer][self._rows, :, self._slots] = value.transpose(1, 2)
        return self.keys[layer][:n, :, :self._end], self.values[layer][:n, :, :self._end]

    def advance(self, n: int) -> None:
        """Called by the model's forward once all layers wrote; lengths move in `keep` instead, once the
        engine knows how many of the fed tokens each row accepted."""

    def keep(self, counts: list[int]) -> None:
        """Each active row keeps the first `counts[r]` tokens it was fed in the last pass."""
        self.lengths = [length + count for length, count in zip(self.lengths, counts)]

    def bias(self, dtype: torch.dtype) -> torch.Tensor:
        """Additive mask (n, 1, T, end) of the pass: the token in slot s of row r sees that row's keys 0 .. s."""
        k_index = torch.arange(self._end, device=self._slots.device)[None, None]  # (1, 1, end)
        hidden = k_index > self._slots[:, :, None]  # (n, T, end)
        bias = torch.zeros(hidden.shape, dtype=dtype, device=self._slots.device)
        bias.masked_fill_(hidden, torch.finfo(dtype).min)
        return bias[:, None]

    def add_row(self, prefill, row: int, length: int) -> None:
        """Append row `row` of a prefill cache (its first `length` tokens) as a new active row."""
        slot = len(self.lengths)
        for ours, theirs in ((self.keys, prefill.keys), (self.values, prefill.values)):
            for layer, buffer in enumerate(ours):
                buffer[slot, :, :length] = theirs[layer][row, :, :length]
        self.lengths.append(length)

    def remove_row(self, slot: int) -> None:
        """Drop active row `slot`; the last active row moves into its place (one row's copy)."""
        last = len(self.lengths) - 1
        if slot != last:
            end = self.lengths[last]
            for buffer in self.keys + self.values:
                buffer[slot, :, :end] = buffer[last, :, :end]
            self.lengths[slot] = self.lengths[last]
        self.lengths.pop()

    def grown(self, model: torch.nn.Module, rows: int, capacity: int) -> "RowKVCache":
        """A larger cache holding this one's active rows (a longer page arrived)."""
        bigger = RowKVCache(model, rows, capacity)
        for layer, buffer in enumerate(self.keys):
            bigger.keys[layer][:, :, :self.capacity] = buffer
            bigger.values[layer][:, :, :self.capacity] = self.values[layer]
        bigger.lengths = list(self.lengths)
        return bigger
