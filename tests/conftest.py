"""Shared fixtures: VARY_HOME isolation and tiny checkpoints in the exact layout of the Vary releases.

A tiny checkpoint keeps Vary's geometry (the vision towers yield as many tokens as the prompt has
`<imgpad>`s) at toy widths. Its tensors carry the *original* release names (`transformer.h.N.attn.c_attn`,
`transformer.vision_tower_high.blocks.N...`), written by `to_release_state_dict` below: an inverse of the
loader's key table written independently of it, so loading it back checks the table.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from tiny_vocab import TINY_VOCAB_SIZE, tiny_id, write_tiny_tiktoken  # noqa: E402

from vary_cli.models.config import ClipVisionSpec, QwenLMConfig, SamVisionSpec, VaryConfig  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own VARY_HOME and an offline hub cache."""
    home = tmp_path_factory.mktemp("vary_home")
    monkeypatch.setenv("VARY_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("VARY_DEVICE", raising=False)
    return home


def tiny_config(seq_length: int = 8192, hidden: int = 64, prompt_style: str | None = None) -> VaryConfig:
    """A Vary-toy-shaped config at toy width: 16 image tokens from both towers."""
    lm = QwenLMConfig(vocab_size=TINY_VOCAB_SIZE, hidden_size=hidden, num_layers=2, num_heads=2,
                      kv_channels=hidden // 2, intermediate_size=4 * hidden, seq_length=seq_length)
    clip = ClipVisionSpec(hidden_size=32, num_layers=3, num_heads=2, intermediate_size=64, patch_size=7,
                          image_size=28)
    sam = SamVisionSpec(image_size=64, patch_size=4, hidden_size=32, num_layers=2, num_heads=2, mlp_dim=64,
                        window_size=6, global_attn_indexes=(1,), output_channels=16, net_channels=(24, 32))
    return VaryConfig(lm=lm, clip=clip, sam=sam, image_token_len=16, im_start_token=tiny_id(151857),
                      im_end_token=tiny_id(151858), im_patch_token=tiny_id(151859), prompt_style=prompt_style)


def random_model(config: VaryConfig, seed: int = 0):
    """Our model with every tensor drawn from a seeded normal (norm weights around 1)."""
    from vary_cli.models.vary_qwen import VaryQwenForCausalLM

    torch.manual_seed(seed)
    model = VaryQwenForCausalLM(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                param.copy_(1 + 0.1 * torch.randn_like(param))
            elif name == "embed_tokens.weight" or name == "lm_head.weight":
                param.normal_(0, 0.5)
            else:
                param.normal_(0, 0.08)
    return model.eval()


def to_release_state_dict(ours: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """Our state dict under the original release names (the inverse of checkpoint.ORIGINAL_TO_OURS)."""
    sam_names = {"patch_embed.projection": "patch_embed.proj", "neck.conv1": "neck.0",
                 "neck.layer_norm1": "neck.1", "neck.conv2": "neck.2", "neck.layer_norm2": "neck.3"}
    out: dict[str, torch.Tensor] = {}
    for key, tensor in ours.items():
        if key.startswith("vision_tower."):
            out["transformer.vision_tower.vision_model." + key[len("vision_tower."):]] = tensor
        elif key.startswith("vision_tower_high."):
            rest = key[len("vision_tower_high."):]
            for new, old in sam_names.items():
                rest = rest.replace(new, old)
            rest = rest.replace("layers.", "blocks.").replace("layer_norm1", "norm1").replace("layer_norm2", "norm2")
            out["transformer.vision_tower_high." + rest] = tensor
        elif key.startswith("mm_projector"):
            out["transformer." + key] = tensor
        elif key == "embed_tokens.weight":
            out["transformer.wte.weight"] = tensor
        elif key == "norm.weight":
            out["transformer.ln_f.weight"] = tensor
        elif key == "lm_head.weight":
            out[key] = tensor
    for n in range(n_layers):
        p = f"layers.{n}."
        h = f"transformer.h.{n}."
        for kind in ("weight", "bias"):
            out[h + f"attn.c_attn.{kind}"] = torch.cat([ours[p + f"self_attn.{x}_proj.{kind}"] for x in "qkv"])
        out[h + "attn.c_proj.weight"] = ours[p + "self_attn.o_proj.weight"]
        out[h + "ln_1.weight"] = ours[p + "input_layernorm.weight"]
        out[h + "ln_2.weight"] = ours[p + "post_attention_layernorm.weight"]
        out[h + "mlp.w1.weight"] = ours[p + "mlp.up_proj.weight"]  # w1: the linear branch
        out[h + "mlp.w2.weight"] = ours[p + "mlp.gate_proj.weight"]  # w2: the silu branch
        out[h + "mlp.c_proj.weight"] = ours[p + "mlp.down_proj.weight"]
        # Non-persistent in the original too, but some exports carry it: the loader must drop it.
        out[h + "attn.rotary_emb.inv_freq"] = torch.zeros(ours[p + "self_attn.q_proj.weight"].shape[0] // 4)
    return out


def write_release(directory: Path, config: VaryConfig, state: dict[str, torch.Tensor],
                  layout: str = "bin", shards: int = 1) -> Path:
    """Write `state` (release names) as a release directory: config.json, weights, qwen.tiktoken."""
    directory.mkdir(parents=True, exist_ok=True)
    release = config.to_release()
    release.update({"vision_tower": "/cache/vit-large-patch14/", "freeze_vision_tower": False,
                    "auto_map": {"AutoModelForCausalLM": "modeling_qwen.QWenLMHeadModel"},
                    "torch_dtype": "bfloat16", "transformers_version": "4.32.0", "bf16": True})
    (directory / "config.json").write_text(json.dumps(release, indent=2))
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"auto_map": {"AutoTokenizer": ["tokenization_qwen.QWenTokenizer", None]}, "model_max_length": 8192}))
    (directory / "generation_config.json").write_text(json.dumps({"chat_format": "chatml", "eos_token_id": 151643}))
    write_tiny_tiktoken(directory / "qwen.tiktoken")
    keys = list(state)
    groups = [keys[i::shards] for i in range(shards)]
    if layout == "bin":
        names = ["pytorch_model.bin"] if shards == 1 else \
            [f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin" for i in range(shards)]
        for name, group in zip(names, groups):
            torch.save({k: state[k].clone() for k in group}, directory / name)
        index = "pytorch_model.bin.index.json"
    else:
        from safetensors.torch import save_file

        names = ["model.safetensors"] if shards == 1 else \
            [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
        for name, group in zip(names, groups):
            save_file({k: state[k].contiguous() for k in group}, str(directory / name), metadata={"format": "pt"})
        index = "model.safetensors.index.json"
    if shards > 1:
        weight_map = {k: names[i] for i, group in enumerate(groups) for k in group}
        (directory / index).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return directory


def make_checkpoint(directory: Path, config: VaryConfig | None = None, seed: int = 0, **layout) -> Path:
    config = config or tiny_config()
    model = random_model(config, seed)
    state = to_release_state_dict(model.state_dict(), config.lm.num_layers)
    return write_release(directory, config, state, **layout)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny Vary-toy release directory (pytorch_model.bin) whose prompt fits seq_length."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "vary-toy-tiny")


@pytest.fixture(scope="session")
def tiny_long_checkpoint(tmp_path_factory) -> Path:
    """Like tiny_checkpoint but seq_length 64, so the prompt triggers dynamic NTK and log-n."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "vary-toy-tiny-long", tiny_config(seq_length=64))


@pytest.fixture(scope="session")
def page_image(tmp_path_factory) -> Path:
    """A small synthetic page (black text-like strokes on white) as a PNG."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (120, 160), "white")
    draw = ImageDraw.Draw(image)
    for row in range(8):
        draw.text((8, 6 + row * 18), f"line {row}: Vary", fill="black")
    path = tmp_path_factory.mktemp("img") / "page.png"
    image.save(path)
    return path


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_opt_checkpoint(tmp_path_factory) -> Path:
    """A tiny Vary-tiny (SAM + OPT) release directory, SAM under `model.vision_tower_2` as in Vary's repo."""
    from tiny_opt import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "vary-tiny-tiny")


@pytest.fixture(scope="session")
def got_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """One tiny seeded GOT-OCR2.0 network in both release layouts: {"hf": DIR, "original": DIR}."""
    from tiny_got import random_reference, write_hf_release, write_original_release

    root = tmp_path_factory.mktemp("got")
    hf = write_hf_release(root / "GOT-OCR-2.0-hf", random_reference(seed=0))
    return {"hf": hf, "original": write_original_release(root / "GOT-OCR2_0", hf)}


@pytest.fixture(params=["hf", "original"])
def got_checkpoint(request, got_checkpoints) -> Path:
    """Each GOT release layout in turn."""
    return got_checkpoints[request.param]


@pytest.fixture(scope="session")
def got_reference(got_checkpoints):
    """transformers' own GotOcr2ForConditionalGeneration (float64) and GotOcr2Processor, from the hf layout."""
    from transformers import GotOcr2ForConditionalGeneration, GotOcr2Processor

    model = GotOcr2ForConditionalGeneration.from_pretrained(got_checkpoints["hf"], dtype=torch.float64).eval()
    return model, GotOcr2Processor.from_pretrained(got_checkpoints["hf"])
