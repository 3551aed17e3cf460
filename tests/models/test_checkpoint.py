"""checkpoint.py: every release layout loads through the user's path; the key map at real sizes; load errors."""

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from conftest import make_checkpoint, random_model, tiny_config, to_release_state_dict
from vary_cli.models.checkpoint import build_on_meta, load_directory
from vary_cli.models.keys import convert_state_dict
from vary_cli.cli.app import app
from vary_cli.models.config import PRESETS
from vary_cli.errors import WeightsError

CPU = torch.device("cpu")


@pytest.mark.parametrize("layout,shards", [("bin", 1), ("bin", 3), ("safetensors", 1), ("safetensors", 2)])
def test_every_release_layout_loads_the_same_weights(tmp_path, layout, shards):
    directory = make_checkpoint(tmp_path / "ckpt", layout=layout, shards=shards)
    loaded = load_directory(directory, CPU, torch.float32)
    expected = random_model(tiny_config()).state_dict()
    ours = loaded.model.state_dict()
    assert ours.keys() == expected.keys()
    for key, tensor in expected.items():
        assert torch.equal(ours[key], tensor), key
    assert not any(p.requires_grad for p in loaded.model.parameters())


@pytest.mark.parametrize("name,width", [("vary-toy", 2048), ("vary-base", 4096)])
def test_key_map_covers_the_full_size_release_on_meta(name, width):
    config = PRESETS[name]
    model = build_on_meta(config)
    ours = {k: v for k, v in model.state_dict().items()}
    release = to_release_state_dict(ours, config.lm.num_layers)
    release = {k: v for k, v in release.items() if not k.endswith("inv_freq")}
    groups = {"clip": "transformer.vision_tower.", "sam": "transformer.vision_tower_high.",
              "proj": "transformer.mm_projector", "llm": "transformer.h."}
    counts = {g: sum(k.startswith(p) for k in release) for g, p in groups.items()}
    assert counts == {"clip": 391, "sam": 179, "proj": 4, "llm": 8 * config.lm.num_layers}
    assert len(release) == 391 + 179 + 4 + 2 + 8 * config.lm.num_layers + 1
    assert release["transformer.h.0.attn.c_attn.weight"].shape == (3 * width, width)
    assert release["transformer.mm_projector_vary.weight"].shape == (width // 2, 1024)
    assert release["transformer.vision_tower_high.blocks.0.attn.rel_pos_h"].shape == (27, 64)
    assert release["transformer.vision_tower_high.blocks.2.attn.rel_pos_h"].shape == (127, 64)
    assert release["transformer.vision_tower_high.pos_embed"].shape == (1, 64, 64, 768)
    converted, unknown = convert_state_dict(release)
    assert unknown == []
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in ours.items()}


def test_legacy_torch_save_format_loads_too(tmp_path):
    directory = make_checkpoint(tmp_path / "ckpt")
    state = torch.load(directory / "pytorch_model.bin", weights_only=True)
    torch.save(state, directory / "pytorch_model.bin", _use_new_zipfile_serialization=False)  # no mmap possible
    loaded = load_directory(directory, CPU, torch.float32)
    assert torch.equal(loaded.model.lm_head.weight, state["lm_head.weight"])


def test_w1_is_the_linear_branch_and_w2_the_gated_one(tiny_checkpoint):
    state = torch.load(tiny_checkpoint / "pytorch_model.bin", weights_only=True)
    loaded = load_directory(tiny_checkpoint, CPU, torch.float32)
    mlp = loaded.model.layers[1].mlp
    assert torch.equal(mlp.up_proj.weight, state["transformer.h.1.mlp.w1.weight"])
    assert torch.equal(mlp.gate_proj.weight, state["transformer.h.1.mlp.w2.weight"])
    q, k, v = state["transformer.h.1.attn.c_attn.weight"].chunk(3)
    attn = loaded.model.layers[1].self_attn
    assert torch.equal(attn.q_proj.weight, q) and torch.equal(attn.k_proj.weight, k) and torch.equal(attn.v_proj.weight, v)


def edit_state(directory, change):
    path = directory / "pytorch_model.bin"
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


@pytest.mark.parametrize("breakage,message", [
    ("missing_shard", "missing shard"),
    ("truncated", "corrupt or unreadable"),
    ("missing_tensor", "1 missing tensor"),
    ("unexpected_tensor", "unexpected tensor(s), e.g. transformer.extra_head.weight"),
    ("wrong_shape", "has shape"),
    ("bad_json", "not valid JSON"),
    ("no_tokenizer", "qwen.tiktoken"),
    ("no_weights", "no weights"),
    ("not_vary", "model_type"),
])
def test_broken_checkpoints_raise_one_weights_error(tmp_path, breakage, message):
    shards = 2 if breakage == "missing_shard" else 1
    directory = make_checkpoint(tmp_path / "ckpt", shards=shards)
    if breakage == "missing_shard":
        (directory / "pytorch_model-00002-of-00002.bin").unlink()
    elif breakage == "truncated":
        data = (directory / "pytorch_model.bin").read_bytes()
        (directory / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    elif breakage == "missing_tensor":
        edit_state(directory, lambda s: s.pop("transformer.ln_f.weight"))
    elif breakage == "unexpected_tensor":
        edit_state(directory, lambda s: s.update({"transformer.extra_head.weight": torch.zeros(2)}))
    elif breakage == "wrong_shape":
        edit_state(directory, lambda s: s.update({"lm_head.weight": torch.zeros(3, 3)}))
    elif breakage == "bad_json":
        (directory / "config.json").write_text("{not json")
    elif breakage == "no_tokenizer":
        (directory / "qwen.tiktoken").unlink()
    elif breakage == "no_weights":
        (directory / "pytorch_model.bin").unlink()
    elif breakage == "not_vary":
        config = json.loads((directory / "config.json").read_text())
        (directory / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(WeightsError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        load_directory(directory, CPU, torch.float32)
    assert str(directory) in str(info.value) or directory.name in str(info.value)
    assert "\n" not in str(info.value)


def test_cli_reports_a_broken_checkpoint_in_one_line(tmp_path, page_image):
    directory = make_checkpoint(tmp_path / "ckpt", shards=2)
    (directory / "pytorch_model-00001-of-00002.bin").unlink()
    result = CliRunner().invoke(app, ["ocr", str(page_image), "--model", str(directory)])
    assert result.exit_code == 3
    assert len(result.output.strip().splitlines()) == 1 and "missing shard" in result.output


def test_ocr_cli_end_to_end(tiny_checkpoint, page_image, tmp_path):
    runner = CliRunner()
    one = runner.invoke(app, ["ocr", str(page_image), "--model", str(tiny_checkpoint), "--max-new-tokens", "5"])
    assert one.exit_code == 0, one.output
    other = tmp_path / "other.png"
    shutil.copy(page_image, other)
    many = runner.invoke(app, ["ocr", str(page_image), str(other), "--model", str(tiny_checkpoint),
                               "--max-new-tokens", "5", "--json"])
    assert many.exit_code == 0, many.output
    lines = [json.loads(line) for line in many.stdout.splitlines() if line.startswith("{")]
    assert [r["source"] for r in lines] == [str(page_image), str(other)]
    assert {"source", "text", "finish_reason", "tokens", "seconds"} <= lines[0].keys()
    assert lines[0]["text"] == lines[1]["text"] and lines[0]["tokens"] == 5


@pytest.mark.parametrize("args,code,needle", [
    (["ocr", "/no/such.png"], 2, "no such file"),
    (["ocr", "{pdf}"], 2, "PDF"),
    (["ocr", "{img}", "--model", "no-such-model"], 3, "known: "),
    (["ocr", "{img}", "--model", "{ckpt}", "--device", "cuda"], 4, "CUDA"),
])
def test_ocr_cli_bad_input_is_one_line(tiny_checkpoint, page_image, tmp_path, monkeypatch, args, code, needle):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    pdf = tmp_path / "doc.pdf"
    pdf.write_bytes(b"%PDF-1.4\n")
    args = [a.format(pdf=pdf, img=page_image, ckpt=tiny_checkpoint) for a in args]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == code, result.output
    assert needle in result.output and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output
