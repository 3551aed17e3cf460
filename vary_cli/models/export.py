"""Write our model as a release directory, atomically: original key names, safetensors shards, config.json.

`vary train` saves every checkpoint with `save_release`, so `vary ocr --model OUT/checkpoint-N` loads
it through the normal loader (checkpoint.py). Tensor names come from keys.py's table, read from ours
to the family's original names (Qwen-1's `c_attn` fused again). A directory is written as
`.NAME.tmp-XXXX` beside its final place and renamed into place only when every file is on disk; the
`latest` pointer file is then replaced atomically, so a run killed mid-save leaves the previous
checkpoint and pointer intact and, at worst, a stale temporary directory that the next run removes.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from .config import GotConfig, ModelConfig, VaryConfig, VaryTinyConfig
from .preprocess import CLIP_MEAN, CLIP_STD
from ..errors import OutputError, VaryError
from ..files import fsync_dir
from .keys import GOT_HF, QWEN, TINY, to_release_state_dict

LATEST = "latest"
TOKENIZER_FILE = "qwen.tiktoken"
TRAINING_STATE = "training_state.pt"
SHARD_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class ReleaseFormat:
    """How a family's release directory looks beyond its weights: key table and small JSON files."""

    family: str  # which rows of keys.KEY_TABLE name its tensors
    config_extra: dict[str, Any]
    json_files: Callable[[Any], dict[str, dict[str, Any]]]
    # Our tensors the release leaves out (a head tied to the embedding, which transformers does not save).
    omit: Callable[[Any], tuple[str, ...]] = lambda config: ()


def _got_json_files(config: GotConfig) -> dict[str, dict[str, Any]]:
    # What GotOcr2Processor reads beside the tokenizer files: GotOcr2ImageProcessor's settings.
    size = config.sam.image_size
    return {"generation_config.json": {"_from_model_config": True},
            "preprocessor_config.json": {
                "crop_to_patches": False, "do_convert_rgb": True, "do_normalize": True, "do_rescale": True,
                "do_resize": True, "image_mean": list(CLIP_MEAN), "image_processor_type": "GotOcr2ImageProcessor",
                "image_std": list(CLIP_STD), "max_patches": 12, "min_patches": 1,
                "processor_class": "GotOcr2Processor", "resample": 3, "rescale_factor": 1 / 255,
                "size": {"height": size, "width": size}}}


RELEASE_FORMATS: dict[type, ReleaseFormat] = {
    VaryConfig: ReleaseFormat(
        QWEN, {"torch_dtype": "float32", "use_cache": True, "freeze_vision_tower": True},
        lambda config: {
            "generation_config.json": {"chat_format": "chatml", "eos_token_id": 151643, "max_new_tokens": 2048},
            "tokenizer_config.json": {"model_max_length": config.lm.seq_length, "tokenizer_file": TOKENIZER_FILE}}),
    # Vary-tiny's tokenizer files (tokenizer_config.json included) are copied from the start checkpoint.
    VaryTinyConfig: ReleaseFormat(
        TINY, {"torch_dtype": "float32", "use_cache": True, "freeze_vision_tower": False},
        lambda config: {"generation_config.json": {"bos_token_id": 2, "eos_token_id": 2, "pad_token_id": 1}}),
    # GOT is written in the hf release's layout (its tokenizer files come from the start checkpoint).
    GotConfig: ReleaseFormat(GOT_HF, {"torch_dtype": "float32"}, _got_json_files,
                             omit=lambda config: ("lm_head.weight",) if config.lm.tie_word_embeddings else ()),
}


def release_config(config: ModelConfig) -> dict[str, Any]:
    """config.json of a checkpoint we write: the release fields plus what a loader of the original expects."""
    out = config.to_release()
    out.update(RELEASE_FORMATS[type(config)].config_extra)
    return out


def shard(state: dict[str, torch.Tensor], max_bytes: int) -> list[dict[str, torch.Tensor]]:
    """Split a state dict into groups of at most `max_bytes` (a bigger tensor gets a group of its own)."""
    groups: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if groups[-1] and size + nbytes > max_bytes:
            groups.append({})
            size = 0
        groups[-1][key] = tensor
        size += nbytes
    return groups


def write_weights(directory: Path, state: dict[str, torch.Tensor], max_bytes: int = SHARD_BYTES) -> None:
    """Write safetensors weights (one file, or shards with model.safetensors.index.json)."""
    from safetensors.torch import save_file

    seen: set[int] = set()
    cpu = {}
    for key, tensor in state.items():
        tensor = tensor.detach().to("cpu").contiguous()
        if tensor.data_ptr() in seen:  # a tied weight (Vary-tiny's lm_head): safetensors wants its own copy
            tensor = tensor.clone()
        seen.add(tensor.data_ptr())
        cpu[key] = tensor
    state = cpu
    groups = shard(state, max_bytes)
    if len(groups) == 1:
        save_file(groups[0], str(directory / "model.safetensors"), metadata={"format": "pt"})
        return
    weight_map = {}
    for i, group in enumerate(groups):
        name = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        save_file(group, str(directory / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in group})
    total = sum(t.numel() * t.element_size() for t in state.values())
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def save_release(directory: Path, ours: dict[str, torch.Tensor], config: ModelConfig,
                 tokenizer_files: dict[str, bytes], extra: Callable[[Path], None] | None = None,
                 max_shard_bytes: int = SHARD_BYTES) -> Path:
    """Write a complete release directory at `directory`, atomically; returns `directory`.

    `tokenizer_files` maps file names to their bytes (`qwen.tiktoken`, or Vary-tiny's GPT-2 files).
    `extra(tmp_dir)` may add files (the training state) before the directory is renamed into place.
    An existing `directory` is replaced only once the new one is complete.
    """
    form = RELEASE_FORMATS[type(config)]

    omitted = form.omit(config)
    ours = {key: tensor for key, tensor in ours.items() if key not in omitted}

    def fill(tmp: Path) -> None:
        write_weights(tmp, to_release_state_dict(ours, form.family), max_shard_bytes)
        (tmp / "config.json").write_text(json.dumps(release_config(config), indent=2) + "\n")
        for name, content in form.json_files(config).items():
            (tmp / name).write_text(json.dumps(content, indent=2) + "\n")
        for name, content in tokenizer_files.items():
            (tmp / name).write_bytes(content)
        if extra:
            extra(tmp)

    return write_directory(directory, fill)


def write_directory(directory: Path, fill: Callable[[Path], None]) -> Path:
    """Create `directory` atomically: `fill(tmp)` writes the files into a temporary sibling, which is
    fsynced and renamed into place. An existing `directory` is replaced only once the new one is complete."""
    directory = Path(directory)
    parent = directory.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{directory.name}.tmp-{secrets.token_hex(4)}"
    try:
        tmp.mkdir()
        fill(tmp)
        for path in tmp.iterdir():
            _fsync_file(path)
        fsync_dir(tmp)
        if directory.exists():
            old = parent / f".{directory.name}.old-{secrets.token_hex(4)}"
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
        fsync_dir(parent)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise OutputError(f"{directory}: cannot write the checkpoint ({exc.strerror or exc}); check that "
                              "the directory is writable and the disk has space") from None
        raise
    return directory


def write_latest(out_dir: Path, name: str) -> None:
    """Point `out_dir/latest` at the checkpoint directory `name`, atomically."""
    from ..files import atomic_write_text

    atomic_write_text(Path(out_dir) / LATEST, name + "\n")


def read_latest(out_dir: Path) -> Path | None:
    """The checkpoint `out_dir/latest` points at, or None when there is none yet.

    Raises:
        VaryError: the pointer names a directory that is missing or incomplete.
    """
    pointer = Path(out_dir) / LATEST
    if not pointer.is_file():
        return None
    name = pointer.read_text().strip()
    directory = Path(out_dir) / name
    if not (directory / TRAINING_STATE).is_file() or not (directory / "config.json").is_file():
        raise VaryError(f"{pointer} names {name}, which is missing or incomplete; point it at a complete "
                        "checkpoint-N directory or start without --resume")
    return directory


def remove_stale(out_dir: Path) -> list[Path]:
    """Delete temporary directories left by a run killed while saving; returns what was removed."""
    removed = []
    for path in Path(out_dir).glob(".checkpoint-*.*-*"):
        if path.is_dir() and (".tmp-" in path.name or ".old-" in path.name):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def prune(out_dir: Path, keep: int) -> list[Path]:
    """Keep the `keep` newest checkpoint-N directories and the one `latest` names; delete the rest."""
    latest = (Path(out_dir) / LATEST).read_text().strip() if (Path(out_dir) / LATEST).is_file() else None
    # Only our own checkpoint-N directories: a user's `checkpoint-best` is not ours to delete.
    checkpoints = sorted((p for p in Path(out_dir).glob("checkpoint-*")
                          if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)),
                         key=lambda p: int(p.name.rsplit("-", 1)[1]))
    doomed = [p for p in checkpoints[:-keep] if p.name != latest] if keep > 0 else []
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def _fsync_file(path: Path) -> None:
    if path.is_file():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
