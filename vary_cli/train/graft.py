"""`vary graft-vocabulary`: put a vision vocabulary trained by the vocabulary stage (a Vary-tiny
checkpoint) into a Vary-toy / Vary-base checkpoint, as a new release directory.

After stage 1 the original moves Vary-tiny's SAM encoder + neck + net_2/net_3 into the
`vision_tower_high` of the Qwen models (training.md §6): vary_qwen_vary.py builds it with
`build_sam_vit_b(checkpoint=...)  # for train`, whose `load_state_dict(strict=True)` takes exactly
those tensors, and its commented variant strips `model.vision_tower.` from a Vary-tiny state dict
(`k[19:]`); the `pretrained_stage1_model` argument is passed around but never read. The Vary-tiny
projector and OPT are discarded. The sub-keys are the same on both sides (`blocks.N.attn.qkv.weight`,
`neck.0.weight`, `net_2.weight`, ...), so the graft works on release names, not on our modules:
every tensor of the target other than `transformer.vision_tower_high.*` is copied bit for bit; the
grafted ones are cast to the dtype of the tensors they replace. Shapes, key sets and the SAM geometry
must match, or nothing is written. The target's other files (config.json, qwen.tiktoken, ...) are
copied; weights are written as safetensors, one file per weight file of the target, atomically.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from ..models.checkpoint import read_config, read_weight_file, weight_files
from ..models.config import VaryConfig, VaryTinyConfig
from ..errors import WeightsError
from ..models.export import LATEST, TRAINING_STATE, read_latest, write_directory

# A Vary-tiny release's vision vocabulary (Ucas-HaoranWei/Vary names it vision_tower_2, Vary-toy's copy
# vision_tower) and its place in Vary-toy / Vary-base.
TINY_VOCABULARY = re.compile(r"^model\.vision_tower(?:_2)?\.(.+)$")
TARGET_PREFIX = "transformer.vision_tower_high."
_WEIGHT_FILE = re.compile(r"^(pytorch_model.*\.bin|model.*\.safetensors|.*\.index\.json)$")


@dataclass(frozen=True)
class GraftResult:
    directory: Path
    grafted: int
    kept: int


def resolve_directory(name_or_dir: str | Path) -> Path:
    """A checkpoint directory from a path (a `vary train --out` directory means its latest checkpoint)
    or a registry name (downloaded once)."""
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists() and (path / LATEST).is_file():
            return read_latest(path) or path
        return path
    if path.exists() or any(sep in str(name_or_dir) for sep in ("/", "\\")):
        raise WeightsError(f"{name_or_dir}: no such checkpoint directory")
    from ..weights import hub
    from ..weights import registry

    return hub.resolve(registry.lookup(str(name_or_dir)))


def read_vocabulary(directory: Path) -> dict[str, torch.Tensor]:
    """The vision vocabulary tensors of a Vary-tiny checkpoint by sub-key (`blocks.0.norm1.weight`, ...)."""
    vocabulary: dict[str, torch.Tensor] = {}
    for path in weight_files(directory):
        for key, tensor in read_weight_file(path):
            match = TINY_VOCABULARY.match(key)
            if match:
                vocabulary[match.group(1)] = tensor
    if not vocabulary:
        raise WeightsError(f"{directory}: no model.vision_tower_2.* / model.vision_tower.* tensors; "
                           "not a Vary-tiny checkpoint")
    return vocabulary


def graft_vocabulary(vocabulary: str | Path, into: str | Path, out: Path) -> GraftResult:
    """Write `out`: the checkpoint `into` with its `vision_tower_high` taken from the Vary-tiny `vocabulary`.

    Raises:
        WeightsError: a directory is not of the expected family, the SAM geometries differ, or a
            tensor's name or shape does not match; `out` is then not created.
    """
    tiny_dir, target_dir, out = resolve_directory(vocabulary), resolve_directory(into), Path(out)
    tiny_config, target_config = read_config(tiny_dir), read_config(target_dir)
    if not isinstance(tiny_config, VaryTinyConfig):
        raise WeightsError(f"{tiny_dir}: --vocabulary must be a Vary-tiny (SAM + OPT) checkpoint")
    if not isinstance(target_config, VaryConfig):
        raise WeightsError(f"{target_dir}: --into must be a Vary-toy or Vary-base checkpoint")
    if tiny_config.sam != target_config.sam:
        raise WeightsError(f"{tiny_dir} and {target_dir}: the SAM vocabularies differ in shape "
                           f"({tiny_config.sam} vs {target_config.sam})")
    if out.exists():
        raise WeightsError(f"{out} already exists; choose another --out")
    grafted = read_vocabulary(tiny_dir)
    files = weight_files(target_dir)
    counts = {"grafted": 0, "kept": 0}

    def fill(tmp: Path) -> None:
        from safetensors.torch import save_file

        used: set[str] = set()
        weight_map: dict[str, str] = {}
        for index, path in enumerate(files):
            name = "model.safetensors" if len(files) == 1 else f"model-{index + 1:05d}-of-{len(files):05d}.safetensors"
            part: dict[str, torch.Tensor] = {}
            for key, tensor in read_weight_file(path):
                if key.startswith(TARGET_PREFIX):
                    sub = key[len(TARGET_PREFIX):]
                    if sub not in grafted:
                        raise WeightsError(f"{tiny_dir}: has no vision-vocabulary tensor {sub} for {key}")
                    new = grafted[sub]
                    if tuple(new.shape) != tuple(tensor.shape):
                        raise WeightsError(f"{key}: shape {tuple(tensor.shape)} in {target_dir}, but "
                                           f"{tuple(new.shape)} in {tiny_dir}")
                    tensor = new.to(tensor.dtype)
                    used.add(sub)
                    counts["grafted"] += 1
                else:
                    counts["kept"] += 1
                part[key] = tensor.contiguous()
            save_file(part, str(tmp / name), metadata={"format": "pt"})
            weight_map.update({key: name for key in part})
            del part
        unused = sorted(set(grafted) - used)
        if unused:
            raise WeightsError(f"{target_dir}: has no {TARGET_PREFIX}{unused[0]} (and {len(unused) - 1} more) "
                               f"for the tensors of {tiny_dir}")
        if len(files) > 1:
            (tmp / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map},
                                                                         indent=2))
        for path in sorted(target_dir.iterdir()):
            if path.is_file() and not _WEIGHT_FILE.match(path.name) and path.name not in (TRAINING_STATE, LATEST):
                shutil.copy2(path, tmp / path.name)

    write_directory(out, fill)
    return GraftResult(out, counts["grafted"], counts["kept"])
