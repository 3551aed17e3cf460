"""The Vary model family with a Qwen-1 LLM (Vary-toy, Vary-base), as torch modules only.

How Vary differs from its parents, and so what this file writes itself (everything else is reused
from transformers):

- Two vision vocabularies side by side: the frozen CLIP ViT-L/14 (`vision_tower`, transformers'
  `CLIPVisionModel`, features of layer -2 without CLS) and Vary's *new* vocabulary
  (`vision_tower_high`): SAM's ViT-B image encoder with its neck (transformers' `GotOcr2VisionEncoder`,
  the same function as the original `build_sam_vit_b`) plus two stride-2 convs `net_2`, `net_3`:
  1024x1024 px -> 256 tokens of width 1024.
- Two projectors, `mm_projector` (CLIP) and `mm_projector_vary` (SAM), each to half the LLM width,
  concatenated CLIP first -> 256 image features that replace the `<imgpad>` embeddings between
  `<img>` and `</img>`, on the prefill step only.
- The LLM is Qwen-1, run with transformers' Qwen2 decoder layers (the same function once `c_attn` is
  split and `w1`/`w2` are mapped to up/gate) plus what Qwen-1 does and Qwen2 does not, at inference
  only: dynamic-NTK rotary scaling chosen from the prompt length at prefill and kept while decoding,
  and log-n scaling of the query past `seq_length`. Both live in `rotary_cos_sin`, `logn_scale` and
  `qwen1_attention`, the latter registered as a transformers attention implementation.

Batches are left-padded; every row gets its own positions, NTK alpha and log-n factors, so a batch
computes what batch size 1 computes.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from transformers import AttentionInterface, CLIPVisionConfig, CLIPVisionModel, Qwen2Config
from transformers.models.got_ocr2.modeling_got_ocr2 import (GotOcr2LayerNorm, GotOcr2VisionAttention,
                                                            GotOcr2VisionConfig, GotOcr2VisionEncoder)
from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer, Qwen2RMSNorm

from .config import ClipVisionSpec, QwenLMConfig, SamVisionSpec, VaryConfig
from ..errors import PromptError

ATTN_IMPLEMENTATION = "vary_qwen1"


class SkinnyLinear(nn.Linear):
    """nn.Linear that computes a few rows (a decode step of a small batch) as W @ x^T on the CPU.

    MKL multiplies x (M, K) by a transposed weight W^T (K, N) with a path that, for 2 <= M <= 16, costs
    nearly M times its M = 1 matrix-vector product: measured on a 2-core AVX-512 CPU for Vary-toy's
    lm_head (151860 x 2048), 83 ms at M = 1, 252 ms at M = 4, 286 ms at M = 8. The same product as
    W (N, K) @ x^T (K, M) reads the weight once: 111 ms at M = 4, 174 ms at M = 8 (bench/profile_decode.py).
    Without it, batched decoding on a CPU gains nothing over decoding pages one by one. M = 1 (batch-1
    decoding) and long inputs (prefill, training) keep nn.Linear's path, so their results are unchanged.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        rows = input.numel() // self.in_features
        if not 2 <= rows <= 16 or input.device.type != "cpu" or torch.is_grad_enabled():
            return super().forward(input)
        flat = input.reshape(rows, self.in_features)  # (M, K)
        if self.bias is None:
            out = torch.mm(self.weight, flat.t())  # (N, M)
        else:
            out = torch.addmm(self.bias[:, None], self.weight, flat.t())  # (N, M)
        return out.t().reshape(*input.shape[:-1], self.out_features)  # (..., N)


class TiedHead:
    """For a model whose `lm_head` is its token embedding when `config.lm.tie_word_embeddings` says so
    (Vary-tiny's OPT, both GOT-OCR2.0 releases): the loader reads only the embedding, then ties again."""

    @property
    def tied_keys(self) -> tuple[str, ...]:
        """Parameters that are another parameter under a second name (not read from the weights)."""
        return ("lm_head.weight",) if self.config.lm.tie_word_embeddings else ()

    def tie_weights(self) -> None:
        """Make lm_head the token embedding (again, after a load that assigned new tensors)."""
        if self.config.lm.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight


def skinny_linears(module: nn.Module) -> None:
    """Make every nn.Linear under `module` a SkinnyLinear (same parameters and keys)."""
    for child in module.modules():
        if type(child) is nn.Linear:
            child.__class__ = SkinnyLinear


class KVCache:
    """Preallocated key/value buffers, one pair per layer: decoding writes in place, no re-concatenation."""

    def __init__(self, n_layers: int, batch: int, n_heads: int, head_dim: int, capacity: int,
                 dtype: torch.dtype, device: torch.device) -> None:
        shape = (batch, n_heads, capacity, head_dim)
        self.keys = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.values = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.length = 0  # tokens stored, the same in every layer once a forward pass ends
        self.capacity = capacity

    def update(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        start, end = self.length, self.length + key.shape[2]
        if end > self.capacity:
            raise RuntimeError(f"KV cache full: {end} > {self.capacity}")
        self.keys[layer][:, :, start:end] = key
        self.values[layer][:, :, start:end] = value
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, n: int) -> None:
        self.length += n

    def select(self, rows: torch.Tensor) -> None:
        """Keep only the batch rows `rows` (finished pages leave the batch)."""
        self.keys = [k[rows] for k in self.keys]
        self.values = [v[rows] for v in self.values]


def qwen1_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0,
                    vary_cache: KVCache | None = None, vary_logn: torch.Tensor | None = None,
                    **_: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Qwen-1's attention in the original's order of operations (fp32 logits agree to ~1e-6, tokens exactly).

    query, key, value: (B, H, T, D), rotary already applied by Qwen2Attention.
    """
    if vary_cache is not None:
        key, value = vary_cache.update(module.layer_idx, key, value)  # (B, H, T_past + T, D)
    if vary_logn is not None:
        query = query * vary_logn  # (B, 1, T, 1): log-n scaling, after rotary, query only
    weights = torch.matmul(query, key.transpose(-1, -2))  # (B, H, Tq, Tk)
    # Divide by sqrt(d) as the original does (not multiply by `scaling`): identical rounding.
    weights = weights / torch.full([], value.size(-1) ** 0.5, dtype=weights.dtype, device=weights.device)
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = nn.functional.softmax(weights, dim=-1).type(value.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value)  # (B, H, Tq, D)
    return output.transpose(1, 2).contiguous(), weights  # (B, Tq, H, D)


AttentionInterface.register(ATTN_IMPLEMENTATION, qwen1_attention)


def ntk_alpha(prompt_length: int, seq_length: int) -> float:
    """Qwen-1's dynamic-NTK alpha for a prefill of `prompt_length` tokens (1 when it fits)."""
    context_value = math.log(prompt_length / seq_length, 2) + 1
    return max(2 ** math.ceil(context_value) - 1, 1)


def rotary_cos_sin(positions: torch.Tensor, alphas: list[float], lm: QwenLMConfig,
                   dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (B, T, head_dim) for per-row positions (B, T) and per-row NTK alphas (len B)."""
    dim = lm.head_dim
    exponents = torch.arange(0, dim, 2, device=positions.device).float() / dim
    rows = []
    for alpha in alphas:
        # The original's expression, in Python floats then float32, for identical inverse frequencies.
        base = lm.rotary_emb_base * alpha ** (dim / (dim - 2))
        rows.append(1.0 / (base ** exponents))
    inv_freq = torch.stack(rows)  # (B, dim/2)
    freqs = positions.float()[:, :, None] * inv_freq[:, None, :]  # (B, T, dim/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (B, T, dim): half-rotation layout
    return emb.cos().to(dtype), emb.sin().to(dtype)


def logn_scale(positions: torch.Tensor, seq_length: int, dtype: torch.dtype) -> torch.Tensor:
    """Log-n query factor (B, 1, T, 1): log(p + 1) / log(seq_length) where p + 1 > seq_length, else 1."""
    count = positions.double() + 1  # (B, T)
    scale = torch.where(count > seq_length, torch.log(count) / math.log(seq_length), torch.ones_like(count))
    # The original builds this table in Python doubles and stores it as float32.
    return scale.float().to(dtype)[:, None, :, None]


def attention_bias(pad: torch.Tensor, query_start: int, query_len: int, key_len: int,
                   dtype: torch.dtype) -> torch.Tensor:
    """Additive mask (B, 1, Tq, Tk): 0 where a query may attend, finfo.min elsewhere.

    `pad` (B,) counts left-padding tokens per row; queries sit at absolute indices
    query_start .. query_start + query_len - 1 of the padded sequence.
    """
    device = pad.device
    q_index = torch.arange(query_start, query_start + query_len, device=device)[:, None]  # (Tq, 1)
    k_index = torch.arange(key_len, device=device)[None, :]  # (1, Tk)
    allowed = (k_index <= q_index)[None] & (k_index[None] >= pad[:, None, None])  # (B, Tq, Tk)
    bias = torch.zeros(allowed.shape, dtype=dtype, device=device)
    bias.masked_fill_(~allowed, torch.finfo(dtype).min)
    return bias[:, None]


class SamAttention(GotOcr2VisionAttention):
    """transformers' SAM attention in segment-anything's order of operations, for fp32 bit-parity.

    GOT-OCR2's version sums the two relative-position terms before adding them and takes the softmax in
    float32; the original adds them one after the other and takes the softmax in the input's dtype.
    Measured against the original on seeded weights: 1.3e-5 apart before (with LayerNorm2d), 0 after.
    """

    def forward(self, hidden_states: torch.Tensor, output_attentions=None) -> tuple[torch.Tensor, torch.Tensor]:
        batch, height, width, _ = hidden_states.shape
        heads, tokens = self.num_attention_heads, height * width
        qkv = self.qkv(hidden_states).reshape(batch, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
        query, key, value = qkv.reshape(3, batch * heads, tokens, -1).unbind(0)  # each (B*H, N, D)
        weights = (query * self.scale) @ key.transpose(-2, -1)  # (B*H, N, N)
        grid_query = query.reshape(batch * heads, height, width, -1)  # (B*H, h, w, D)
        rel_h = torch.einsum("bhwc,hkc->bhwk", grid_query, self.get_rel_pos(height, height, self.rel_pos_h))
        rel_w = torch.einsum("bhwc,wkc->bhwk", grid_query, self.get_rel_pos(width, width, self.rel_pos_w))
        weights = (weights.view(-1, height, width, height, width) + rel_h[:, :, :, :, None]
                   + rel_w[:, :, :, None, :]).view(-1, tokens, tokens)
        weights = weights.softmax(dim=-1)
        out = (weights @ value).view(batch, heads, height, width, -1).permute(0, 2, 3, 1, 4)
        return self.proj(out.reshape(batch, height, width, -1)), weights  # (B, h, w, C)


class LayerNorm2d(GotOcr2LayerNorm):
    """segment-anything's LayerNorm2d formula over channels (B, C, H, W), for fp32 bit-parity with the
    original neck (transformers permutes and calls nn.LayerNorm, which rounds differently)."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        mean = features.mean(1, keepdim=True)
        variance = (features - mean).pow(2).mean(1, keepdim=True)
        features = (features - mean) / torch.sqrt(variance + self.eps)
        return self.weight[:, None, None] * features + self.bias[:, None, None]


class VisionVocabulary(GotOcr2VisionEncoder):
    """Vary's new vision vocabulary: SAM ViT-B + neck (reused) and the two stride-2 convs (new)."""

    def __init__(self, spec: SamVisionSpec) -> None:
        super().__init__(GotOcr2VisionConfig(
            hidden_size=spec.hidden_size, output_channels=spec.output_channels,
            num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
            image_size=spec.image_size, patch_size=spec.patch_size, hidden_act="gelu",
            layer_norm_eps=spec.layer_norm_eps, qkv_bias=True, use_abs_pos=True, use_rel_pos=True,
            window_size=spec.window_size, global_attn_indexes=list(spec.global_attn_indexes),
            mlp_dim=spec.mlp_dim))
        # Same parameters, the original's arithmetic (see SamAttention and LayerNorm2d).
        for layer in self.layers:
            layer.attn.__class__ = SamAttention
        self.neck.layer_norm1.__class__ = LayerNorm2d
        self.neck.layer_norm2.__class__ = LayerNorm2d
        mid, out = spec.net_channels
        self.net_2 = nn.Conv2d(spec.output_channels, mid, kernel_size=3, stride=2, padding=1, bias=False)
        self.net_3 = nn.Conv2d(mid, out, kernel_size=3, stride=2, padding=1, bias=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        neck = super().forward(pixel_values=pixel_values).last_hidden_state  # (B, 256, 64, 64)
        grid = self.net_3(self.net_2(neck))  # (B, 1024, 16, 16)
        return grid.flatten(2).permute(0, 2, 1)  # (B, 256, 1024), row-major over the grid


def clip_vision_model(spec: ClipVisionSpec) -> CLIPVisionModel:
    return CLIPVisionModel(CLIPVisionConfig(
        hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
        image_size=spec.image_size, patch_size=spec.patch_size, hidden_act=spec.hidden_act,
        # Eager attention is the original's (transformers 4.32) arithmetic: bit-equal features; SDPA is 1.4e-6 off.
        layer_norm_eps=spec.layer_norm_eps, attn_implementation="eager"))


def qwen2_config(lm: QwenLMConfig) -> Qwen2Config:
    config = Qwen2Config(
        vocab_size=lm.vocab_size, hidden_size=lm.hidden_size, intermediate_size=lm.mlp_width,
        num_hidden_layers=lm.num_layers, num_attention_heads=lm.num_heads,
        num_key_value_heads=lm.num_heads, head_dim=lm.head_dim, rms_norm_eps=lm.layer_norm_epsilon,
        hidden_act="silu", rope_theta=lm.rotary_emb_base, max_position_embeddings=lm.seq_length,
        attention_dropout=0.0, tie_word_embeddings=False, use_sliding_window=False)
    config._attn_implementation = ATTN_IMPLEMENTATION
    return config


class VaryQwenForCausalLM(nn.Module):
    """Vary-toy / Vary-base: two vision vocabularies, two projectors, a Qwen-1 decoder."""

    def __init__(self, config: VaryConfig) -> None:
        super().__init__()
        self.config = config
        lm = config.lm
        self.vision_tower = clip_vision_model(config.clip)
        self.vision_tower_high = VisionVocabulary(config.sam)
        self.mm_projector = nn.Linear(config.clip.hidden_size, config.projector_width)
        self.mm_projector_vary = nn.Linear(config.sam.feature_dim, config.projector_width)
        self.embed_tokens = nn.Embedding(lm.vocab_size, lm.hidden_size)
        self.qwen2_config = qwen2_config(lm)
        self.layers = nn.ModuleList(Qwen2DecoderLayer(self.qwen2_config, i) for i in range(lm.num_layers))
        self.norm = Qwen2RMSNorm(lm.hidden_size, eps=lm.layer_norm_epsilon)
        self.lm_head = nn.Linear(lm.hidden_size, lm.vocab_size, bias=False)
        for llm_part in (self.layers, self.lm_head):
            skinny_linears(llm_part)

    def encode_images(self, clip_pixels: torch.Tensor, sam_pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) and (B, 3, 1024, 1024) pixels -> image features (B, 256, W)."""
        # The original runs both towers without gradients, even in training: they never train.
        with torch.no_grad():
            clip_out = self.vision_tower(clip_pixels, output_hidden_states=True)
            clip_features = clip_out.hidden_states[self.config.clip.select_layer][:, 1:]  # (B, 256, 1024)
            sam_features = self.vision_tower_high(sam_pixels)  # (B, 256, 1024)
        return torch.cat([self.mm_projector(clip_features),  # (B, 256, W/2)
                          self.mm_projector_vary(sam_features)], dim=-1)  # (B, 256, W)

    def embed(self, input_ids: torch.Tensor, image_features: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings (B, T, W) with each row's `<imgpad>` run replaced by its image features."""
        return merge_image_features(self.embed_tokens(input_ids), input_ids, image_features, self.config)

    def forward(self, inputs_embeds: torch.Tensor, positions: torch.Tensor, attention_bias: torch.Tensor,
                alphas: list[float], cache: KVCache | None = None,
                read_at: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V); with `read_at` (B, T) bool, those of the K marked positions only: (K, V).

        positions (B, T): each row's own token positions; alphas: each row's NTK alpha (1 in training);
        attention_bias (B, 1, T, T_past + T) from `attention_bias()`.
        """
        lm = self.config.lm
        hidden = inputs_embeds  # (B, T, W)
        inference = not self.training
        cos_sin = rotary_cos_sin(positions, alphas if inference else [1.0] * len(alphas), lm, hidden.dtype)
        logn = logn_scale(positions, lm.seq_length, hidden.dtype) if inference and lm.use_logn_attn else None
        return decoder_logits(self, hidden, attention_bias, cos_sin, cache, read_at, vary_logn=logn)

    def new_cache(self, batch: int, capacity: int) -> KVCache:
        lm = self.config.lm
        return KVCache(lm.num_layers, batch, lm.num_heads, lm.head_dim, capacity,
                       self.embed_tokens.weight.dtype, self.embed_tokens.weight.device)

    def prompt_alphas(self, prompt_lengths: list[int]) -> list[float]:
        """Per-row NTK alpha chosen at prefill from each row's own prompt length."""
        lm = self.config.lm
        if not lm.use_dynamic_ntk:
            return [1.0] * len(prompt_lengths)
        return [float(ntk_alpha(n, lm.seq_length)) for n in prompt_lengths]


def decoder_logits(model: nn.Module, hidden: torch.Tensor, attention_bias: torch.Tensor,
                   cos_sin: tuple[torch.Tensor, torch.Tensor], cache: KVCache | None,
                   read_at: torch.Tensor | None, **layer_kwargs) -> torch.Tensor:
    """The Qwen2-layer stack both families share: `model.layers` over `hidden` (B, T, W), the cache moved
    past the T fed positions, then `model.norm` and `model.lm_head`: logits (B, T, V), or (K, V) of the
    K positions `read_at` (B, T) marks."""
    fed = hidden.shape[1]
    for layer in model.layers:
        hidden = layer(hidden, attention_mask=attention_bias, position_embeddings=cos_sin, vary_cache=cache,
                       **layer_kwargs)
    if cache is not None:
        cache.advance(fed)
    if read_at is not None:
        hidden = hidden[read_at]  # (K, W): the lm_head is most of a small model's step; skip unread positions
    return model.lm_head(model.norm(hidden))


def merge_image_features(embeds: torch.Tensor, input_ids: torch.Tensor, image_features: torch.Tensor | None,
                         config) -> torch.Tensor:
    """Token embeddings (B, T, W) with each row's `<imgpad>` run replaced by its image features (B, N, W).

    `<img>` and `</img>` keep their own embeddings, as in the original; every Vary family merges this way.
    """
    if image_features is None:
        return embeds
    check_image_tokens(input_ids, config, image_features.shape[1])
    is_patch = (input_ids == config.im_patch_token)[..., None]  # (B, T, 1)
    return embeds.masked_scatter(is_patch, image_features.to(embeds.dtype))


def check_image_tokens(input_ids: torch.Tensor, config: VaryConfig, n_features: int) -> None:
    """Raise PromptError unless every row holds exactly `<img>`, n_features x `<imgpad>`, `</img>`."""
    for row in input_ids.tolist():
        starts = [i for i, t in enumerate(row) if t == config.im_start_token]
        n_end = row.count(config.im_end_token)
        n_pad = row.count(config.im_patch_token)
        if len(starts) != 1 or n_end != 1:
            raise PromptError(f"each prompt needs one <img> and one </img>, got {len(starts)} and {n_end}")
        start = starts[0]
        end = start + n_features + 1
        if n_pad != n_features or end >= len(row) or row[end] != config.im_end_token \
                or any(t != config.im_patch_token for t in row[start + 1:end]):
            raise PromptError(f"the prompt's image tokens ({n_pad} <imgpad>) do not match the "
                              f"{n_features} image features between <img> and </img>")
