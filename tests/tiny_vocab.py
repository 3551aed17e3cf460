"""A tiny Qwen-1 style vocabulary for tiny test checkpoints.

256 byte tokens and no merges: rank r is the single byte r. The special tokens then follow the ranks
in Qwen-1's order, exactly as in the real qwen.tiktoken (where the ranks number 151643), so every id
is the real one minus (151643 - 256).
"""

import base64
from pathlib import Path

TINY_RANKS = 256
REAL_RANKS = 151643
# <|endoftext|>, <|im_start|>, <|im_end|>, 205 x <|extra_N|>, then 9 Qwen-VL tokens.
N_SPECIAL = 3 + 205 + 9
TINY_VOCAB_SIZE = 480  # padded past the last special id, as the releases pad 151852 -> 151936


def tiny_id(real_id: int) -> int:
    """The tiny vocabulary's id of a real special-token id (e.g. 151857 `<img>` -> 470)."""
    return real_id - (REAL_RANKS - TINY_RANKS)


def write_tiny_tiktoken(path: Path) -> Path:
    """Write a qwen.tiktoken file with the 256 byte ranks; returns the path."""
    lines = [f"{base64.b64encode(bytes([b])).decode()} {b}" for b in range(TINY_RANKS)]
    path.write_text("\n".join(lines) + "\n")
    return path
