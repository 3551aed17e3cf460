"""An independent reference of Vary's forward pass, written from the formulas of shared/spec/vary.md.

It reads the *release* state dict (original key names: `transformer.h.N.attn.c_attn`, `blocks.N.attn.rel_pos_h`,
...) directly, with plain tensor operations and no transformers module except CLIPVisionModel (which the
original code itself uses for its CLIP branch). The tests compare our model, built from transformers'
SAM/GOT-OCR2 and Qwen2 modules plus our own pieces, against it. Slow and simple on purpose: no KV cache,
the whole sequence is recomputed for every generated token.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


# ---- SAM ViT-B image encoder (segment-anything's ImageEncoderViT) + Vary's net_2 / net_3 ----------------

def layer_norm_2d(x, weight, bias, eps):
    mean = x.mean(1, keepdim=True)
    var = (x - mean).pow(2).mean(1, keepdim=True)
    x = (x - mean) / torch.sqrt(var + eps)
    return weight[:, None, None] * x + bias[:, None, None]


def rel_pos_table(q_size, k_size, rel_pos):
    assert rel_pos.shape[0] == 2 * max(q_size, k_size) - 1  # no resize needed at the sizes used
    q = torch.arange(q_size)[:, None] * max(k_size / q_size, 1.0)
    k = torch.arange(k_size)[None, :] * max(q_size / k_size, 1.0)
    return rel_pos[((q - k) + (k_size - 1) * max(q_size / k_size, 1.0)).long()]


def sam_attention(x, s, p, n_heads):
    b, h, w, _ = x.shape
    qkv = (x @ s[p + "qkv.weight"].T + s[p + "qkv.bias"]).reshape(b, h * w, 3, n_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, b * n_heads, h * w, -1).unbind(0)
    head_dim = q.shape[-1]
    attn = (q * head_dim ** -0.5) @ k.transpose(-2, -1)
    rh, rw = rel_pos_table(h, h, s[p + "rel_pos_h"]), rel_pos_table(w, w, s[p + "rel_pos_w"])
    rq = q.reshape(b * n_heads, h, w, head_dim)
    rel_h = torch.einsum("bhwc,hkc->bhwk", rq, rh)
    rel_w = torch.einsum("bhwc,wkc->bhwk", rq, rw)
    attn = (attn.view(-1, h, w, h, w) + rel_h[..., None] + rel_w[:, :, :, None, :]).view(-1, h * w, h * w)
    out = (attn.softmax(-1) @ v).view(b, n_heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
    return out @ s[p + "proj.weight"].T + s[p + "proj.bias"]


def sam_block(x, s, p, n_heads, window, eps):
    shortcut = x
    x = F.layer_norm(x, x.shape[-1:], s[p + "norm1.weight"], s[p + "norm1.bias"], eps)
    if window:
        b, h, w, c = x.shape
        ph, pw = (window - h % window) % window, (window - w % window) % window
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
        hp, wp = h + ph, w + pw
        x = x.view(b, hp // window, window, wp // window, window, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c)
        x = sam_attention(x, s, p + "attn.", n_heads)
        x = x.view(b, hp // window, wp // window, window, window, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
        x = x[:, :h, :w]
    else:
        x = sam_attention(x, s, p + "attn.", n_heads)
    x = shortcut + x
    y = F.layer_norm(x, x.shape[-1:], s[p + "norm2.weight"], s[p + "norm2.bias"], eps)
    y = F.gelu(y @ s[p + "mlp.lin1.weight"].T + s[p + "mlp.lin1.bias"]) @ s[p + "mlp.lin2.weight"].T + s[p + "mlp.lin2.bias"]
    return x + y


def sam_features(pixels, s, spec):
    p = "transformer.vision_tower_high."
    x = F.conv2d(pixels, s[p + "patch_embed.proj.weight"], s[p + "patch_embed.proj.bias"], stride=spec.patch_size)
    x = x.permute(0, 2, 3, 1) + s[p + "pos_embed"]
    for n in range(spec.num_layers):
        window = 0 if n in spec.global_attn_indexes else spec.window_size
        x = sam_block(x, s, f"{p}blocks.{n}.", spec.num_heads, window, spec.layer_norm_eps)
    x = x.permute(0, 3, 1, 2)
    x = layer_norm_2d(F.conv2d(x, s[p + "neck.0.weight"]), s[p + "neck.1.weight"], s[p + "neck.1.bias"], 1e-6)
    x = layer_norm_2d(F.conv2d(x, s[p + "neck.2.weight"], padding=1), s[p + "neck.3.weight"], s[p + "neck.3.bias"], 1e-6)
    x = F.conv2d(F.conv2d(x, s[p + "net_2.weight"], stride=2, padding=1), s[p + "net_3.weight"], stride=2, padding=1)
    return x.flatten(2).permute(0, 2, 1)  # (B, N, 1024)


# ---- Qwen-1 decoder (QWenLMHeadModel at inference) ----------------------------------------------------

def rms_norm(x, weight, eps):
    # Qwen-1's RMSNorm normalizes in float32 (`x.float()`), casts back, then scales.
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * weight


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def qwen1_hidden(embeds, s, lm, alpha):
    """Final hidden states (T, W) of one sequence of embeddings (T, W); `alpha` is the prefill NTK alpha."""
    t, width = embeds.shape
    d = lm.kv_channels
    base = lm.rotary_emb_base * alpha ** (d / (d - 2))
    # Qwen-1 keeps its rotary and log-n tables in float32 whatever the model's dtype; so does this.
    inv_freq = 1.0 / (base ** (torch.arange(0, d, 2).float() / d))
    angles = torch.arange(t).float()[:, None] * inv_freq[None]
    angles = torch.cat((angles, angles), dim=-1)  # (T, d)
    cos, sin = angles.cos().to(embeds.dtype), angles.sin().to(embeds.dtype)
    logn = torch.tensor([math.log(i, lm.seq_length) if i > lm.seq_length else 1.0 for i in range(1, t + 1)],
                        dtype=torch.float32).to(embeds.dtype)[None, :, None]
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    x = embeds
    for n in range(lm.num_layers):
        p = f"transformer.h.{n}."
        h = rms_norm(x, s[p + "ln_1.weight"], lm.layer_norm_epsilon)
        q, k, v = (h @ s[p + "attn.c_attn.weight"].T + s[p + "attn.c_attn.bias"]).split(width, dim=-1)
        q, k, v = (z.view(t, lm.num_heads, d).transpose(0, 1) for z in (q, k, v))  # (H, T, d)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if lm.use_logn_attn:
            q = q * logn
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)
        scores = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        attn = (scores @ v).transpose(0, 1).reshape(t, width) @ s[p + "attn.c_proj.weight"].T
        x = x + attn
        h = rms_norm(x, s[p + "ln_2.weight"], lm.layer_norm_epsilon)
        gated = F.silu(h @ s[p + "mlp.w2.weight"].T)
        x = x + ((h @ s[p + "mlp.w1.weight"].T) * gated) @ s[p + "mlp.c_proj.weight"].T
    return rms_norm(x, s["transformer.ln_f.weight"], lm.layer_norm_epsilon)


def image_features(clip_model, clip_pixels, sam_pixels, s, config):
    clip = clip_model(clip_pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
    sam = sam_features(sam_pixels, s, config.sam)
    p = "transformer."
    return torch.cat([clip @ s[p + "mm_projector.weight"].T + s[p + "mm_projector.bias"],
                      sam @ s[p + "mm_projector_vary.weight"].T + s[p + "mm_projector_vary.bias"]], dim=-1)


def merged_embeddings(ids, features, s, config):
    embeds = s["transformer.wte.weight"][torch.tensor(ids)]
    start = ids.index(config.im_start_token)
    embeds[start + 1:start + 1 + features.shape[0]] = features
    return embeds


def greedy(prompt_ids, features, s, config, max_new_tokens, stop_ids):
    """Greedy tokens for one prompt, recomputing the whole sequence each step with the prefill's alpha."""
    lm = config.lm
    alpha = 1.0
    if lm.use_dynamic_ntk:
        alpha = max(2 ** math.ceil(math.log(len(prompt_ids) / lm.seq_length, 2) + 1) - 1, 1)
    ids = list(prompt_ids)
    out = []
    for _ in range(max_new_tokens):
        embeds = merged_embeddings(ids, features, s, config)
        logits = qwen1_hidden(embeds, s, lm, alpha)[-1] @ s["lm_head.weight"].T
        token = int(logits.argmax())
        if token in stop_ids:
            break
        out.append(token)
        ids.append(token)
    return out
