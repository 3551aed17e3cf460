"""Frozen configuration records: model architecture and presets.

`config_from_release(config_json)` reads the `config.json` of a Vary release (or of a checkpoint
written by `vary train`), tells the family from its fields (all releases say `model_type: "vary"`:
OPT fields mean Vary-tiny, Qwen-1 fields Vary-toy/Vary-base) and is, with `VaryConfig.from_release` and
`VaryTinyConfig.from_release`, the only place that knows their field names. The architecture presets
(`vary-tiny`, `vary-toy`, `vary-base`) are the same records at full size, used to build models on the
meta device for shape checks and benchmarks without any download. No torch here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import VaryError, WeightsError

# The releases do not carry the vision towers' configs (the original code loads CLIP from a hard-coded
# folder and builds SAM from constants), so the defaults below are the real towers. A checkpoint may
# override them under the `vary_cli` key of config.json; only tests and our own training use that.
EXTENSION_KEY = "vary_cli"


@dataclass(frozen=True)
class ClipVisionSpec:
    """CLIP ViT-L/14 at 224 px (openai/clip-vit-large-patch14), the frozen 'old' vocabulary."""

    hidden_size: int = 1024
    num_layers: int = 24
    num_heads: int = 16
    intermediate_size: int = 4096
    patch_size: int = 14
    image_size: int = 224
    layer_norm_eps: float = 1e-5
    hidden_act: str = "quick_gelu"
    # hidden_states[-2]: the output of the second-to-last layer, before post_layernorm.
    select_layer: int = -2

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclass(frozen=True)
class SamVisionSpec:
    """SAM ViT-B image encoder + neck + Vary's two stride-2 convs: the 'new' vision vocabulary."""

    image_size: int = 1024
    patch_size: int = 16
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    output_channels: int = 256
    layer_norm_eps: float = 1e-6
    # net_2 and net_3: Conv(256->512, k3 s2) and Conv(512->1024, k3 s2).
    net_channels: tuple[int, int] = (512, 1024)

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        # Two stride-2 convs (k3, p1) each halve the grid, rounding up.
        side = math.ceil(math.ceil(self.grid / 2) / 2)
        return side * side

    @property
    def feature_dim(self) -> int:
        return self.net_channels[1]


@dataclass(frozen=True)
class QwenLMConfig:
    """The Qwen-1 decoder (QWenLMHeadModel) as its config.json describes it."""

    vocab_size: int = 151936
    hidden_size: int = 2048
    num_layers: int = 24
    num_heads: int = 16
    kv_channels: int = 128
    # Qwen-1 convention: twice the MLP width (w1 and w2 are each intermediate_size // 2 wide).
    intermediate_size: int = 11008
    layer_norm_epsilon: float = 1e-6
    rotary_emb_base: float = 10000.0
    rotary_pct: float = 1.0
    seq_length: int = 8192
    use_dynamic_ntk: bool = True
    use_logn_attn: bool = True
    no_bias: bool = True

    def __post_init__(self) -> None:
        if self.num_heads * self.kv_channels != self.hidden_size:
            raise WeightsError(
                f"config.json: num_attention_heads ({self.num_heads}) x kv_channels ({self.kv_channels}) "
                f"must equal hidden_size ({self.hidden_size}); this is not a Qwen-1 layout vary supports"
            )
        if self.rotary_pct != 1.0:
            raise WeightsError(f"config.json: rotary_pct {self.rotary_pct} is not supported (Vary uses 1.0)")
        if not self.no_bias:
            raise WeightsError("config.json: no_bias=false is not supported (Vary's Qwen-1 has no c_proj bias)")

    @property
    def head_dim(self) -> int:
        return self.kv_channels

    @property
    def mlp_width(self) -> int:
        return self.intermediate_size // 2


PROMPT_STYLES = ("vary-toy", "vary-base")


@dataclass(frozen=True)
class VaryConfig:
    """A Vary model with a Qwen-1 LLM (Vary-toy, Vary-base): both vision towers, projectors, LLM."""

    lm: QwenLMConfig = field(default_factory=QwenLMConfig)
    clip: ClipVisionSpec = field(default_factory=ClipVisionSpec)
    sam: SamVisionSpec = field(default_factory=SamVisionSpec)
    image_token_len: int = 256
    im_start_token: int = 151857
    im_end_token: int = 151858
    im_patch_token: int = 151859
    # None: derived from the projector width, as the spec says (2048 per projector -> Vary-base).
    prompt_style: str | None = None

    def __post_init__(self) -> None:
        if self.prompt_style is None:
            style = "vary-base" if self.projector_width >= 2048 else "vary-toy"
            object.__setattr__(self, "prompt_style", style)
        if self.prompt_style not in PROMPT_STYLES:
            raise WeightsError(f"config.json: {EXTENSION_KEY}.prompt_style must be one of {PROMPT_STYLES}")
        if self.lm.hidden_size % 2:
            raise WeightsError(f"config.json: hidden_size {self.lm.hidden_size} must be even (two projectors)")
        counts = {"image_token_len": self.image_token_len, "CLIP patches": self.clip.num_patches,
                  "SAM vocabulary tokens": self.sam.num_tokens}
        if len(set(counts.values())) != 1:
            raise WeightsError(f"config.json: vision token counts disagree: {counts}")
        for name in ("im_start_token", "im_end_token", "im_patch_token"):
            if not 0 <= getattr(self, name) < self.lm.vocab_size:
                raise WeightsError(f"config.json: {name} {getattr(self, name)} is outside the vocabulary")

    @property
    def projector_width(self) -> int:
        """Output width of each projector; the two are concatenated to the LLM width."""
        return self.lm.hidden_size // 2

    @classmethod
    def from_release(cls, config_json: Mapping[str, Any]) -> "VaryConfig":
        """Build from a release's config.json (`model_type: "vary"` with Qwen-1 fields)."""
        missing = [k for k in _QWEN_REQUIRED if k not in config_json]
        if missing:
            raise WeightsError(f"config.json lacks the Qwen-1 fields {missing}")
        lm_kwargs = {ours: config_json[theirs] for ours, theirs in _QWEN_FIELDS.items() if theirs in config_json}
        try:
            lm = QwenLMConfig(**lm_kwargs)
            ext = dict(config_json.get(EXTENSION_KEY) or {})
            clip = ClipVisionSpec(**ext.pop("clip", {}))
            sam = _sam_spec(ext.pop("sam", {}))
            image_kwargs = {k: config_json[k] for k in _IMAGE_FIELDS if k in config_json}
            return cls(lm=lm, clip=clip, sam=sam, prompt_style=ext.pop("prompt_style", None), **image_kwargs)
        except TypeError as exc:  # an unknown key in the vary_cli block
            raise WeightsError(f"config.json: {exc}") from None

    def to_release(self) -> dict[str, Any]:
        """The config.json fields a release carries, plus our extension block where not default."""
        out: dict[str, Any] = {"model_type": "vary", "architectures": ["varyQwenForCausalLM"]}
        out.update({theirs: getattr(self.lm, ours) for ours, theirs in _QWEN_FIELDS.items()})
        out.update({k: getattr(self, k) for k in _IMAGE_FIELDS})
        out.update({"use_im_start_end": True, "vision_select_layer": self.clip.select_layer,
                    "max_position_embeddings": self.lm.seq_length})
        ext: dict[str, Any] = {}
        if self.clip != ClipVisionSpec():
            ext["clip"] = _asdict(self.clip)
        if self.sam != SamVisionSpec():
            ext["sam"] = _asdict(self.sam)
        derived_style = "vary-base" if self.projector_width >= 2048 else "vary-toy"
        if self.prompt_style != derived_style:
            ext["prompt_style"] = self.prompt_style
        if ext:
            out[EXTENSION_KEY] = ext
        return out


def _asdict(spec: Any) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in spec.__dict__.items()}


# ours -> config.json name
_QWEN_FIELDS = {
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "num_layers": "num_hidden_layers",
    "num_heads": "num_attention_heads",
    "kv_channels": "kv_channels",
    "intermediate_size": "intermediate_size",
    "layer_norm_epsilon": "layer_norm_epsilon",
    "rotary_emb_base": "rotary_emb_base",
    "rotary_pct": "rotary_pct",
    "seq_length": "seq_length",
    "use_dynamic_ntk": "use_dynamic_ntk",
    "use_logn_attn": "use_logn_attn",
    "no_bias": "no_bias",
}
_QWEN_REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "kv_channels",
                  "intermediate_size", "seq_length")
_IMAGE_FIELDS = ("image_token_len", "im_start_token", "im_end_token", "im_patch_token")


@dataclass(frozen=True)
class OPTLMConfig:
    """The OPT decoder of Vary-tiny as its config.json describes it (transformers' OPTConfig fields)."""

    vocab_size: int = 50268
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    ffn_dim: int = 3072
    max_position_embeddings: int = 2048
    word_embed_proj_dim: int = 768
    do_layer_norm_before: bool = True
    activation_function: str = "relu"
    enable_bias: bool = True
    layer_norm_elementwise_affine: bool = True
    remove_final_layer_norm: bool = False
    # OPT ties lm_head to the token embedding unless config.json says otherwise.
    tie_word_embeddings: bool = True

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise WeightsError(f"config.json: hidden_size ({self.hidden_size}) must be a multiple of "
                               f"num_attention_heads ({self.num_heads})")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


@dataclass(frozen=True)
class VaryTinyConfig:
    """Vary-tiny: the SAM vision vocabulary alone, one projector, an OPT decoder (vary.md §11)."""

    lm: OPTLMConfig = field(default_factory=OPTLMConfig)
    sam: SamVisionSpec = field(default_factory=SamVisionSpec)
    image_token_len: int = 256
    # Added after OPT's 50265 tokens by the original's initialize_vision_tokenizer: <imgpad>, <img>, </img>.
    im_start_token: int = 50266
    im_end_token: int = 50267
    im_patch_token: int = 50265
    prompt_style: str = "vary-tiny"

    def __post_init__(self) -> None:
        if self.prompt_style != "vary-tiny":
            raise WeightsError(f"config.json: {EXTENSION_KEY}.prompt_style must be 'vary-tiny' for an OPT model")
        if self.image_token_len != self.sam.num_tokens:
            raise WeightsError(f"config.json: image_token_len {self.image_token_len} differs from the "
                               f"{self.sam.num_tokens} tokens of the SAM vocabulary")
        for name in ("im_start_token", "im_end_token", "im_patch_token"):
            if not 0 <= getattr(self, name) < self.lm.vocab_size:
                raise WeightsError(f"config.json: {name} {getattr(self, name)} is outside the vocabulary")

    @property
    def projector_width(self) -> int:
        """Output width of `mm_projector`: the width of OPT's token embeddings."""
        return self.lm.word_embed_proj_dim

    @classmethod
    def from_release(cls, config_json: Mapping[str, Any]) -> "VaryTinyConfig":
        """Build from a Vary-tiny release's config.json (`model_type: "vary"` with OPT fields)."""
        missing = [k for k in _OPT_REQUIRED if k not in config_json]
        if missing:
            raise WeightsError(f"config.json lacks the OPT fields {missing}")
        lm_kwargs = {ours: config_json[theirs] for ours, theirs in _OPT_FIELDS.items() if theirs in config_json}
        lm_kwargs.setdefault("word_embed_proj_dim", config_json["hidden_size"])
        try:
            lm = OPTLMConfig(**lm_kwargs)
            ext = dict(config_json.get(EXTENSION_KEY) or {})
            sam = _sam_spec(ext.pop("sam", {}))
            image_kwargs = {k: config_json[k] for k in _IMAGE_FIELDS if k in config_json}
            return cls(lm=lm, sam=sam, **image_kwargs, **ext)
        except TypeError as exc:  # an unknown key in the vary_cli block
            raise WeightsError(f"config.json: {exc}") from None

    def to_release(self) -> dict[str, Any]:
        """The config.json fields a Vary-tiny release carries, plus our extension block where not default."""
        out: dict[str, Any] = {"model_type": "vary", "architectures": ["varyOPTForCausalLM"]}
        out.update({theirs: getattr(self.lm, ours) for ours, theirs in _OPT_FIELDS.items()})
        out.update({k: getattr(self, k) for k in _IMAGE_FIELDS})
        out.update({"use_im_start_end": True, "vision_select_layer": -1, "bos_token_id": 2, "eos_token_id": 2,
                    "pad_token_id": 1})
        if self.sam != SamVisionSpec():
            out[EXTENSION_KEY] = {"sam": _asdict(self.sam)}
        return out


def config_from_release(config_json: Mapping[str, Any]) -> ModelConfig:
    """The family's config from a release's config.json, told apart by its fields, never by a name.

    Every Vary release says `model_type: "vary"`; Vary-tiny's config carries OPT's fields (`ffn_dim`,
    `word_embed_proj_dim`), Vary-toy's and Vary-base's Qwen-1's (`kv_channels`, `seq_length`).
    """
    is_opt = any(k in config_json for k in _OPT_MARKERS)
    is_qwen = any(k in config_json for k in _QWEN_MARKERS)
    if is_opt and not is_qwen:
        return VaryTinyConfig.from_release(config_json)
    if is_qwen and not is_opt:
        return VaryConfig.from_release(config_json)
    raise WeightsError(f"config.json: cannot tell the model family: expected OPT fields {_OPT_MARKERS} "
                       f"(Vary-tiny) or Qwen-1 fields {_QWEN_MARKERS} (Vary-toy, Vary-base)"
                       + (", found both" if is_opt else ", found neither"))


def _sam_spec(sam_kwargs: Mapping[str, Any]) -> SamVisionSpec:
    sam_kwargs = dict(sam_kwargs)
    for key in ("global_attn_indexes", "net_channels"):
        if key in sam_kwargs:
            sam_kwargs[key] = tuple(sam_kwargs[key])
    return SamVisionSpec(**sam_kwargs)


# ours -> config.json name (transformers' OPTConfig)
_OPT_FIELDS = {
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "num_layers": "num_hidden_layers",
    "num_heads": "num_attention_heads",
    "ffn_dim": "ffn_dim",
    "max_position_embeddings": "max_position_embeddings",
    "word_embed_proj_dim": "word_embed_proj_dim",
    "do_layer_norm_before": "do_layer_norm_before",
    "activation_function": "activation_function",
    "enable_bias": "enable_bias",
    "layer_norm_elementwise_affine": "layer_norm_elementwise_affine",
    "remove_final_layer_norm": "_remove_final_layer_norm",
    "tie_word_embeddings": "tie_word_embeddings",
}
_OPT_REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "ffn_dim",
                 "max_position_embeddings")
_OPT_MARKERS = ("ffn_dim", "word_embed_proj_dim")
_QWEN_MARKERS = ("kv_channels", "seq_length")


# GOT-OCR2.0's record lives in its own module, which reads SamVisionSpec from this one (defined above).
from .got_config import GotConfig  # noqa: E402

ModelConfig = VaryConfig | VaryTinyConfig | GotConfig

# Full-size architecture presets. Numbers from the Qwen-1 releases (vary.md §6); the Vary release's own
# config.json is authoritative when loading weights. GOT-OCR2.0's defaults are its release's (Qwen2-0.5B).
PRESETS: dict[str, ModelConfig] = {
    # OPT-125M (facebook/opt-125m's config) with the three image tokens added: vocab 50265 + 3.
    "vary-tiny": VaryTinyConfig(),
    "vary-toy": VaryConfig(lm=QwenLMConfig(hidden_size=2048, num_layers=24, num_heads=16,
                                           intermediate_size=11008, seq_length=8192)),
    "vary-base": VaryConfig(lm=QwenLMConfig(hidden_size=4096, num_layers=32, num_heads=32,
                                            intermediate_size=22016, seq_length=8192)),
    "got-ocr2": GotConfig(),
}


def preset(name: str) -> ModelConfig:
    """Return the architecture preset called `name`; an unknown name lists the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise VaryError(f"unknown architecture preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None
