"""Read a Vary release directory into our modules: key table, sanitize, meta build, strict load.

Used by `vary ocr` / `vary convert` (through `load()`), by `vary train` and by the tests, which write
tiny checkpoints in the release layout and load them through this same path. Steps, in order:
read config.json -> build the model on the meta device -> per weight file: read (safetensors, or
`torch.load(weights_only=True, mmap=True)`), rename with ORIGINAL_TO_OURS, split fused tensors,
check shapes, cast and move, `load_state_dict(strict=False, assign=True)` -> fail on missing or
unexpected keys -> materialize non-persistent buffers -> check the tokenizer against the config.
Only one file's tensors are in flight at a time, so peak host memory is about the model plus a shard.
The family (Vary-tiny with OPT, or Vary-toy/Vary-base with Qwen-1) comes from config.json's fields
(`config_from_release`); `FAMILIES` then names its model class and tokenizer files. Everything else, the
key table included, is shared.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from .config import ModelConfig, VaryConfig, VaryTinyConfig, config_from_release
from .errors import WeightsError
from .model import VaryQwenForCausalLM
from .model_opt import VaryOPTForCausalLM
from .tokenizer import QwenTokenizer
from .tokenizer_gpt2 import OPTTokenizer

# fmt: off
# The SAM vision vocabulary, under its name in each release: Vary-toy/-base `transformer.vision_tower_high`,
# Vary-tiny `model.vision_tower_2` (Ucas-HaoranWei/Vary) or `model.vision_tower` (Vary-toy's vary_opt.py).
_SAM = r"(?:transformer\.vision_tower_high|model\.vision_tower_2|model\.vision_tower)"
# Original (release) key -> ours, for every family. First match wins; None drops the key. "{qkv}" marks a
# fused tensor that `split_fused_qkv` cuts into q, k, v along dim 0 (Qwen-1's c_attn order).
ORIGINAL_TO_OURS: list[tuple[str, str | None]] = [
    (r"^transformer\.vision_tower\.vision_model\.embeddings\.position_ids$",  None),
    (r"^transformer\.vision_tower\.vision_model\.(.+)$",                       r"vision_tower.\1"),
    (rf"^{_SAM}\.patch_embed\.proj\.(weight|bias)$",                          r"vision_tower_high.patch_embed.projection.\1"),
    (rf"^{_SAM}\.pos_embed$",                                                 r"vision_tower_high.pos_embed"),
    (rf"^{_SAM}\.blocks\.(\d+)\.norm1\.(weight|bias)$",                       r"vision_tower_high.layers.\1.layer_norm1.\2"),
    (rf"^{_SAM}\.blocks\.(\d+)\.norm2\.(weight|bias)$",                       r"vision_tower_high.layers.\1.layer_norm2.\2"),
    (rf"^{_SAM}\.blocks\.(\d+)\.(attn|mlp)\.(.+)$",                           r"vision_tower_high.layers.\1.\2.\3"),
    (rf"^{_SAM}\.neck\.0\.weight$",                                           r"vision_tower_high.neck.conv1.weight"),
    (rf"^{_SAM}\.neck\.1\.(weight|bias)$",                                    r"vision_tower_high.neck.layer_norm1.\1"),
    (rf"^{_SAM}\.neck\.2\.weight$",                                           r"vision_tower_high.neck.conv2.weight"),
    (rf"^{_SAM}\.neck\.3\.(weight|bias)$",                                    r"vision_tower_high.neck.layer_norm2.\1"),
    (rf"^{_SAM}\.(net_2|net_3)\.weight$",                                     r"vision_tower_high.\1.weight"),
    (r"^transformer\.(mm_projector|mm_projector_vary)\.(weight|bias)$",        r"\1.\2"),
    (r"^transformer\.wte\.weight$",                                            r"embed_tokens.weight"),
    (r"^transformer\.h\.(\d+)\.ln_1\.weight$",                                 r"layers.\1.input_layernorm.weight"),
    (r"^transformer\.h\.(\d+)\.attn\.c_attn\.(weight|bias)$",                  r"layers.\1.self_attn.{qkv}_proj.\2"),
    (r"^transformer\.h\.(\d+)\.attn\.c_proj\.weight$",                         r"layers.\1.self_attn.o_proj.weight"),
    (r"^transformer\.h\.(\d+)\.attn\.(rotary_emb\.inv_freq|bias|masked_bias)$", None),
    (r"^transformer\.h\.(\d+)\.ln_2\.weight$",                                 r"layers.\1.post_attention_layernorm.weight"),
    (r"^transformer\.h\.(\d+)\.mlp\.w1\.weight$",                              r"layers.\1.mlp.up_proj.weight"),    # w1: linear branch
    (r"^transformer\.h\.(\d+)\.mlp\.w2\.weight$",                              r"layers.\1.mlp.gate_proj.weight"),  # w2: silu branch
    (r"^transformer\.h\.(\d+)\.mlp\.c_proj\.weight$",                          r"layers.\1.mlp.down_proj.weight"),
    (r"^transformer\.ln_f\.weight$",                                           r"norm.weight"),
    # Vary-tiny: OPT's decoder keeps transformers' names under `model.decoder.`, its projector `model.`.
    (r"^model\.mm_projector\.(weight|bias)$",                                  r"mm_projector.\1"),
    (r"^model\.decoder\.(.+)$",                                                r"decoder.\1"),
    (r"^lm_head\.weight$",                                                     r"lm_head.weight"),
]
# fmt: on
_COMPILED = [(re.compile(pattern), target) for pattern, target in ORIGINAL_TO_OURS]

_SAFETENSORS_INDEX = "model.safetensors.index.json"
_BIN_INDEX = "pytorch_model.bin.index.json"
_TOKENIZER_FILE = "qwen.tiktoken"


class UnknownKey(Exception):
    pass


def rename_key(key: str) -> str | None:
    """Our name for an original key, None for a dropped one; raises UnknownKey when no rule matches."""
    for pattern, target in _COMPILED:
        if pattern.match(key):
            return None if target is None else pattern.sub(target, key)
    raise UnknownKey(key)


def split_fused_qkv(tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    """Qwen-1's c_attn holds q, k, v stacked in that order along dim 0."""
    q, k, v = tensor.chunk(3, dim=0)
    return {"q": q, "k": k, "v": v}


def convert_state_dict(original: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename (and split) original tensors; returns (ours, keys no rule knows)."""
    ours: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, tensor in original.items():
        try:
            name = rename_key(key)
        except UnknownKey:
            unknown.append(key)
            continue
        if name is None:
            continue
        if "{qkv}" in name:
            for part, piece in split_fused_qkv(tensor).items():
                ours[name.replace("{qkv}", part)] = piece
        else:
            ours[name] = tensor
    return ours, unknown


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
    if raw.get("model_type") != "vary":
        raise WeightsError(f"{path}: model_type is {raw.get('model_type')!r}, expected 'vary'")
    try:
        return config_from_release(raw)
    except WeightsError as exc:
        raise WeightsError(f"{directory}: {exc}") from None


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
    read_tokenizer: Callable[[Path], Any]
    tokenizer_files: str


FAMILIES: dict[type, Family] = {
    VaryConfig: Family(VaryQwenForCausalLM, lambda d: QwenTokenizer.from_file(d / _TOKENIZER_FILE),
                       _TOKENIZER_FILE),
    VaryTinyConfig: Family(VaryOPTForCausalLM, OPTTokenizer.from_directory,
                           "vocab.json, merges.txt, added_tokens.json"),
}


@dataclass
class LoadedModel:
    """A model ready for inference, with what is needed to prompt it.

    `pipeline.py` talks to every model family through these methods only: the prompt's ids, the stop
    ids, and the image features of a batch of pages.
    """

    model: VaryQwenForCausalLM | VaryOPTForCausalLM
    tokenizer: QwenTokenizer | OPTTokenizer
    config: ModelConfig
    directory: Path
    device: torch.device
    dtype: torch.dtype

    @property
    def is_tiny(self) -> bool:
        return isinstance(self.config, VaryTinyConfig)

    def prompt_ids(self, prompt: str) -> list[int]:
        """Token ids of the release's conversation template around `prompt` (a preset name or text).

        For Vary-tiny an empty prompt selects the image-only (vocabulary-stage) format.
        """
        from .prompts import build_prompt_ids, build_tiny_prompt_ids, resolve_prompt

        text = resolve_prompt(prompt, self.config.prompt_style)
        if self.is_tiny:
            return build_tiny_prompt_ids(self.tokenizer, text, self.config.image_token_len)
        return build_prompt_ids(self.tokenizer, text, style=self.config.prompt_style,
                                image_token_len=self.config.image_token_len)

    @property
    def stop_ids(self) -> set[int]:
        if self.is_tiny:
            return {self.tokenizer.eos_id}  # </s>
        return {self.tokenizer.im_end_id, self.tokenizer.endoftext_id}

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_id if self.is_tiny else self.tokenizer.endoftext_id

    def encode_pages(self, images: list, prompt: str = "ocr", vision_batch: int | None = None) -> torch.Tensor:
        """Image features (B, N, W) of RGB PIL pages, on the model's device and dtype.

        `prompt` matters to Vary-tiny only, whose two prompt formats were trained on differently
        preprocessed pages: "" (image tokens alone) takes the vocabulary stage's preprocessing.
        `vision_batch` pages go through the vision towers at a time; by default all of them on a GPU
        and one on a CPU, where batching gains nothing and SAM's global attention (12 x 4096² floats per
        page per layer) only costs memory: bench/bench_infer.py measured 10.2 s/page one at a time
        against 17.1 s/page and 20 GiB of RSS eight at a time.
        """
        vision_batch = vision_batch or (1 if self.device.type == "cpu" else len(images))
        with torch.inference_mode():
            return torch.cat([self._encode(images[i:i + vision_batch], prompt)
                              for i in range(0, len(images), vision_batch)])

    def _encode(self, images: list, prompt: str) -> torch.Tensor:
        from .preprocess import linear_imagenet_pixels, preprocess_page, sam_pixels

        if self.is_tiny:
            from .prompts import resolve_prompt

            image_only = resolve_prompt(prompt, self.config.prompt_style) == ""
            to_pixels = linear_imagenet_pixels if image_only else sam_pixels
            sam = torch.stack([to_pixels(image, self.config.sam) for image in images])  # (B, 3, 1024, 1024)
            return self.model.encode_images(sam.to(self.device, self.dtype))
        pages = [preprocess_page(image, self.config) for image in images]
        clip = torch.stack([p.clip for p in pages]).to(self.device, self.dtype)  # (B, 3, 224, 224)
        sam = torch.stack([p.sam for p in pages]).to(self.device, self.dtype)  # (B, 3, 1024, 1024)
        return self.model.encode_images(clip, sam)


def build_on_meta(config: ModelConfig) -> VaryQwenForCausalLM | VaryOPTForCausalLM:
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
    tokenizer = FAMILIES[type(config)].read_tokenizer(directory)
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
    from . import hub, registry
    from .device import resolve_device, resolve_dtype

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
