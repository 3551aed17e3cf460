"""GOT-OCR2.0's configuration: the config.json of either release read into one frozen record.

Two releases carry the same network (arXiv 2409.01704: SAM-B vision encoder with its neck, two stride-2
convs and a linear projector, 256 tokens per 1024² tile, Qwen2-0.5B):
- the hf release (stepfun-ai/GOT-OCR-2.0-hf, `model_type: got_ocr2`): transformers' `GotOcr2Config`, a
  nested `text_config` (Qwen2) and `vision_config`;
- the original release (stepfun-ai/GOT-OCR2_0, remote code, `model_type: GOT`): a flat Qwen2 config plus
  GOT's image-token fields, and no vision section at all: the original code builds its encoder from
  constants. `vision_from_shapes` reads the encoder's sizes from the weights instead, so a checkpoint of
  any size loads (the tiny ones the tests write included).
Both are parsed by transformers' own config classes (`GotOcr2Config`, `Qwen2Config`), so every field a
file leaves out takes the default transformers would give it. Used by `checkpoint.read_config`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import WeightsError
from .config import SamVisionSpec

LAYOUTS = ("hf", "original")
ORIGINAL_SAM = "model.vision_tower_high."  # where the original release keeps the SAM encoder


@dataclass(frozen=True)
class Qwen2LMConfig:
    """GOT's LLM, Qwen2-0.5B, as transformers' Qwen2Config describes it."""

    vocab_size: int = 151860
    hidden_size: int = 1024
    intermediate_size: int = 2816
    num_layers: int = 24
    num_heads: int = 16
    num_kv_heads: int = 16
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1000000.0
    max_position_embeddings: int = 32768
    # The hf release ties lm_head to the token embedding; the original stores a copy of it.
    tie_word_embeddings: bool = True

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise WeightsError(f"config.json: hidden_size {self.hidden_size}, num_attention_heads {self.num_heads} "
                               f"and num_key_value_heads {self.num_kv_heads} do not divide evenly")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


@dataclass(frozen=True)
class GotConfig:
    """GOT-OCR2.0: the SAM encoder (`sam`), the projector into the LLM width, a Qwen2 decoder (`lm`).

    `image_token_len` is per 1024² tile: a page cropped into tiles has `image_token_len` x tiles
    `<imgpad>` tokens. `layout` names the release the checkpoint came in (its tensor names and files).
    """

    lm: Qwen2LMConfig = field(default_factory=Qwen2LMConfig)
    sam: SamVisionSpec = field(default_factory=SamVisionSpec)
    image_token_len: int = 256
    im_start_token: int = 151857
    im_end_token: int = 151858
    im_patch_token: int = 151859
    layout: str = "hf"
    prompt_style: str = "got-ocr2"

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise WeightsError(f"GOT layout must be one of {LAYOUTS}, got {self.layout!r}")
        # transformers' GotOcr2MultiModalProjector: conv (C -> 2C), conv (2C -> LLM width), then a linear.
        wanted = (2 * self.sam.output_channels, self.lm.hidden_size)
        if tuple(self.sam.net_channels) != wanted:
            raise WeightsError(f"config.json: the projector convs are {self.sam.net_channels} wide; GOT's are "
                               f"{wanted} (twice the neck's {self.sam.output_channels} channels, then the LLM width)")
        if self.image_token_len != self.sam.num_tokens:
            raise WeightsError(f"config.json: image_token_len {self.image_token_len} differs from the "
                               f"{self.sam.num_tokens} tokens the vision encoder gives per tile")
        for name in ("im_start_token", "im_end_token", "im_patch_token"):
            if not 0 <= getattr(self, name) < self.lm.vocab_size:
                raise WeightsError(f"config.json: {name} {getattr(self, name)} is outside the vocabulary")

    @property
    def projector_width(self) -> int:
        return self.lm.hidden_size

    def to_hf(self):
        """transformers' GotOcr2Config of this model: our modules are built from it, and the checkpoints
        `vary train` writes carry it (they load in transformers' GotOcr2ForConditionalGeneration)."""
        from transformers import GotOcr2Config

        lm, sam = self.lm, self.sam
        text = dict(model_type="qwen2", vocab_size=lm.vocab_size, hidden_size=lm.hidden_size,
                    intermediate_size=lm.intermediate_size, num_hidden_layers=lm.num_layers,
                    num_attention_heads=lm.num_heads, num_key_value_heads=lm.num_kv_heads, hidden_act="silu",
                    rms_norm_eps=lm.rms_norm_eps, rope_theta=lm.rope_theta,
                    max_position_embeddings=lm.max_position_embeddings, tie_word_embeddings=lm.tie_word_embeddings,
                    use_sliding_window=False, attention_dropout=0.0)
        vision = dict(hidden_size=sam.hidden_size, output_channels=sam.output_channels,
                      num_hidden_layers=sam.num_layers, num_attention_heads=sam.num_heads, image_size=sam.image_size,
                      patch_size=sam.patch_size, layer_norm_eps=sam.layer_norm_eps, window_size=sam.window_size,
                      global_attn_indexes=list(sam.global_attn_indexes), mlp_dim=sam.mlp_dim)
        return GotOcr2Config(text_config=text, vision_config=vision, image_token_index=self.im_patch_token,
                             image_seq_length=self.image_token_len, tie_word_embeddings=lm.tie_word_embeddings)

    def to_release(self) -> dict[str, Any]:
        """The hf release's config.json of this model (we write GOT checkpoints in the hf layout only)."""
        out = self.to_hf().to_dict()
        out.pop("dtype", None)
        out["architectures"] = ["GotOcr2ForConditionalGeneration"]
        return out

    @classmethod
    def from_hf(cls, config_json: Mapping[str, Any]) -> "GotConfig":
        """The hf release's config.json (`model_type: got_ocr2`), through transformers' GotOcr2Config."""
        from transformers import GotOcr2Config

        try:
            hf = GotOcr2Config(**dict(config_json))
        except (TypeError, ValueError) as exc:
            raise WeightsError(f"config.json: not a GotOcr2Config ({exc})") from None
        vision = hf.vision_config
        sam = SamVisionSpec(image_size=_int(vision.image_size), patch_size=_int(vision.patch_size),
                            hidden_size=vision.hidden_size, num_layers=vision.num_hidden_layers,
                            num_heads=vision.num_attention_heads, mlp_dim=vision.mlp_dim,
                            window_size=vision.window_size, global_attn_indexes=tuple(vision.global_attn_indexes),
                            output_channels=vision.output_channels, layer_norm_eps=vision.layer_norm_eps,
                            net_channels=(2 * vision.output_channels, hf.text_config.hidden_size))
        pad = hf.image_token_index
        # <img>, </img>, <imgpad> are Qwen-VL's last three tokens, in that order; the tokenizer check confirms.
        return cls(lm=_qwen2(hf.text_config, hf.tie_word_embeddings), sam=sam, image_token_len=sam.num_tokens,
                   im_start_token=pad - 2, im_end_token=pad - 1, im_patch_token=pad, layout="hf")

    @classmethod
    def from_original(cls, config_json: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> "GotConfig":
        """The original release's config.json (`model_type: GOT`) with the vision sizes read from `shapes`,
        the tensor shapes of its weight files by original name."""
        from transformers import Qwen2Config

        try:
            text = Qwen2Config(**dict(config_json))
        except (TypeError, ValueError) as exc:
            raise WeightsError(f"config.json: not a Qwen2 config ({exc})") from None
        lm = _qwen2(text, text.tie_word_embeddings)
        ids = {k: config_json[k] for k in ("image_token_len", "im_start_token", "im_end_token", "im_patch_token")
               if k in config_json}
        sam = vision_from_shapes(shapes)
        return cls(lm=lm, sam=sam, layout="original", **ids)


def _int(size: Any) -> int:
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise WeightsError(f"config.json: non-square vision size {size} is not supported")
        return int(size[0])
    return int(size)


def _qwen2(text: Any, tie: bool) -> Qwen2LMConfig:
    rope = dict(getattr(text, "rope_parameters", None) or {})
    if rope.get("rope_type", "default") != "default":
        raise WeightsError(f"config.json: rope type {rope.get('rope_type')!r} is not supported (GOT uses default RoPE)")
    if getattr(text, "use_sliding_window", False):
        raise WeightsError("config.json: use_sliding_window is not supported (GOT attends to the whole sequence)")
    if getattr(text, "hidden_act", "silu") != "silu":
        raise WeightsError(f"config.json: hidden_act {text.hidden_act!r} is not supported (Qwen2 uses silu)")
    theta = rope.get("rope_theta", getattr(text, "rope_theta", None))
    return Qwen2LMConfig(vocab_size=text.vocab_size, hidden_size=text.hidden_size,
                         intermediate_size=text.intermediate_size, num_layers=text.num_hidden_layers,
                         num_heads=text.num_attention_heads, num_kv_heads=text.num_key_value_heads,
                         rms_norm_eps=text.rms_norm_eps, rope_theta=float(theta),
                         max_position_embeddings=text.max_position_embeddings, tie_word_embeddings=bool(tie))


def vision_from_shapes(shapes: Mapping[str, tuple[int, ...]]) -> SamVisionSpec:
    """The SAM encoder's sizes from the original release's tensor shapes.

    Width and patch size from the patch embedding (width, 3, p, p); the grid from `pos_embed`
    (1, g, g, width); the block count from the keys; per block, `rel_pos_h` is (2s - 1, head_dim) with s the
    grid for a global-attention block and the window otherwise, which gives the heads, the window size and
    the global blocks; the MLP and neck widths from their weights.
    """
    def shape(name: str) -> tuple[int, ...]:
        if ORIGINAL_SAM + name not in shapes:
            raise WeightsError(f"the weights lack {ORIGINAL_SAM}{name}; not a GOT-OCR2.0 checkpoint")
        return tuple(shapes[ORIGINAL_SAM + name])

    width, _, patch, _ = shape("patch_embed.proj.weight")
    grid = shape("pos_embed")[1]
    blocks = sorted({int(m.group(1)) for key in shapes
                     if (m := re.match(re.escape(ORIGINAL_SAM) + r"blocks\.(\d+)\.", key))})
    if not blocks or blocks != list(range(len(blocks))):
        raise WeightsError(f"the weights' SAM blocks are numbered {blocks[:5]}..., expected 0..N-1")
    spans = [shape(f"blocks.{n}.attn.rel_pos_h") for n in blocks]
    head_dim = spans[0][1]
    sides = [(length + 1) // 2 for length, _ in spans]
    global_blocks = tuple(n for n, side in zip(blocks, sides) if side == grid)
    windows = {side for side in sides if side != grid}
    if len(windows) > 1 or width % head_dim:
        raise WeightsError(f"the SAM blocks' relative-position tables {[s[0] for s in spans]} do not fit one "
                           f"window size and a {grid}-patch grid")
    out_channels = shape("neck.0.weight")[0]
    net_2, net_3 = shape("net_2.weight"), shape("net_3.weight")
    return SamVisionSpec(image_size=grid * patch, patch_size=patch, hidden_size=width, num_layers=len(blocks),
                         num_heads=width // head_dim, mlp_dim=shape("blocks.0.mlp.lin1.weight")[0],
                         window_size=windows.pop() if windows else grid, global_attn_indexes=global_blocks,
                         output_channels=out_channels, net_channels=(net_2[0], net_3[0]))
