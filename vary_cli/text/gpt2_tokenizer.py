"""OPT's GPT-2 byte-level BPE tokenizer, read from a Vary-tiny release's files (vary.md §11).

`OPTTokenizer.from_directory(dir)` reads `vocab.json` and `merges.txt` (the BPE) and the image tokens
`<img>`, `</img>`, `<imgpad>` that the original's `initialize_vision_tokenizer` added after OPT's
vocabulary, from `added_tokens.json`, or from `tokenizer.json` / `tokenizer_config.json` where a later
transformers wrote them there. Encoding uses the `tokenizers` library's BPE with the byte-level
pre-tokenizer (GPT-2's pattern, no prefix space), which gives the ids of transformers' slow
`GPT2Tokenizer` the original demo uses. `encode()` never parses special or added tokens out of text;
they enter a prompt only by id (see `prompts.py`). No remote code is run. Used by `checkpoint.load()`.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import WeightsError

IMG_START, IMG_END, IMG_PAD = "<img>", "</img>", "<imgpad>"
# OPT's own special tokens; ids come from vocab.json (facebook/opt: <s> 0, <pad> 1, </s> 2, <unk> 3).
DEFAULT_SPECIALS = {"bos_token": "</s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
REQUIRED_FILES = ("vocab.json", "merges.txt")


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-in character of each byte, inverted: character -> byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


class OPTTokenizer:
    """GPT-2 BPE with OPT's specials and Vary's image tokens; ids match the Vary-tiny release."""

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]], added: dict[str, int],
                 specials: dict[str, str], name: str = "vary-tiny") -> None:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        self.name = name
        self.vocab = vocab
        self.added = added
        self.tokens = {i: t for t, i in vocab.items()}
        bpe = Tokenizer(models.BPE(vocab=vocab, merges=merges))
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        bpe.decoder = decoders.ByteLevel()
        self.bpe = bpe
        missing = [t for t in (IMG_START, IMG_END, IMG_PAD) if t not in added]
        if missing:
            raise WeightsError(f"{name}: the tokenizer lacks the image tokens {missing}; "
                               f"not a Vary-tiny tokenizer")
        for role, token in specials.items():
            if token not in vocab and token not in added:
                raise WeightsError(f"{name}: {role} {token!r} is not in vocab.json")
        ids = {role: vocab.get(token, added.get(token)) for role, token in specials.items()}
        self.bos_id, self.eos_id, self.pad_id = ids["bos_token"], ids["eos_token"], ids["pad_token"]
        self.img_start_id, self.img_end_id, self.img_pad_id = added[IMG_START], added[IMG_END], added[IMG_PAD]
        self.special_ids = set(ids.values()) | set(added.values())

    @classmethod
    def from_directory(cls, directory: Path) -> "OPTTokenizer":
        directory = Path(directory)
        missing = [f for f in REQUIRED_FILES if not (directory / f).is_file()]
        if missing:
            raise WeightsError(f"{directory}: no {' or '.join(missing)}; the checkpoint's tokenizer files are missing")
        vocab_path, merges_path = directory / "vocab.json", directory / "merges.txt"
        vocab = _read_json(vocab_path)
        if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
            raise WeightsError(f"{vocab_path}: expected a JSON object of token -> id")
        try:
            lines = merges_path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise WeightsError(f"{merges_path}: unreadable ({exc})") from None
        merges = []
        for number, line in enumerate(lines, 1):
            if not line.strip() or (number == 1 and line.startswith("#version")):
                continue
            parts = line.split(" ")
            if len(parts) != 2:
                raise WeightsError(f"{merges_path}: line {number} is not a merge of two tokens")
            merges.append((parts[0], parts[1]))
        added = _added_tokens(directory, vocab)
        specials = dict(DEFAULT_SPECIALS)
        special_map = directory / "special_tokens_map.json"
        if special_map.is_file():
            for role, value in _read_json(special_map).items():
                if role in specials:
                    specials[role] = value["content"] if isinstance(value, dict) else value
        return cls(vocab, merges, added, specials, name=str(directory))

    @property
    def vocab_size(self) -> int:
        """The BPE's tokens plus the added ones (the model's embedding may be larger)."""
        return max(list(self.vocab.values()) + list(self.added.values())) + 1

    def encode(self, text: str) -> list[int]:
        """Ids of `text` with every special-token string (`</s>`, `<img>`, ...) treated as plain text."""
        return self.bpe.encode(text, add_special_tokens=False).ids

    def decode_bytes(self, ids: list[int]) -> bytes:
        table = byte_decoder()
        return bytes(table[c] for i in ids if i not in self.special_ids and i in self.tokens
                     for c in self.tokens[i])

    def decode(self, ids: list[int]) -> str:
        """Text of `ids` without special and image tokens; broken UTF-8 becomes U+FFFD as in the original."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path}: not valid JSON ({exc})") from None


def _added_tokens(directory: Path, vocab: dict[str, int]) -> dict[str, int]:
    """Tokens added after the BPE vocabulary: added_tokens.json (transformers 4.3x, the release's)."""
    added: dict[str, int] = {}
    path = directory / "added_tokens.json"
    if path.is_file():
        data = _read_json(path)
        if not isinstance(data, dict):
            raise WeightsError(f"{path}: expected a JSON object of token -> id")
        added.update({str(k): int(v) for k, v in data.items()})
    for name, key in (("tokenizer.json", "added_tokens"), ("tokenizer_config.json", "added_tokens_decoder")):
        path = directory / name
        if not path.is_file():
            continue
        entries = _read_json(path).get(key) or []
        if isinstance(entries, dict):  # tokenizer_config.json: {"50265": {"content": "<imgpad>", ...}}
            entries = [dict(v, id=int(k)) for k, v in entries.items()]
        for entry in entries:
            added.setdefault(entry["content"], int(entry["id"]))
    clash = [t for t, i in added.items() if t not in vocab and i in vocab.values()]
    if clash:
        raise WeightsError(f"{directory}: added tokens {clash[:3]} reuse ids of vocab.json")
    return {t: i for t, i in added.items() if t not in vocab}
