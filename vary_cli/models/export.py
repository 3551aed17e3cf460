"""Write our model as a release directory, atomically: original key names, safetensors shards, config.json.

`vary train` saves every checkpoint with `save_release`, so `vary ocr --model OUT/checkpoint-N` loads
it through the normal loader (checkpoint.py). The key tables below are the inverse of checkpoint.py's
`ORIGINAL_TO_OURS`, one per family (the SAM vision vocabulary's rules are shared; only its prefix
differs); `fuse_qkv` puts Qwen-1's fused `c_attn` back together. A directory is written as
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

from .config import ModelConfig, VaryConfig, VaryTinyConfig
from .errors import VaryError
from .output import OutputError, fsync_dir

# fmt: off
# Ours -> original names of the SAM vision vocabulary; "{sam}" is the family's prefix for it.
SAM_OURS_TO_ORIGINAL: list[tuple[str, str]] = [
    (r"^vision_tower_high\.patch_embed\.projection\.(weight|bias)$", r"{sam}.patch_embed.proj.\1"),
    (r"^vision_tower_high\.pos_embed$",                             r"{sam}.pos_embed"),
    (r"^vision_tower_high\.layers\.(\d+)\.layer_norm1\.(.+)$",      r"{sam}.blocks.\1.norm1.\2"),
    (r"^vision_tower_high\.layers\.(\d+)\.layer_norm2\.(.+)$",      r"{sam}.blocks.\1.norm2.\2"),
    (r"^vision_tower_high\.layers\.(\d+)\.(attn|mlp)\.(.+)$",       r"{sam}.blocks.\1.\2.\3"),
    (r"^vision_tower_high\.neck\.conv1\.weight$",                   r"{sam}.neck.0.weight"),
    (r"^vision_tower_high\.neck\.layer_norm1\.(.+)$",               r"{sam}.neck.1.\1"),
    (r"^vision_tower_high\.neck\.conv2\.weight$",                   r"{sam}.neck.2.weight"),
    (r"^vision_tower_high\.neck\.layer_norm2\.(.+)$",               r"{sam}.neck.3.\1"),
    (r"^vision_tower_high\.(net_2|net_3)\.weight$",                 r"{sam}.\1.weight"),
]
# Vary-toy / Vary-base. "{qkv}" keys are fused by `fuse_qkv` (q, k, v stacked along dim 0).
OURS_TO_ORIGINAL: list[tuple[str, str]] = [
    (r"^vision_tower\.(.+)$",                                       r"transformer.vision_tower.vision_model.\1"),
    *[(pattern, target.format(sam="transformer.vision_tower_high")) for pattern, target in SAM_OURS_TO_ORIGINAL],
    (r"^(mm_projector|mm_projector_vary)\.(weight|bias)$",          r"transformer.\1.\2"),
    (r"^embed_tokens\.weight$",                                     r"transformer.wte.weight"),
    (r"^layers\.(\d+)\.input_layernorm\.weight$",                   r"transformer.h.\1.ln_1.weight"),
    (r"^layers\.(\d+)\.self_attn\.[qkv]_proj\.(weight|bias)$",      r"transformer.h.\1.attn.c_attn.\2{qkv}"),
    (r"^layers\.(\d+)\.self_attn\.o_proj\.weight$",                 r"transformer.h.\1.attn.c_proj.weight"),
    (r"^layers\.(\d+)\.post_attention_layernorm\.weight$",          r"transformer.h.\1.ln_2.weight"),
    (r"^layers\.(\d+)\.mlp\.up_proj\.weight$",                      r"transformer.h.\1.mlp.w1.weight"),    # w1: linear branch
    (r"^layers\.(\d+)\.mlp\.gate_proj\.weight$",                    r"transformer.h.\1.mlp.w2.weight"),    # w2: silu branch
    (r"^layers\.(\d+)\.mlp\.down_proj\.weight$",                    r"transformer.h.\1.mlp.c_proj.weight"),
    (r"^norm\.weight$",                                             r"transformer.ln_f.weight"),
    (r"^lm_head\.weight$",                                          r"lm_head.weight"),
]
# Vary-tiny, as Ucas-HaoranWei/Vary's vary_opt.py names it (the Vary-tiny release's layout).
TINY_OURS_TO_ORIGINAL: list[tuple[str, str]] = [
    *[(pattern, target.format(sam="model.vision_tower_2")) for pattern, target in SAM_OURS_TO_ORIGINAL],
    (r"^mm_projector\.(weight|bias)$",                              r"model.mm_projector.\1"),
    (r"^decoder\.(.+)$",                                            r"model.decoder.\1"),
    (r"^lm_head\.weight$",                                          r"lm_head.weight"),
]
# fmt: on
_COMPILED = {id(table): [(re.compile(pattern), target) for pattern, target in table]
             for table in (OURS_TO_ORIGINAL, TINY_OURS_TO_ORIGINAL)}

LATEST = "latest"
TOKENIZER_FILE = "qwen.tiktoken"
TRAINING_STATE = "training_state.pt"
SHARD_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class ReleaseFormat:
    """How a family's release directory looks beyond its weights: key table and small JSON files."""

    table: list[tuple[str, str]]
    config_extra: dict[str, Any]
    json_files: Callable[[Any], dict[str, dict[str, Any]]]


RELEASE_FORMATS: dict[type, ReleaseFormat] = {
    VaryConfig: ReleaseFormat(
        OURS_TO_ORIGINAL, {"torch_dtype": "float32", "use_cache": True, "freeze_vision_tower": True},
        lambda config: {
            "generation_config.json": {"chat_format": "chatml", "eos_token_id": 151643, "max_new_tokens": 2048},
            "tokenizer_config.json": {"model_max_length": config.lm.seq_length, "tokenizer_file": TOKENIZER_FILE}}),
    # Vary-tiny's tokenizer files (tokenizer_config.json included) are copied from the start checkpoint.
    VaryTinyConfig: ReleaseFormat(
        TINY_OURS_TO_ORIGINAL, {"torch_dtype": "float32", "use_cache": True, "freeze_vision_tower": False},
        lambda config: {"generation_config.json": {"bos_token_id": 2, "eos_token_id": 2, "pad_token_id": 1}}),
}


def fuse_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Qwen-1's c_attn: q, k, v stacked in that order along dim 0."""
    return torch.cat([q, k, v], dim=0)


def to_release_state_dict(ours: dict[str, torch.Tensor],
                          table: list[tuple[str, str]] = OURS_TO_ORIGINAL) -> dict[str, torch.Tensor]:
    """Our state dict under the release's key names (non-persistent buffers are not in `ours`)."""
    compiled = _COMPILED.get(id(table)) or [(re.compile(pattern), target) for pattern, target in table]
    out: dict[str, torch.Tensor] = {}
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in ours.items():
        for pattern, target in compiled:
            if pattern.match(key):
                name = pattern.sub(target, key)
                break
        else:
            raise KeyError(f"no release name for {key}")
        if name.endswith("{qkv}"):
            which = key.split(".self_attn.")[1][0]  # q, k or v
            parts.setdefault(name.removesuffix("{qkv}"), {})[which] = tensor
        else:
            out[name] = tensor
    for name, qkv in parts.items():
        out[name] = fuse_qkv(qkv["q"], qkv["k"], qkv["v"])
    return out


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

    def fill(tmp: Path) -> None:
        write_weights(tmp, to_release_state_dict(ours, form.table), max_shard_bytes)
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
    from .output import atomic_write_text

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
