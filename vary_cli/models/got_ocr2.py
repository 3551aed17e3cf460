"""GOT-OCR2.0 (arXiv 2409.01704), Vary's successor, as torch modules only.

Every part is transformers' own; what this file writes is how the engine drives them:

- `vision_tower_high`: transformers' `GotOcr2VisionEncoder` (SAM ViT-B and its neck), named as in both
  Vary's and GOT's releases, unchanged (no bit-parity swaps as in Vary's `VisionVocabulary`: GOT's
  reference is transformers' own module, whose features these are exactly).
- `multi_modal_projector`: transformers' `GotOcr2MultiModalProjector`, the original's `net_2`, `net_3`
  (stride-2 convs) and `mm_projector_vary`: a 1024² tile -> 256 features of the LLM width.
- The LLM is Qwen2 (transformers' decoder layers, RMSNorm and rotary embedding) with its own
  attention implementation, `got_qwen2`: transformers' SDPA attention (what `GotOcr2ForConditionalGeneration`
  runs its LLM with by default) after our KV cache's update, so prefill and decoding are the engine's
  (`engine/`), row by row. Its eager attention would round the softmax to float32 even in a float64 run.
- Image features replace the `<imgpad>` run between `<img>` and `</img>` as in transformers
  (`masked_scatter`; the same `merge_image_features` every Vary family uses). A page cut into tiles has
  one run of 256 x tiles pads, the tiles' features in order, the global view last.
- `lm_head` is the token embedding itself when the config ties them (both releases do): `tie_weights()`
  shares the parameter and the loader reads only the embedding.

The interface is the one `engine/` drives for every family: `embed`, `forward(embeds, positions,
attention_bias, alphas, cache, read_at)`, `new_cache`, `prompt_alphas`, plus `encode_images`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.models.got_ocr2.modeling_got_ocr2 import GotOcr2MultiModalProjector, GotOcr2VisionEncoder
from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer, Qwen2RMSNorm, Qwen2RotaryEmbedding

from .got_config import GotConfig
from .vary_qwen import KVCache, TiedHead, decoder_logits, merge_image_features, skinny_linears

ATTN_IMPLEMENTATION = "got_qwen2"


def cached_sdpa_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0,
                          vary_cache: KVCache | None = None, **_: object) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention over the cached keys; query, key, value (B, H, T, D) after rotary.

    The mask is always given (the engine's additive bias), so SDPA never assumes a causal square.
    """
    if vary_cache is not None:
        key, value = vary_cache.update(module.layer_idx, key, value)  # (B, H_kv, T_past + T, D)
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling)


AttentionInterface.register(ATTN_IMPLEMENTATION, cached_sdpa_attention)


class GotOcr2ForCausalLM(TiedHead, nn.Module):
    """GOT-OCR2.0: the SAM encoder, the projector, a Qwen2 decoder (see the module docstring)."""

    def __init__(self, config: GotConfig) -> None:
        super().__init__()
        self.config = config
        self.hf_config = config.to_hf()
        text = self.hf_config.text_config
        text._attn_implementation = ATTN_IMPLEMENTATION
        self.vision_tower_high = GotOcr2VisionEncoder(self.hf_config.vision_config)
        self.multi_modal_projector = GotOcr2MultiModalProjector(self.hf_config)
        self.embed_tokens = nn.Embedding(text.vocab_size, text.hidden_size)
        self.layers = nn.ModuleList(Qwen2DecoderLayer(text, i) for i in range(text.num_hidden_layers))
        self.norm = Qwen2RMSNorm(text.hidden_size, eps=text.rms_norm_eps)
        self.rotary_emb = Qwen2RotaryEmbedding(text)
        self.lm_head = nn.Linear(text.hidden_size, text.vocab_size, bias=False)
        for llm_part in (self.layers, self.lm_head):
            skinny_linears(llm_part)  # batched decoding on CPUs (see SkinnyLinear)
        self.tie_weights()

    def init_buffers(self, device: torch.device) -> None:
        """Compute the rotary inverse frequencies, which no checkpoint carries (non-persistent buffers)."""
        inv_freq, _ = self.rotary_emb.compute_default_rope_parameters(self.rotary_emb.config)
        self.rotary_emb.inv_freq = inv_freq.to(device)
        self.rotary_emb.original_inv_freq = inv_freq.clone().to(device)

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """(tiles, 3, S, S) pixels -> image features (tiles, 256, W), one row per tile."""
        # The original runs its encoder without gradients in training (post-training keeps it frozen);
        # it gets them only when `vary train --train-encoder` made it trainable.
        trains = self.vision_tower_high.pos_embed.requires_grad and torch.is_grad_enabled()
        with torch.set_grad_enabled(trains):
            neck = self.vision_tower_high(pixel_values=pixels).last_hidden_state  # (tiles, C, 64, 64)
        return self.multi_modal_projector(neck)  # (tiles, 256, W)

    def embed(self, input_ids: torch.Tensor, image_features: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings (B, T, W) with each row's `<imgpad>` run replaced by its image features."""
        return merge_image_features(self.embed_tokens(input_ids), input_ids, image_features, self.config)

    def forward(self, inputs_embeds: torch.Tensor, positions: torch.Tensor, attention_bias: torch.Tensor,
                alphas: list[float], cache: KVCache | None = None,
                read_at: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V); with `read_at` (B, T) bool, those of the K marked positions only: (K, V).

        positions (B, T): each row's own token positions; alphas: unused (Qwen2 has no NTK scaling), kept
        for the shared interface; attention_bias (B, 1, T, T_past + T) from `attention_bias()`.
        """
        hidden = inputs_embeds  # (B, T, W)
        cos_sin = self.rotary_emb(hidden, positions)  # (B, T, head_dim) each
        return decoder_logits(self, hidden, attention_bias, cos_sin, cache, read_at)

    def new_cache(self, batch: int, capacity: int) -> KVCache:
        lm = self.config.lm
        weight = self.embed_tokens.weight
        return KVCache(lm.num_layers, batch, lm.num_kv_heads, lm.head_dim, capacity, weight.dtype, weight.device)

    def prompt_alphas(self, prompt_lengths: list[int]) -> list[float]:
        """Qwen2 has no NTK scaling: 1 for every row (the shared interface asks for it)."""
        return [1.0] * len(prompt_lengths)
