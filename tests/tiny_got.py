"""Tiny GOT-OCR2.0 checkpoints in the exact layout of both releases, and the transformers reference.

One seeded network is written twice:
- the hf release (stepfun-ai/GOT-OCR-2.0-hf): `config.json` as transformers 4.49 wrote it
  (`model_type: got_ocr2`, nested `text_config`/`vision_config`, `rope_theta`), `model.safetensors`
  under the names `save_pretrained` gives (`vision_tower.*`, `multi_modal_projector.*`,
  `language_model.model.*`, no `lm_head`: tied), `tokenizer.json` made by transformers' own
  `TikTokenConverter` from the tiny `qwen.tiktoken` as convert_got_ocr2_weights_to_hf.py makes it,
  `tokenizer_config.json`, `special_tokens_map.json`, `preprocessor_config.json`, `generation_config.json`;
- the original release (stepfun-ai/GOT-OCR2_0, remote code): flat Qwen2 `config.json` with
  `model_type: GOT` and GOT's image fields, and no vision section, `model.safetensors` under GOT's names
  (`model.vision_tower_high.blocks.N...`, `model.vision_tower_high.net_2`, `model.mm_projector_vary`,
  `model.layers.N...`, `lm_head.weight`, a copy of the embedding), `qwen.tiktoken`, `tokenizer_config.json`.
  The names come from inverting transformers' ORIGINAL_TO_CONVERTED_KEY_MAPPING (written out below,
  independently of vary's key table), so loading them checks the table.

The reference is transformers' `GotOcr2ForConditionalGeneration` + `GotOcr2Processor` loaded from the hf
directory. The vocabulary: 256 byte ranks, then merges that spell the prompts' words and some numbers
(so the digit pattern matters), then Qwen's 217 special tokens.
"""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path

import torch

N_SPECIAL = 3 + 205 + 9
WORDS = ("system You should follow the instructions carefully and explain your answers in detail. user "
         "assistant OCR with format upon the patch reference: OCR: [red] [green] [blue] the page line text "
         "Vary GOT 100 1000 250 12, 34, 999]")
EMBED_STD, LAYER_STD = 0.05, 0.2


def tiny_ranks() -> dict[bytes, int]:
    """256 byte ranks, then each word's (and ' word''s) prefixes left to right, then digit runs."""
    ranks = {bytes([b]): b for b in range(256)}
    pieces = [w.encode() for w in WORDS.split(" ")] + [b" " + w.encode() for w in WORDS.split(" ")]
    pieces += [b"10", b"00", b"100", b"000", b"12", b"34", b"99", b"999", b"25", b"250", b"\n\n"]
    for piece in pieces:
        for end in range(2, len(piece) + 1):
            ranks.setdefault(piece[:end], len(ranks))
    return ranks


def special_ids() -> dict[str, int]:
    from vary_cli.text.qwen_tokenizer import SPECIAL_TOKENS

    n = len(tiny_ranks())
    return {token: n + i for i, token in enumerate(SPECIAL_TOKENS)}


def vocab_size() -> int:
    return len(tiny_ranks()) + N_SPECIAL  # GOT's vocabulary is not padded (151643 + 217 = 151860)


def hf_config(window: int = 6, image_size: int = 64):
    """A GotOcr2Config at toy width: 16 image tokens per tile (64 px, patch 4, two stride-2 convs)."""
    from transformers import GotOcr2Config

    ids = special_ids()
    text = dict(model_type="qwen2", vocab_size=vocab_size(), hidden_size=64, intermediate_size=128,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
                rope_theta=1000000.0, max_position_embeddings=4096, tie_word_embeddings=True,
                use_sliding_window=False)
    vision = dict(hidden_size=32, output_channels=16, num_hidden_layers=3, num_attention_heads=2,
                  image_size=image_size, patch_size=4, window_size=window, global_attn_indexes=[1], mlp_dim=64)
    return GotOcr2Config(text_config=text, vision_config=vision, image_token_index=ids["<imgpad>"])


def random_reference(seed: int = 0, **config_kwargs):
    """transformers' GotOcr2ForConditionalGeneration with seeded weights (norm weights around 1)."""
    from transformers import GotOcr2ForConditionalGeneration

    torch.manual_seed(seed)
    model = GotOcr2ForConditionalGeneration(hf_config(**config_kwargs))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                param.copy_(1 + 0.1 * torch.randn_like(param))
            elif name.endswith("embed_tokens.weight"):
                # Small next to what the layers add: with the tied head, large embeddings make every step
                # predict the token it was given, and greedy decoding would repeat one token.
                param.normal_(0, EMBED_STD)
            else:
                param.normal_(0, LAYER_STD if "vision_tower" not in name else 0.08)
    return model.eval()


def write_tiktoken(path: Path) -> Path:
    path.write_text("".join(f"{base64.b64encode(t).decode()} {r}\n" for t, r in tiny_ranks().items()))
    return path


def hf_tokenizer(tiktoken_path: Path):
    """The tokenizer convert_got_ocr2_weights_to_hf.py's write_tokenizer makes, from a qwen.tiktoken."""
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    from vary_cli.text.qwen_tokenizer import SPECIAL_TOKENS

    converter = TikTokenConverter(vocab_file=str(tiktoken_path), extra_special_tokens=list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(tokenizer_object=converter.converted(), model_max_length=8000,
                                   model_input_names=["input_ids", "attention_mask"],
                                   pad_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", clean_up_tokenization_spaces=True)


def _v4_text_config(text: dict) -> dict:
    """The text_config of a transformers 4.49 config.json: rope_theta at the top, no rope_parameters."""
    text = {k: v for k, v in text.items() if k not in ("rope_parameters", "layer_types", "dtype")}
    text["rope_theta"] = 1000000.0
    return text


def write_hf_release(directory: Path, model) -> Path:
    """The hf release layout (see the module docstring)."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)  # transformers 5 writes the legacy names the hub file has
    config = json.loads((directory / "config.json").read_text())
    config = {"architectures": ["GotOcr2ForConditionalGeneration"], "image_seq_length": 576,
              "image_token_index": config["image_token_index"], "model_type": "got_ocr2",
              "text_config": _v4_text_config(config["text_config"]), "torch_dtype": "bfloat16",
              "transformers_version": "4.49.0.dev0", "vision_config": config["vision_config"]}
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    (directory / "generation_config.json").write_text(json.dumps({"transformers_version": "4.49.0.dev0"}))
    tiktoken = write_tiktoken(directory / "qwen.tiktoken")
    hf_tokenizer(tiktoken).save_pretrained(directory)
    tiktoken.unlink()
    for extra in ("chat_template.jinja", "processor_config.json"):
        (directory / extra).unlink(missing_ok=True)
    tokenizer_config = json.loads((directory / "tokenizer_config.json").read_text())
    tokenizer_config.update({"tokenizer_class": "PreTrainedTokenizerFast", "processor_class": "GotOcr2Processor"})
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    (directory / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}))
    size = model.config.vision_config.image_size
    (directory / "preprocessor_config.json").write_text(json.dumps({
        "crop_to_patches": False, "do_convert_rgb": True, "do_normalize": True, "do_rescale": True,
        "do_resize": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_processor_type": "GotOcr2ImageProcessor", "image_std": [0.26862954, 0.26130258, 0.27577711],
        "max_patches": 12, "min_patches": 1, "processor_class": "GotOcr2Processor", "resample": 3,
        "rescale_factor": 1 / 255, "size": {"height": size, "width": size}}, indent=2))
    return directory


# transformers' ORIGINAL_TO_CONVERTED_KEY_MAPPING (convert_got_ocr2_weights_to_hf.py), read backwards:
# converted (hf) name -> the original release's name.
HF_TO_ORIGINAL = [
    (r"^vision_tower\.pos_embed$", "model.vision_tower_high.pos_embed"),
    (r"^vision_tower\.patch_embed\.projection\.", "model.vision_tower_high.patch_embed.proj."),
    (r"^vision_tower\.layers\.(\d+)\.layer_norm", r"model.vision_tower_high.blocks.\1.norm"),
    (r"^vision_tower\.layers\.(\d+)\.(attn|mlp)\.", r"model.vision_tower_high.blocks.\1.\2."),
    (r"^vision_tower\.neck\.conv1\.", "model.vision_tower_high.neck.0."),
    (r"^vision_tower\.neck\.layer_norm1\.", "model.vision_tower_high.neck.1."),
    (r"^vision_tower\.neck\.conv2\.", "model.vision_tower_high.neck.2."),
    (r"^vision_tower\.neck\.layer_norm2\.", "model.vision_tower_high.neck.3."),
    (r"^multi_modal_projector\.conv_upsampler1\.", "model.vision_tower_high.net_2."),
    (r"^multi_modal_projector\.conv_upsampler2\.", "model.vision_tower_high.net_3."),
    (r"^multi_modal_projector\.multimodal_projector\.", "model.mm_projector_vary."),
    (r"^language_model\.model\.", "model."),
]


def original_state_dict(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, tensor in hf_state.items():
        name = key
        for pattern, original in HF_TO_ORIGINAL:
            name, n = re.subn(pattern, original, name)
            if n:
                break
        else:
            raise KeyError(key)
        out[name] = tensor.clone()
    out["lm_head.weight"] = out["model.embed_tokens.weight"].clone()  # the release stores the tied head
    return out


def write_original_release(directory: Path, hf_directory: Path) -> Path:
    """The original release layout of the same network as `hf_directory` (see the module docstring)."""
    from safetensors.torch import load_file, save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = original_state_dict(load_file(str(hf_directory / "model.safetensors")))
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    hf = json.loads((hf_directory / "config.json").read_text())
    text, vision, ids = hf["text_config"], hf["vision_config"], special_ids()
    side = math.ceil(math.ceil(vision["image_size"] // vision["patch_size"] / 2) / 2)  # two stride-2 convs
    config = {
        "_name_or_path": "/data/GOT_weights/", "architectures": ["GOTQwenForCausalLM"],
        "auto_map": {"AutoConfig": "modeling_GOT.GOTConfig", "AutoModel": "modeling_GOT.GOTQwenForCausalLM"},
        "attention_dropout": 0.0, "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|endoftext|>"],
        "freeze_vision_tower": False, "hidden_act": "silu", "hidden_size": text["hidden_size"],
        "im_end_token": ids["</img>"], "im_patch_token": ids["<imgpad>"], "im_start_token": ids["<img>"],
        "image_token_len": side * side, "initializer_range": 0.02, "intermediate_size": text["intermediate_size"],
        "max_position_embeddings": text["max_position_embeddings"], "max_window_layers": 21,
        "model_type": "GOT", "num_attention_heads": text["num_attention_heads"],
        "num_hidden_layers": text["num_hidden_layers"], "num_key_value_heads": text["num_key_value_heads"],
        "rms_norm_eps": text["rms_norm_eps"], "rope_theta": 1000000.0, "sliding_window": 4096,
        "tie_word_embeddings": True, "torch_dtype": "bfloat16", "transformers_version": "4.37.2",
        "use_cache": True, "use_im_start_end": True, "use_sliding_window": False,
        "vocab_size": text["vocab_size"]}
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    (directory / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|endoftext|>"], "transformers_version": "4.37.2"}))
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"auto_map": {"AutoTokenizer": ["tokenization_qwen.QWenTokenizer", None]}, "model_max_length": 8000,
         "tokenizer_class": "QWenTokenizer"}))
    write_tiktoken(directory / "qwen.tiktoken")
    return directory


def page(width: int = 120, height: int = 160, seed: int = 0):
    """A small synthetic page: text-like strokes in a few colours on white."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    colours = ["black", "red", "green", "blue"]
    for row in range(max(1, height // 20)):
        draw.text((6 + 3 * ((row + seed) % 4), 4 + row * 18), f"line {row + seed}: GOT", fill=colours[(row + seed) % 4])
    return image


def reference_tokens(model, processor, image, formatted: bool, max_new_tokens: int, crops=None, box=None,
                     color=None) -> list[int]:
    """transformers' greedy continuation (`GotOcr2Processor` then `generate`), cut at its first stop token
    (which vary does not return). `crops`: None, or the most tiles (`crop_to_patches` with `max_patches`)."""
    ids = special_ids()
    kwargs = {"format": formatted, "num_image_tokens": 16, "color": color}
    if crops is not None:
        kwargs.update(crop_to_patches=True, max_patches=crops)
    if box is not None:
        kwargs["box"] = list(box)
    inputs = processor(image, return_tensors="pt", **kwargs)
    stops = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    with torch.no_grad():
        out = model.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                             pixel_values=inputs["pixel_values"].to(model.dtype), do_sample=False, num_beams=1,
                             max_new_tokens=max_new_tokens, eos_token_id=stops, pad_token_id=stops[1])
    new = out[0, inputs["input_ids"].shape[1]:].tolist()
    return new[:next((i for i, t in enumerate(new) if t in stops), len(new))]
