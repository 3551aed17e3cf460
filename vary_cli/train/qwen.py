"""The pretraining and SFT stages (`vary train --pretrain/--sft`) of Vary-toy / Vary-base: what trains,
the training-mode forward and the loss (training.md §1, §3).

Both vision towers are frozen (the original runs them without gradients); the projectors and the LLM
train, or with `freeze_lm` only the projectors and the input embeddings. The forward is Qwen-1's
training mode: positions 0..T-1, no dynamic NTK, no log-n, plain causal attention (SDPA while training).
`QwenRecipe` hands these to the loop in loop.py.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..models.vary_qwen import VaryQwenForCausalLM, attention_bias, check_image_tokens, rotary_cos_sin
from ..errors import VaryError
from .config import TrainConfig
from .state import Recipe, target_loss


def set_trainable(model: VaryQwenForCausalLM, freeze_lm: bool) -> None:
    """The original's freezing: vision towers never train (they run without gradients); with
    `freeze_lm` only the projectors and the input embeddings train, else also the whole LLM."""
    model.requires_grad_(False)
    trainable = [model.mm_projector, model.mm_projector_vary, model.embed_tokens]
    if not freeze_lm:
        trainable += [model.layers, model.norm, model.lm_head]
    for module in trainable:
        module.requires_grad_(True)


def lm_hidden(model: VaryQwenForCausalLM, embeds: torch.Tensor) -> torch.Tensor:
    """Final decoder hidden states (B, T, W) in Qwen-1's training mode: positions 0..T-1, the plain
    rotary base (no dynamic NTK), no log-n, causal attention. Right padding needs no mask: a real
    token never attends to the padding after it, and padded positions carry no label."""
    batch, length = embeds.shape[:2]
    positions = torch.arange(length, device=embeds.device).expand(batch, length)  # (B, T)
    cos_sin = rotary_cos_sin(positions, [1.0] * batch, model.config.lm, embeds.dtype)
    mask = None  # SDPA applies the causal mask itself (and can then use its fused kernels)
    if model.qwen2_config._attn_implementation != "sdpa":
        mask = attention_bias(torch.zeros(batch, dtype=torch.long, device=embeds.device), 0, length, length,
                              embeds.dtype)  # (B, 1, T, T) causal
    hidden = embeds
    for layer in model.layers:
        hidden = layer(hidden, attention_mask=mask, position_embeddings=cos_sin, vary_cache=None, vary_logn=None)
    return hidden  # (B, T, W)


def merge_images(model: nn.Module, input_ids: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Token embeddings (B, T, W) with each image row's `<imgpad>` run replaced by its image features
    (B, N, W), for any family with `embed_tokens` and an image-token config (Vary-toy/base, GOT).

    Rows without image tokens keep their embeddings and, as in the original, add zero times the
    features, so the projectors stay in the graph (DDP needs every trainable parameter to get a grad).
    """
    embeds = model.embed_tokens(input_ids)  # (B, T, W)
    is_patch = input_ids == model.config.im_patch_token  # (B, T)
    has_image = is_patch.any(dim=1)  # (B,)
    if has_image.any():
        check_image_tokens(input_ids[has_image], model.config, features.shape[1])
        embeds = embeds.masked_scatter(is_patch[..., None], features[has_image].to(embeds.dtype))
    if not has_image.all():
        embeds = embeds + (0.0 * features).sum().to(embeds.dtype)
    return embeds


def batch_loss(model: VaryQwenForCausalLM, input_ids: torch.Tensor, labels: torch.Tensor, clip: torch.Tensor,
               sam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of token cross-entropies, number of target tokens) of a batch: logits[:-1] against labels[1:].

    Logits are computed only at target positions, in chunks, in fp32.
    """
    hidden = lm_hidden(model, merge_images(model, input_ids, model.encode_images(clip, sam)))  # (B, T, W)
    return target_loss(hidden, labels, lambda states: model.lm_head(model.norm(states)))


class QwenRecipe(Recipe):
    """Vary-toy / Vary-base in the pretraining and SFT stages."""

    loss = staticmethod(batch_loss)

    @property
    def pad_id(self) -> int:
        return self.tokenizer.endoftext_id

    def layers(self) -> list[nn.Module]:
        return list(self.model.layers)

    def prepare(self, cfg: TrainConfig) -> None:
        if cfg.train_encoder:
            raise VaryError("--train-encoder trains GOT-OCR2's encoder; Vary's vision towers stay frozen in "
                            "pretraining and SFT, as in the original")
        set_trainable(self.model, cfg.freeze_lm)
        # Training attention is plain causal softmax attention (no KV cache, no log-n): SDPA computes it
        # with fused kernels. Restored to Qwen-1's own attention by `finish`.
        self._attention = self.model.qwen2_config._attn_implementation
        self.model.qwen2_config._attn_implementation = "sdpa"

    def finish(self) -> None:
        self.model.qwen2_config._attn_implementation = self._attention
