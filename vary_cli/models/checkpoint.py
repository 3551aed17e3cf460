"""Read a Vary release directory into our modules: key table, sanitize, meta build, strict load.

Used by `vary ocr` / `vary convert` (through `load()`), by `vary train` and by the tests, which write
tiny checkpoints in the release layout and load them through this same path. Steps, in order:
read config.json -> build the model on the meta device -> per weight file: read (safetensors, or
`torch.load(weights_only=True, mmap=True)`), rename with keys.py's table, split fused tensors,
check shapes, cast and move, `load_state_dict(strict=False, assign=True)` -> fail on missing or
unexpected keys -> materialize non-persistent buffers -> check the tokenizer against the config.
Only one file's tensors are in flight at a time, so peak host memory is about the model plus a shard.
The family comes from config.json: `model_type` "vary" (Vary-tiny with OPT, or Vary-toy/Vary-base with
Qwen-1, told apart by their fields in `config_from_release`), "got_ocr2" (GOT-OCR2.0's hf release) or
"GOT" (its original release, whose vision sizes are read from the weights' shapes); `FAMILIES` then
names its model class and tokenizer files. Everything else, the key table included, is shared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from .config import GotConfig, ModelConfig, VaryConfig, VaryTinyConfig, config_from_release
from ..errors import WeightsError
from .got_ocr2 import GotOcr2ForCausalLM
from .vary_qwen import VaryQwenForCausalLM
from .vary_opt import VaryOPTForCausalLM
from .keys import convert_state_dict
from .loaded import LoadedModel
from ..text.qwen_tokenizer import GOT_PATTERN, QwenTokenizer
from ..text.gpt2_tokenizer import OPTTokenizer

_SAFETENSORS_INDEX = "model.safetensors.index.json"
_BIN_INDEX = "pytorch_model.bin.index.json"
_TOKENIZER_FILE = "qwen.tiktoken"


def read_config(directory: Path) -> ModelConfig:
    """Parse `directory/config.json` into its family's config, with errors that name the file."""
    path = directory / "config.json"
    if not path.is_file():
        raise WeightsError(f"{directory}: no config.json; is this a Vary checkpoint directory?")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise WeightsError(f"{path}: expected a JSON object")
    reader = CONFIG_READERS.get(raw.get("model_type"))
    if reader is None:
        raise WeightsError(f"{path}: model_type is {raw.get('model_type')!r}, expected one of "
                           f"{', '.join(repr(k) for k in CONFIG_READERS)}")
    try:
        return reader(raw, directory)
    except WeightsError as exc:
        raise WeightsError(f"{directory}: {exc}") from None


# config.json's model_type -> its reader (the raw JSON and the checkpoint directory -> our config).
CONFIG_READERS: dict[str, Callable[[dict, Path], ModelConfig]] = {
    "vary": lambda raw, directory: config_from_release(raw),
    "got_ocr2": lambda raw, directory: GotConfig.from_hf(raw),
    "GOT": lambda raw, directory: GotConfig.from_original(raw, weight_shapes(directory)),
}


def weight_files(directory: Path) -> list[Path]:
    """The weight files of a release directory, in load order, checked to exist."""
    for index_name in (_SAFETENSORS_INDEX, _BIN_INDEX):
        index = directory / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise WeightsError(f"{index}: unreadable shard index ({exc})") from None
            files = sorted(set(weight_map.values()))
            missing = [f for f in files if not (directory / f).is_file()]
            if missing:
                raise WeightsError(f"{directory}: missing shard(s) {', '.join(missing[:3])} listed in "
                                   f"{index_name}; download the checkpoint again")
            return [directory / f for f in files]
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (directory / single).is_file():
            return [directory / single]
    raise WeightsError(f"{directory}: no weights (model*.safetensors or pytorch_model*.bin)")


def read_weight_file(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (original key, tensor) from one weight file; corrupt files raise WeightsError."""
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt", device="cpu") as handle:
                for key in handle.keys():
                    yield key, handle.get_tensor(key)
        else:
            state = _torch_load(path)
            if not isinstance(state, dict):
                raise WeightsError(f"{path}: expected a state dict")
            yield from state.items()
    except WeightsError:
        raise
    except Exception as exc:  # torch/safetensors raise many types for a truncated or foreign file
        raise WeightsError(f"{path}: corrupt or unreadable weight file ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}); download it again") from None


def weight_shapes(directory: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape by its original name, without reading the data (safetensors headers; mmap)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for path in weight_files(directory):
        try:
            if path.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(path), framework="pt", device="cpu") as handle:
                    shapes.update({key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()})
            else:
                state = _torch_load(path)
                shapes.update({key: tuple(t.shape) for key, t in state.items()})
        except Exception as exc:  # torch/safetensors raise many types for a truncated or foreign file
            raise WeightsError(f"{path}: corrupt or unreadable weight file ({type(exc).__name__}); "
                               "download it again") from None
    return shapes


def _torch_load(path: Path) -> object:
    # mmap keeps peak memory at about one shard, but works only on torch's zip format; files written by
    # torch.save(_use_new_zipfile_serialization=False) (older exports) are read whole instead.
    import zipfile

    if zipfile.is_zipfile(path):
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return torch.load(path, map_location="cpu", weights_only=True)


@dataclass(frozen=True)
class Family:
    """What a model family brings to loading: its module class and its tokenizer files."""

    model_class: type
    read_tokenizer: Callable[[Path, Any], Any]  # (directory, config) -> tokenizer
    tokenizer_files: str


def _got_tokenizer(directory: Path, config: GotConfig) -> QwenTokenizer:
    # Both releases hold Qwen's vocabulary; both are tokenized as transformers tokenizes the hf one.
    if config.layout == "hf":
        return QwenTokenizer.from_tokenizer_json(directory / "tokenizer.json")
    return QwenTokenizer.from_file(directory / _TOKENIZER_FILE, pattern=GOT_PATTERN, nfc=False)


FAMILIES: dict[type, Family] = {
    VaryConfig: Family(VaryQwenForCausalLM, lambda d, c: QwenTokenizer.from_file(d / _TOKENIZER_FILE),
                       _TOKENIZER_FILE),
    VaryTinyConfig: Family(VaryOPTForCausalLM, lambda d, c: OPTTokenizer.from_directory(d),
                           "vocab.json, merges.txt, added_tokens.json"),
    GotConfig: Family(GotOcr2ForCausalLM, _got_tokenizer, "tokenizer.json (hf release) or qwen.tiktoken"),
}


def build_on_meta(config: ModelConfig) -> VaryQwenForCausalLM | VaryOPTForCausalLM | GotOcr2ForCausalLM:
    with torch.device("meta"):
        return FAMILIES[type(config)].model_class(config)


def load_weights(model: torch.nn.Module, directory: Path, device: torch.device, dtype: torch.dtype,
                 on_file: Callable[[Path], None] | None = None) -> None:
    """Fill a meta-device model from the directory's weight files, one file at a time."""
    tied = set(getattr(model, "tied_keys", ()))
    expected = {k: v.shape for k, v in model.state_dict().items() if k not in tied}
    loaded: set[str] = set()
    unknown: list[str] = []
    for path in weight_files(directory):
        if on_file:
            on_file(path)
        original = dict(read_weight_file(path))
        ours, file_unknown = convert_state_dict(original)
        unknown += file_unknown
        part: dict[str, torch.Tensor] = {}
        for name, tensor in ours.items():
            if name in tied:  # e.g. OPT's lm_head, which is the token embedding: read that one only
                continue
            if name not in expected:
                unknown.append(name)
                continue
            if tuple(tensor.shape) != tuple(expected[name]):
                raise WeightsError(f"{directory}: {path.name}: tensor for {name} has shape "
                                   f"{tuple(tensor.shape)}, config.json implies {tuple(expected[name])}")
            part[name] = tensor.to(device=device, dtype=dtype if tensor.is_floating_point() else None)
        model.load_state_dict(part, strict=False, assign=True)
        loaded.update(part)
        del original, ours, part
    missing = sorted(set(expected) - loaded)
    if missing or unknown:
        details = []
        if missing:
            details.append(f"{len(missing)} missing tensor(s), e.g. {', '.join(missing[:3])}")
        if unknown:
            details.append(f"{len(unknown)} unexpected tensor(s), e.g. {', '.join(unknown[:3])}")
        raise WeightsError(f"{directory}: weights do not match the model: {'; '.join(details)}")
    if tied:
        model.tie_weights()
    materialize_buffers(model, device)


def materialize_buffers(model: torch.nn.Module, device: torch.device) -> None:
    """Create the non-persistent buffers the files do not carry (they are still on meta)."""
    if hasattr(model, "vision_tower"):  # CLIP's position ids (Vary-toy, Vary-base)
        embeddings = model.vision_tower.embeddings
        n_positions = embeddings.position_embedding.num_embeddings
        embeddings.register_buffer("position_ids", torch.arange(n_positions, device=device).expand((1, -1)),
                                   persistent=False)
    if hasattr(model, "init_buffers"):  # a family's own non-persistent buffers (GOT's rotary frequencies)
        model.init_buffers(device)
    leftover = [name for name, t in [*model.named_buffers(), *model.named_parameters()] if t.is_meta]
    if leftover:
        raise RuntimeError(f"tensors left on meta after loading: {leftover[:5]}")


def check_tokenizer(tokenizer: QwenTokenizer | OPTTokenizer, config: ModelConfig, directory: Path) -> None:
    """The tokenizer's image-token ids and size must agree with config.json."""
    files = FAMILIES[type(config)].tokenizer_files
    pairs = {"im_start_token": (tokenizer.img_start_id, config.im_start_token),
             "im_end_token": (tokenizer.img_end_id, config.im_end_token),
             "im_patch_token": (tokenizer.img_pad_id, config.im_patch_token)}
    for name, (from_tokenizer, from_config) in pairs.items():
        if from_tokenizer != from_config:
            raise WeightsError(f"{directory}: config.json {name} is {from_config} but {files} "
                               f"gives {from_tokenizer}; the tokenizer does not belong to this model")
    if tokenizer.vocab_size > config.lm.vocab_size:
        raise WeightsError(f"{directory}: {files} has {tokenizer.vocab_size} tokens, more than "
                           f"config.json's vocab_size {config.lm.vocab_size}")


def load_directory(directory: Path, device: torch.device, dtype: torch.dtype,
                   on_file: Callable[[Path], None] | None = None) -> LoadedModel:
    """Load a release-layout directory onto `device` in `dtype`, ready for inference."""
    directory = Path(directory)
    if not directory.is_dir():
        raise WeightsError(f"{directory}: not a directory")
    if not (directory / "config.json").exists() and (directory / "latest").is_file():
        from .export import read_latest

        directory = read_latest(directory) or directory  # a `vary train --out` directory: its latest checkpoint
    config = read_config(directory)
    tokenizer = FAMILIES[type(config)].read_tokenizer(directory, config)
    check_tokenizer(tokenizer, config, directory)
    model = build_on_meta(config)
    load_weights(model, directory, device, dtype, on_file)
    model.eval().requires_grad_(False)
    return LoadedModel(model, tokenizer, config, directory, device, dtype)


def load(name_or_dir: str | Path, device: str = "auto", dtype: str = "auto",
         on_file: Callable[[Path], None] | None = None) -> LoadedModel:
    """Load a model by registry name (downloading it once) or from a release-layout directory.

    Args:
        name_or_dir: a name from weights.toml (`vary-toy`) or a checkpoint directory.
        device: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda[:N]" or "mps".
        dtype: "auto" (bf16/fp16 on GPUs, fp32 on CPU), "fp32", "bf16" or "fp16".
    """
    from ..weights import hub
    from ..weights import registry
    from ..weights.device import resolve_device, resolve_dtype

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    path = Path(name_or_dir).expanduser()
    if path.exists():
        directory = path
    elif any(sep in str(name_or_dir) for sep in ("/", "\\")) and str(name_or_dir).startswith((".", "/", "~")):
        raise WeightsError(f"{name_or_dir}: no such checkpoint directory")
    else:
        directory = hub.resolve(registry.lookup(str(name_or_dir)))
    return load_directory(directory, torch_device, torch_dtype, on_file)
