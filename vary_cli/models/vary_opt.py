"""Vary-tiny: the new vision vocabulary with an OPT-125M decoder, as torch modules only (vary.md §11).

How Vary-tiny differs from its parents, and so what this file writes itself:

- One vision tower, Vary's new vocabulary (`VisionVocabulary` from vary_qwen.py, the same module the Qwen
  family uses: SAM ViT-B + neck + net_2/net_3, 1024x1024 px -> 256 tokens of width 1024); no CLIP.
- One projector, `mm_projector`: Linear(1024, OPT's embedding width). Its 256 features replace the
  `<imgpad>` embeddings between `<img>` and `</img>` on the prefill step, by the same rule and the same
  checks as the Qwen family (`merge_image_features`).
- The decoder is transformers' OPT (`OPTDecoderLayer`, `OPTLearnedPositionalEmbedding` with its offset
  of 2, the final LayerNorm), driven here with each row's own positions and an explicit additive mask so
  that a left-padded batch computes what batch size 1 computes. `opt_attention`, registered as a
  transformers attention implementation, adds our preallocated KV cache and keeps the order of
  operations of the OPT attention the original ran (transformers 4.32: query scaled before the product,
  mask added, clamped at the dtype's minimum, softmax), so fp32 results match.
- `lm_head` is the token embedding itself unless the config unties it (OPT's default is tied):
  `tie_weights()` shares the parameter, and the loader reads only the embedding.

The interface is the one `engine/` drives for every family: `embed`, `forward(embeds, positions,
attention_bias, alphas, cache, read_at)`, `new_cache`, `prompt_alphas`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from transformers import AttentionInterface, OPTConfig
from transformers.models.opt.modeling_opt import OPTDecoderLayer, OPTLearnedPositionalEmbedding

from .config import OPTLMConfig, VaryTinyConfig
from ..errors import PromptError
from .vary_qwen import KVCache, TiedHead, VisionVocabulary, merge_image_features, skinny_linears

ATTN_IMPLEMENTATION = "vary_opt"


def opt_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0,
                  vary_cache: KVCache | None = None, **_: object) -> tuple[torch.Tensor, torch.Tensor]:
    """OPT's eager attention with our KV cache; query, key, value (B, H, T, D), query already scaled.

    OPTAttention multiplies the query by head_dim ** -0.5 before calling this (and passes scaling=1).
    """
    if vary_cache is not None:
        key, value = vary_cache.update(module.layer_idx, key, value)  # (B, H, T_past + T, D)
    weights = torch.matmul(query, key.transpose(-1, -2))  # (B, H, Tq, Tk)
    if attention_mask is not None:
        weights = weights + attention_mask
        # transformers 4.32's OPT clamps here, so two minima added together cannot become -inf.
        weights = torch.max(weights, torch.tensor(torch.finfo(weights.dtype).min, device=weights.device))
    if weights.dtype == torch.float16:
        weights = nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(torch.float16)
    else:
        weights = nn.functional.softmax(weights, dim=-1)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value)  # (B, H, Tq, D)
    return output.transpose(1, 2).contiguous(), weights  # (B, Tq, H, D)


AttentionInterface.register(ATTN_IMPLEMENTATION, opt_attention)


def opt_config(lm: OPTLMConfig) -> OPTConfig:
    config = OPTConfig(
        vocab_size=lm.vocab_size, hidden_size=lm.hidden_size, num_hidden_layers=lm.num_layers,
        ffn_dim=lm.ffn_dim, num_attention_heads=lm.num_heads, max_position_embeddings=lm.max_position_embeddings,
        word_embed_proj_dim=lm.word_embed_proj_dim, do_layer_norm_before=lm.do_layer_norm_before,
        activation_function=lm.activation_function, enable_bias=lm.enable_bias,
        layer_norm_elementwise_affine=lm.layer_norm_elementwise_affine,
        _remove_final_layer_norm=lm.remove_final_layer_norm, tie_word_embeddings=lm.tie_word_embeddings,
        dropout=0.0, attention_dropout=0.0, layerdrop=0.0, pad_token_id=1, bos_token_id=2, eos_token_id=2)
    config._attn_implementation = ATTN_IMPLEMENTATION
    return config


class OPTDecoderStack(nn.Module):
    """OPT's decoder modules under the names of the release (`model.decoder.*`), without its forward."""

    def __init__(self, config: OPTConfig) -> None:
        super().__init__()
        width, embed_width = config.hidden_size, config.word_embed_proj_dim
        self.embed_tokens = nn.Embedding(config.vocab_size, embed_width, config.pad_token_id)
        self.embed_positions = OPTLearnedPositionalEmbedding(config.max_position_embeddings, width)
        # OPT-350M style checkpoints embed narrower than they compute; OPT-125M (Vary-tiny) does not.
        self.project_in = nn.Linear(embed_width, width, bias=False) if embed_width != width else None
        self.project_out = nn.Linear(width, embed_width, bias=False) if embed_width != width else None
        self.layers = nn.ModuleList(OPTDecoderLayer(config, layer_idx=i) for i in range(config.num_hidden_layers))
        final = config.do_layer_norm_before and not config._remove_final_layer_norm
        self.final_layer_norm = (nn.LayerNorm(width, elementwise_affine=config.layer_norm_elementwise_affine)
                                 if final else None)


class VaryOPTForCausalLM(TiedHead, nn.Module):
    """Vary-tiny: the new vision vocabulary, one projector, an OPT decoder."""

    def __init__(self, config: VaryTinyConfig) -> None:
        super().__init__()
        self.config = config
        lm = config.lm
        self.opt_config = opt_config(lm)
        self.vision_tower_high = VisionVocabulary(config.sam)
        self.mm_projector = nn.Linear(config.sam.feature_dim, config.projector_width)
        self.decoder = OPTDecoderStack(self.opt_config)
        self.lm_head = nn.Linear(lm.word_embed_proj_dim, lm.vocab_size, bias=False)
        for llm_part in (self.decoder.layers, self.lm_head):
            skinny_linears(llm_part)  # batched decoding on CPUs (see SkinnyLinear)
        self.tie_weights()

    @property
    def embed_tokens(self) -> nn.Embedding:
        return self.decoder.embed_tokens

    def encode_images(self, sam_pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, 1024, 1024) pixels -> image features (B, 256, W)."""
        with torch.no_grad():
            sam_features = self.vision_tower_high(sam_pixels)  # (B, 256, 1024)
        return self.mm_projector(sam_features)  # (B, 256, W)

    def embed(self, input_ids: torch.Tensor, image_features: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings (B, T, W) with each row's `<imgpad>` run replaced by its image features."""
        return merge_image_features(self.decoder.embed_tokens(input_ids), input_ids, image_features, self.config)

    def forward(self, inputs_embeds: torch.Tensor, positions: torch.Tensor, attention_bias: torch.Tensor,
                alphas: list[float], cache: KVCache | None = None,
                read_at: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V); with `read_at` (B, T) bool, those of the K marked positions only: (K, V).

        positions (B, T): each row's own 0-based token positions (OPT adds its offset of 2);
        alphas: unused (OPT has no rotary scaling), kept for the shared interface;
        attention_bias (B, 1, T, T_past + T) from `model.attention_bias()`.
        """
        decoder = self.decoder
        if int(positions.max()) >= self.max_positions:
            raise PromptError(f"the sequence reached OPT's {self.max_positions} positions; "
                              f"lower --max-new-tokens")
        hidden = inputs_embeds  # (B, T, W)
        if decoder.project_in is not None:
            hidden = decoder.project_in(hidden)
        hidden = hidden + decoder.embed_positions(None, position_ids=positions)  # (B, T, W)
        for layer in decoder.layers:
            hidden = layer(hidden, attention_mask=attention_bias, vary_cache=cache)
        if cache is not None:
            cache.advance(inputs_embeds.shape[1])
        if read_at is not None:
            hidden = hidden[read_at]  # (K, W)
        if decoder.final_layer_norm is not None:
            hidden = decoder.final_layer_norm(hidden)
        if decoder.project_out is not None:
            hidden = decoder.project_out(hidden)
        return self.lm_head(hidden)  # (B, T, V) or (K, V)

    def new_cache(self, batch: int, capacity: int) -> KVCache:
        lm = self.config.lm
        weight = self.decoder.embed_tokens.weight
        capacity = min(capacity, self.max_positions)  # no position past OPT's table can be computed
        return KVCache(lm.num_layers, batch, lm.num_heads, lm.head_dim, capacity, weight.dtype, weight.device)

    @property
    def max_positions(self) -> int:
        """Prompt plus generated tokens can not exceed OPT's learned position table (2048)."""
        return self.config.lm.max_position_embeddings

    def prompt_alphas(self, prompt_lengths: list[int]) -> list[float]:
        """OPT has no NTK scaling: 1 for every row (the shared interface asks for it)."""
        return [1.0] * len(prompt_lengths)
