"""The one table of tensor names: a release's (original) names against ours, read in both directions.

`checkpoint.py` reads a release through `to_ours` (original -> ours, every family at once: first row
that matches wins) and `export.py` writes one through `to_original` (ours -> original, the rows of one
family). Each row is a pair of name templates whose `{placeholders}` stand for the parts that carry over
(layer numbers, weight/bias, a tail); a row whose ours is None drops the original tensor on loading and
is skipped on saving. `{sam}` is the SAM vision vocabulary's prefix, which differs by release: loading
accepts every known one, saving writes the family's own. `{qkv}` marks Qwen-1's fused `c_attn`, which
`split_fused_qkv` cuts into q, k, v on loading and `fuse_qkv` puts back on saving.

GOT-OCR2.0 has two releases of one network (got_config.py): the original keeps Vary's names for the SAM
encoder (under `model.vision_tower_high`, so the SAM rows serve it too) and its own for the rest; the hf
release has transformers' names, which are ours but for the prefixes. Rows are matched in table order,
so the original's `net_2`/`net_3` rows come before the SAM rows' `{net}`.
"""

from __future__ import annotations

import re
import torch

QWEN, TINY = "qwen", "tiny"  # Vary-toy / Vary-base (Qwen-1), Vary-tiny (OPT)
GOT_HF, GOT_ORIGINAL = "got-hf", "got-original"  # GOT-OCR2.0's two releases
BOTH = (QWEN, TINY)
SAM = (QWEN, TINY, GOT_ORIGINAL)  # the releases that name the SAM encoder Vary's way
FAMILIES = (QWEN, TINY, GOT_HF, GOT_ORIGINAL)

# The SAM vision vocabulary, under its name in each release: Vary-toy/-base `transformer.vision_tower_high`,
# Vary-tiny `model.vision_tower_2` (Ucas-HaoranWei/Vary) or `model.vision_tower` (Vary-toy's vary_opt.py),
# GOT-OCR2.0's original release `model.vision_tower_high`.
SAM_PREFIXES = ("transformer.vision_tower_high", "model.vision_tower_2", "model.vision_tower_high",
                "model.vision_tower")
SAVED_SAM_PREFIX = {QWEN: "transformer.vision_tower_high", TINY: "model.vision_tower_2",
                    GOT_ORIGINAL: "model.vision_tower_high"}

# What each placeholder matches. A template uses each placeholder at most once.
PLACEHOLDERS = {
    "n": r"\d+",
    "wb": r"weight|bias",
    "rest": r".+",
    "attn_or_mlp": r"attn|mlp",
    "net": r"net_2|net_3",
    "projector": r"mm_projector|mm_projector_vary",
    "buffer": r"rotary_emb\.inv_freq|bias|masked_bias",
    "sam": "|".join(re.escape(prefix) for prefix in SAM_PREFIXES),
    "qkv": r"[qkv]",
}

# fmt: off
KEY_TABLE: list[tuple[str, str | None, tuple[str, ...]]] = [
    # original (release) name                                 ours                                          families
    ("transformer.vision_tower.vision_model.embeddings.position_ids", None,                                   (QWEN,)),
    ("transformer.vision_tower.vision_model.{rest}",          "vision_tower.{rest}",                          (QWEN,)),
    # GOT-OCR2.0's original release: its projector convs sit in the SAM module (before `{net}` below).
    ("model.vision_tower_high.net_2.weight",                  "multi_modal_projector.conv_upsampler1.weight", (GOT_ORIGINAL,)),
    ("model.vision_tower_high.net_3.weight",                  "multi_modal_projector.conv_upsampler2.weight", (GOT_ORIGINAL,)),
    ("{sam}.patch_embed.proj.{wb}",                           "vision_tower_high.patch_embed.projection.{wb}", SAM),
    ("{sam}.pos_embed",                                       "vision_tower_high.pos_embed",                  SAM),
    ("{sam}.blocks.{n}.norm1.{wb}",                           "vision_tower_high.layers.{n}.layer_norm1.{wb}", SAM),
    ("{sam}.blocks.{n}.norm2.{wb}",                           "vision_tower_high.layers.{n}.layer_norm2.{wb}", SAM),
    ("{sam}.blocks.{n}.{attn_or_mlp}.{rest}",                 "vision_tower_high.layers.{n}.{attn_or_mlp}.{rest}", SAM),
    ("{sam}.neck.0.weight",                                   "vision_tower_high.neck.conv1.weight",          SAM),
    ("{sam}.neck.1.{wb}",                                     "vision_tower_high.neck.layer_norm1.{wb}",      SAM),
    ("{sam}.neck.2.weight",                                   "vision_tower_high.neck.conv2.weight",          SAM),
    ("{sam}.neck.3.{wb}",                                     "vision_tower_high.neck.layer_norm2.{wb}",      SAM),
    ("{sam}.{net}.weight",                                    "vision_tower_high.{net}.weight",               BOTH),
    ("model.mm_projector_vary.{wb}",                          "multi_modal_projector.multimodal_projector.{wb}", (GOT_ORIGINAL,)),
    ("model.embed_tokens.weight",                             "embed_tokens.weight",                          (GOT_ORIGINAL,)),
    ("model.layers.{n}.{rest}",                               "layers.{n}.{rest}",                            (GOT_ORIGINAL,)),
    ("model.norm.weight",                                     "norm.weight",                                  (GOT_ORIGINAL,)),
    # GOT-OCR2.0's hf release, as transformers' save_pretrained names it (the LLM last: `{rest}` takes all).
    ("vision_tower.{rest}",                                   "vision_tower_high.{rest}",                     (GOT_HF,)),
    ("multi_modal_projector.{rest}",                          "multi_modal_projector.{rest}",                 (GOT_HF,)),
    ("language_model.lm_head.weight",                         "lm_head.weight",                               (GOT_HF,)),
    ("language_model.model.{rest}",                           "{rest}",                                       (GOT_HF,)),
    ("transformer.{projector}.{wb}",                          "{projector}.{wb}",                             (QWEN,)),
    ("transformer.wte.weight",                                "embed_tokens.weight",                          (QWEN,)),
    ("transformer.h.{n}.ln_1.weight",                         "layers.{n}.input_layernorm.weight",            (QWEN,)),
    ("transformer.h.{n}.attn.c_attn.{wb}",                    "layers.{n}.self_attn.{qkv}_proj.{wb}",         (QWEN,)),
    ("transformer.h.{n}.attn.c_proj.weight",                  "layers.{n}.self_attn.o_proj.weight",           (QWEN,)),
    ("transformer.h.{n}.attn.{buffer}",                       None,                                           (QWEN,)),
    ("transformer.h.{n}.ln_2.weight",                         "layers.{n}.post_attention_layernorm.weight",   (QWEN,)),
    ("transformer.h.{n}.mlp.w1.weight",                       "layers.{n}.mlp.up_proj.weight",                (QWEN,)),  # w1: linear branch
    ("transformer.h.{n}.mlp.w2.weight",                       "layers.{n}.mlp.gate_proj.weight",              (QWEN,)),  # w2: silu branch
    ("transformer.h.{n}.mlp.c_proj.weight",                   "layers.{n}.mlp.down_proj.weight",              (QWEN,)),
    ("transformer.ln_f.weight",                               "norm.weight",                                  (QWEN,)),
    # Vary-tiny: OPT's decoder keeps transformers' names under `model.decoder.`, its projector under `model.`.
    ("model.mm_projector.{wb}",                               "mm_projector.{wb}",                            (TINY,)),
    ("model.decoder.{rest}",                                  "decoder.{rest}",                               (TINY,)),
    ("lm_head.weight",                                        "lm_head.weight",                               SAM),
]
# fmt: on

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _pattern(template: str) -> re.Pattern:
    """A regex for a template: each placeholder becomes a named group."""
    parts, last = [], 0
    for m in _PLACEHOLDER.finditer(template):
        parts.append(re.escape(template[last:m.start()]))
        name = m.group(1)
        parts.append(f"(?P<{name}>{PLACEHOLDERS[name]})")
        last = m.end()
    parts.append(re.escape(template[last:]))
    return re.compile("^" + "".join(parts) + "$")


def _fill(template: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


_LOAD_RULES = [(_pattern(original), ours) for original, ours, _ in KEY_TABLE]
_SAVE_RULES = {family: [(_pattern(ours), original) for original, ours, families in KEY_TABLE
                        if ours is not None and family in families] for family in FAMILIES}


class UnknownKey(Exception):
    pass


def to_ours(key: str) -> str | None:
    """Our name for an original key, None for a dropped one; raises UnknownKey when no row matches.

    A fused Qwen-1 `c_attn` comes back with the literal marker `{qkv}` in place of q, k or v.
    """
    for pattern, ours in _LOAD_RULES:
        m = pattern.match(key)
        if m:
            return None if ours is None else _fill(ours, m.groupdict())
    raise UnknownKey(key)


def to_original(key: str, family: str) -> tuple[str, str | None]:
    """The release name of one of our keys in `family`'s layout, and which of q/k/v it is when the
    release fuses it (else None); raises UnknownKey when no row matches."""
    for pattern, original in _SAVE_RULES[family]:
        m = pattern.match(key)
        if m:
            values = {**m.groupdict(), "sam": SAVED_SAM_PREFIX.get(family, "")}
            return _fill(original, values), values.get("qkv")
    raise UnknownKey(key)


def split_fused_qkv(tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    """Qwen-1's c_attn holds q, k, v stacked in that order along dim 0."""
    q, k, v = tensor.chunk(3, dim=0)
    return {"q": q, "k": k, "v": v}


def fuse_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The inverse of `split_fused_qkv`."""
    return torch.cat([q, k, v], dim=0)


def convert_state_dict(original: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename (and split) original tensors; returns (ours, keys no row knows)."""
    ours: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, tensor in original.items():
        try:
            name = to_ours(key)
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


def to_release_state_dict(ours: dict[str, torch.Tensor], family: str = QWEN) -> dict[str, torch.Tensor]:
    """Our state dict under `family`'s release names, fused tensors put back together."""
    out: dict[str, torch.Tensor] = {}
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in ours.items():
        try:
            name, which = to_original(key, family)
        except UnknownKey:
            raise KeyError(f"no release name for {key}") from None
        if which is None:
            out[name] = tensor
        else:
            parts.setdefault(name, {})[which] = tensor
    for name, qkv in parts.items():
        out[name] = fuse_qkv(qkv["q"], qkv["k"], qkv["v"])
    return out
