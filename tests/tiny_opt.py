"""Tiny Vary-tiny (SAM + OPT) checkpoints in the exact layout of the release (vary.md §11).

The tokenizer files are OPT's kind (`vocab.json`, `merges.txt`, `added_tokens.json`,
`special_tokens_map.json`, `tokenizer_config.json`) for a small byte-level BPE: OPT's four specials at
ids 0-3 (`<s>`, `<pad>`, `</s>`, `<unk>`), the 256 byte tokens, merges that spell the words of the
prompts, then `<imgpad>`, `<img>`, `</img>` added after the vocabulary in the original's order. The
weights carry the original names (`model.decoder.layers.N.fc1`, `model.vision_tower_2.blocks.N...`),
written by `to_release_state_dict` below, an inverse of the loader's key table written independently.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

try:
    from transformers.convert_slow_tokenizer import bytes_to_unicode
except ImportError:  # transformers 4.x keeps it with the slow GPT-2 tokenizer
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

from vary_cli.models.config import OPTLMConfig, SamVisionSpec, VaryTinyConfig

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
EMBED_STD, LAYER_STD = 0.05, 0.2
IMAGE_TOKENS = ["<imgpad>", "<img>", "</img>"]  # the order initialize_vision_tokenizer adds them in
WORDS = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
         "helpful, detailed, and polite answers to the user's questions. USER: Provide the OCR results of "
         "this image. ASSISTANT: Read every word, please, and the numbers too. the page line 123 text")


def tiny_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """vocab and merges: specials, 256 bytes, then left-to-right merges spelling each word of WORDS."""
    byte_chars = bytes_to_unicode()
    vocab = {t: i for i, t in enumerate(SPECIALS)}
    for b in range(256):
        vocab[byte_chars[b]] = len(vocab)
    merges: list[tuple[str, str]] = []
    for n, word in enumerate(WORDS.split(" ")):
        piece = ("" if n == 0 else byte_chars[ord(" ")]) + "".join(byte_chars[b] for b in word.encode())
        for end in range(2, len(piece) + 1):
            left, right = piece[:end - 1], piece[end - 1]
            if piece[:end] not in vocab:
                merges.append((left, right))
                vocab[piece[:end]] = len(vocab)
    return vocab, merges


def write_tokenizer(directory: Path) -> dict[str, int]:
    """Write OPT-style tokenizer files; returns the added tokens' ids."""
    vocab, merges = tiny_bpe()
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
                                          encoding="utf-8")
    added = {t: len(vocab) + i for i, t in enumerate(IMAGE_TOKENS)}
    (directory / "added_tokens.json").write_text(json.dumps(added))
    special = {"bos_token": "</s>", "eos_token": "</s>", "unk_token": "</s>", "pad_token": "<pad>"}
    special = {k: {"content": v, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}
               for k, v in special.items()}
    (directory / "special_tokens_map.json").write_text(json.dumps(special))
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"add_bos_token": True, "add_prefix_space": False, "errors": "replace", "model_max_length": 2048,
         "tokenizer_class": "GPT2Tokenizer", "pad_token": "<pad>", "bos_token": "</s>", "eos_token": "</s>"}))
    return added


def tiny_opt_config(tie: bool = True, max_positions: int = 512) -> VaryTinyConfig:
    """A Vary-tiny-shaped config at toy width: 16 image tokens, OPT 64 wide, 2 layers."""
    vocab, _ = tiny_bpe()
    n = len(vocab)
    lm = OPTLMConfig(vocab_size=n + 3, hidden_size=64, num_layers=2, num_heads=4, ffn_dim=128,
                     max_position_embeddings=max_positions, word_embed_proj_dim=64, tie_word_embeddings=tie)
    sam = SamVisionSpec(image_size=64, patch_size=4, hidden_size=32, num_layers=2, num_heads=2, mlp_dim=64,
                        window_size=6, global_attn_indexes=(1,), output_channels=16, net_channels=(24, 32))
    return VaryTinyConfig(lm=lm, sam=sam, image_token_len=16, im_patch_token=n, im_start_token=n + 1,
                          im_end_token=n + 2)


def random_opt_model(config: VaryTinyConfig, seed: int = 0):
    """Our Vary-tiny model with every tensor drawn from a seeded normal (norm weights around 1)."""
    from vary_cli.models.vary_opt import VaryOPTForCausalLM

    torch.manual_seed(seed)
    model = VaryOPTForCausalLM(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                param.copy_(1 + 0.1 * torch.randn_like(param))
            elif name.endswith(("embed_tokens.weight", "embed_positions.weight")) or name == "lm_head.weight":
                # Small next to what the layers add: with a tied head, large embeddings make every step
                # predict the token it was given, and the greedy tests would see one token repeated.
                param.normal_(0, EMBED_STD)
            else:
                param.normal_(0, LAYER_STD)
    return model.eval()


def to_release_state_dict(ours: dict[str, torch.Tensor], sam_prefix: str = "model.vision_tower_2.",
                          with_lm_head: bool = True) -> dict[str, torch.Tensor]:
    """Our state dict under the release's names (the inverse of checkpoint.ORIGINAL_TO_OURS for OPT)."""
    sam_names = [("patch_embed.projection", "patch_embed.proj"), ("neck.conv1", "neck.0"),
                 ("neck.layer_norm1", "neck.1"), ("neck.conv2", "neck.2"), ("neck.layer_norm2", "neck.3"),
                 ("layers.", "blocks."), ("layer_norm1", "norm1"), ("layer_norm2", "norm2")]
    out: dict[str, torch.Tensor] = {}
    for key, tensor in ours.items():
        if key.startswith("vision_tower_high."):
            rest = key[len("vision_tower_high."):]
            for new, old in sam_names:
                rest = rest.replace(new, old)
            out[sam_prefix + rest] = tensor
        elif key.startswith(("mm_projector.", "decoder.")):
            out["model." + key] = tensor
        elif key == "lm_head.weight" and with_lm_head:
            out[key] = tensor  # tied: the same values as the embedding, as torch.save of the original writes
    return out


def write_release(directory: Path, config: VaryTinyConfig, state: dict[str, torch.Tensor]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    release = config.to_release()
    release.update({"_name_or_path": "/data/opt-125m", "vision_tower": "/cache/vit-large-patch14/",
                    "freeze_vision_tower": False, "dropout": 0.1, "attention_dropout": 0.0, "init_std": 0.02,
                    "layerdrop": 0.0, "prefix": "</s>", "torch_dtype": "bfloat16",
                    "transformers_version": "4.32.1", "use_cache": True})
    (directory / "config.json").write_text(json.dumps(release, indent=2))
    (directory / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 2, "eos_token_id": 2, "pad_token_id": 1, "transformers_version": "4.32.1"}))
    write_tokenizer(directory)
    torch.save({k: v.clone() for k, v in state.items()}, directory / "pytorch_model.bin")
    return directory


def make_tiny_checkpoint(directory: Path, config: VaryTinyConfig | None = None, seed: int = 0,
                         sam_prefix: str = "model.vision_tower_2.", with_lm_head: bool = True) -> Path:
    config = config or tiny_opt_config()
    model = random_opt_model(config, seed)
    state = to_release_state_dict(model.state_dict(), sam_prefix, with_lm_head)
    return write_release(directory, config, state)
