"""The vocabulary stage (`vary train --vocabulary DATA`): Vary-tiny learns the new vision vocabulary.

As the original's vary/train/train_opt.py + vary/model/vary_opt.py train it (training.md §1, §4):
everything trains, the SAM encoder + neck + net_2/net_3 (the original runs them under
`torch.set_grad_enabled(True)`), `mm_projector` and OPT; the loss is the mean cross-entropy over the
answer tokens of vary/data/caption_opt.py's sequence (dataset.py `encode_vocabulary_sample`), with OPT's
residual dropout (0.1 in OPT-125M's config) active. Pages go through the deterministic part of the
original's `train_transform` (albumentations Resize(1024, 1024) + ImageNet Normalize, which is
`test_transform`, models/preprocess.py `linear_imagenet_pixels`). Left out: its random augmentations, each
applied to a few percent of pages (erosion/dilation 2 %, shear 3 %, shift-scale-rotate 3 %, grid
distortion 4 %, translate + elastic 4 %, brightness/contrast 3 %, JPEG quality 95 7 %, Gaussian noise
8 %, Gaussian blur 3 %; `Bitmap` has p=0).

The vision vocabulary can start from the checkpoint, from scratch (as the original builds it: SAM
ViT-B with no weights inside OPT's `from_pretrained`), or with the SAM encoder read from a
segment-anything ViT-B checkpoint (`image_encoder.*` keys of sam_vit_b_01ec64.pth) and new net_2/net_3
and projector: `init_vocabulary`. Checkpoints are Vary-tiny release directories (models/export.py).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from ..models.keys import UnknownKey, to_ours
from ..models.config import SamVisionSpec
from ..errors import VaryError, WeightsError
from ..models.vary_qwen import VisionVocabulary, attention_bias
from ..models.vary_opt import VaryOPTForCausalLM
from .config import TrainConfig
from .state import Recipe, target_loss

# OPT's initializer_range (init_std): what transformers' _init_weights gives the modules the original
# builds without weights (the SAM tower's Linear layers and the projector).
INIT_STD = 0.02
# Prefix of the image encoder in segment-anything's checkpoints (sam_vit_b_01ec64.pth).
SAM_FILE_PREFIX = "image_encoder."


def opt_hidden(model: VaryOPTForCausalLM, embeds: torch.Tensor) -> torch.Tensor:
    """OPT's decoder in training mode on right-padded rows: positions 0..T-1 (the original derives them
    from the attention mask, which gives the same numbers for right padding), causal attention; the
    hidden states (B, T, W) before the final LayerNorm."""
    decoder = model.decoder
    batch, length = embeds.shape[:2]
    positions = torch.arange(length, device=embeds.device).expand(batch, length)  # (B, T)
    hidden = decoder.project_in(embeds) if decoder.project_in is not None else embeds
    hidden = hidden + decoder.embed_positions(None, position_ids=positions)  # (B, T, W)
    mask = attention_bias(torch.zeros(batch, dtype=torch.long, device=embeds.device), 0, length, length,
                          hidden.dtype)  # (B, 1, T, T) causal
    for layer in decoder.layers:
        hidden = layer(hidden, attention_mask=mask, vary_cache=None)
    return hidden  # (B, T, W)


def lm_head(model: VaryOPTForCausalLM, states: torch.Tensor) -> torch.Tensor:
    decoder = model.decoder
    if decoder.final_layer_norm is not None:
        states = decoder.final_layer_norm(states)
    if decoder.project_out is not None:
        states = decoder.project_out(states)
    return model.lm_head(states)  # (n, V)


def vocabulary_loss(model: VaryOPTForCausalLM, input_ids: torch.Tensor, labels: torch.Tensor,
                    sam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of token cross-entropies, number of target tokens) of a batch, gradients through SAM."""
    features = model.mm_projector(model.vision_tower_high(sam))  # (B, 256, W); not encode_images (no-grad)
    embeds = model.embed(input_ids, features)  # (B, T, W)
    return target_loss(opt_hidden(model, embeds), labels, lambda states: lm_head(model, states))


def fresh_vocabulary(spec: SamVisionSpec) -> VisionVocabulary:
    """A vision vocabulary initialized as the original's from-scratch build: torch's defaults for the
    convolutions and LayerNorms, zero position embeddings (SAM's own init), N(0, 0.02) Linear weights
    with zero biases (transformers' _init_weights of OPT, applied to modules missing from the weights)."""
    vocabulary = VisionVocabulary(spec)
    with torch.no_grad():
        for module in vocabulary.modules():
            if isinstance(module, nn.Linear):
                module.weight.normal_(0.0, INIT_STD)
                if module.bias is not None:
                    module.bias.zero_()
        for name, param in vocabulary.named_parameters():
            if name == "pos_embed" or name.endswith(("rel_pos_h", "rel_pos_w")):
                param.zero_()
    return vocabulary


def read_sam_encoder(path: Path, spec: SamVisionSpec) -> dict[str, torch.Tensor]:
    """The SAM ViT-B image encoder of a segment-anything checkpoint under our VisionVocabulary names
    (no `vision_tower_high.` prefix), checked key by key and shape by shape; net_2/net_3 are not in it.

    Accepts the full SAM state dict (`image_encoder.*`, the prompt encoder and mask decoder are skipped)
    or the image encoder's own state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such SAM checkpoint file (--vocabulary-init)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a foreign or truncated file
        raise WeightsError(f"{path}: not a readable torch checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state dict")
    prefix = SAM_FILE_PREFIX if any(k.startswith(SAM_FILE_PREFIX) for k in state) else ""
    ours: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, tensor in state.items():
        if not key.startswith(prefix):
            continue  # prompt_encoder.*, mask_decoder.*
        try:
            # Segment-anything's encoder names are the Vary releases' SAM names: reuse the loader's table.
            name = to_ours("transformer.vision_tower_high." + key[len(prefix):])
        except UnknownKey:
            name = None
        if name is None or name.split(".")[1] in ("net_2", "net_3"):
            unknown.append(key)
            continue
        ours[name.removeprefix("vision_tower_high.")] = tensor
    with torch.device("meta"):
        expected = {k: v.shape for k, v in VisionVocabulary(spec).state_dict().items()
                    if not k.startswith(("net_2.", "net_3."))}
    missing = sorted(set(expected) - set(ours))
    unknown += sorted(prefix + k for k in set(ours) - set(expected))
    if missing or unknown:
        details = ([f"{len(missing)} missing, e.g. {', '.join(missing[:3])}"] if missing else []) + \
                  ([f"{len(unknown)} unexpected, e.g. {', '.join(unknown[:3])}"] if unknown else [])
        raise WeightsError(f"{path}: not a SAM ViT-B image encoder for this model: {'; '.join(details)}")
    for key, shape in expected.items():
        if tuple(ours[key].shape) != tuple(shape):
            raise WeightsError(f"{path}: {prefix}{key} has shape {tuple(ours[key].shape)}, the model's SAM "
                               f"encoder needs {tuple(shape)}")
    return ours


def init_vocabulary(model: VaryOPTForCausalLM, how: str) -> str | None:
    """Re-initialize the vision vocabulary and projector per `--vocabulary-init`; returns what was done.

    how: "checkpoint" (keep), "scratch" (fresh_vocabulary), or a SAM ViT-B checkpoint file (its encoder,
    with fresh net_2/net_3 and projector).
    """
    if how == "checkpoint":
        return None
    fresh = fresh_vocabulary(model.config.sam)
    if how != "scratch":
        fresh.load_state_dict(read_sam_encoder(Path(how), model.config.sam), strict=False)
    target = model.vision_tower_high.state_dict()
    with torch.no_grad():
        for name, tensor in fresh.state_dict().items():
            target[name].copy_(tensor)
        model.mm_projector.weight.normal_(0.0, INIT_STD)
        model.mm_projector.bias.zero_()
    return "a new vision vocabulary" if how == "scratch" else f"the SAM encoder of {how}, new convs and projector"


class VocabularyRecipe(Recipe):
    """Vary-tiny in the vocabulary stage."""

    loss = staticmethod(vocabulary_loss)

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_id

    def layers(self) -> list[nn.Module]:
        return list(self.model.decoder.layers)

    def prepare(self, cfg: TrainConfig) -> None:
        positions = self.config.lm.max_position_embeddings
        if cfg.max_length > positions:
            raise VaryError(f"--max-length {cfg.max_length} exceeds OPT's {positions} learned positions")
        self.model.requires_grad_(True)  # everything trains, the SAM vocabulary included
        for layer in self.model.decoder.layers:
            layer.dropout = cfg.dropout  # OPT's residual dropout; the inference build has none

    def finish(self) -> None:
        for layer in self.model.decoder.layers:
            layer.dropout = 0.0
