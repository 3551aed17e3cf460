"""The vocabulary stage (`vary train --vocabulary`) on a tiny Vary-tiny, and `vary graft-vocabulary`:
caption_opt.py's sequence and mask, the loss, overfitting to checkpoints that `vary ocr --prompt ""`
reads back, initialisation from SAM ViT-B weights, and grafting the vocabulary into Vary-toy."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from tiny_opt import random_opt_model, tiny_opt_config, to_release_state_dict as tiny_release_names
from train_fixtures import weights, write_data
from vary_cli.models.checkpoint import load_directory, read_weight_file, weight_files
from vary_cli.train.dataset import IGNORE_INDEX, TrainDataset, collate, encode_vocabulary_sample, read_samples
from vary_cli.errors import WeightsError
from vary_cli.models.vary_qwen import VisionVocabulary, attention_bias
from vary_cli.text.gpt2_tokenizer import OPTTokenizer
from vary_cli.train.config import TrainConfig

CPU = torch.device("cpu")
ANSWERS = ("the page 123", "Read every word")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The models here are tiny: one thread is faster than two, and far faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer(tiny_opt_checkpoint) -> OPTTokenizer:
    return OPTTokenizer.from_directory(tiny_opt_checkpoint)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("vocab"), answers=ANSWERS, pairs=True)


def original_caption_opt(t: OPTTokenizer, conversation: list[dict], n_image: int, max_length: int):
    """vary/data/caption_opt.py re-enacted on strings, with the slow tokenizer of transformers 4.32 it ran
    on: split at added tokens and `</s>`, strip whitespace beside the (plain-string) image tokens only,
    prepend `</s>`, truncate, force the last id to `</s>`; then `_mask_targets` on per-turn lengths."""
    specials = {"<img>": t.img_start_id, "</img>": t.img_end_id, "<imgpad>": t.img_pad_id, "</s>": t.eos_id}

    def tokenize(text: str) -> list[int]:
        pieces = [p for p in re.split(r"(<img>|</img>|<imgpad>|</s>)", text) if p != ""]
        for i, piece in enumerate(pieces):
            if piece in ("<img>", "</img>", "<imgpad>"):
                if i + 1 < len(pieces):
                    pieces[i + 1] = pieces[i + 1].lstrip() if pieces[i + 1] not in specials else pieces[i + 1]
                if i > 0 and pieces[i - 1] not in specials:
                    pieces[i - 1] = pieces[i - 1].rstrip()
        ids = [t.bos_id] + [i for p in pieces for i in ([specials[p]] if p in specials else t.encode(p))]
        ids = ids[:max_length]
        if ids[-1] != 2:
            ids[-1] = 2
        return ids

    source = [dict(turn) for turn in conversation]
    source[0]["value"] = "<image>"
    for turn in source:
        turn["value"] = turn["value"].replace("<image>", "<img>" + "<imgpad>" * n_image + "</img>") + "\n"
    input_ids = tokenize("".join(turn["value"] for turn in source) + "</s>")
    target = list(input_ids)
    lens = [len(tokenize(""))] + [len(tokenize(turn["value"])) for turn in source]
    cur = lens[0]
    target[:cur] = [IGNORE_INDEX] * cur
    for length, turn in zip(lens[1:], source):
        if turn["from"] == "human":
            target[cur:length] = [IGNORE_INDEX] * len(target[cur:length])
        cur += length
    return input_ids, target


def test_label_mask_of_a_worked_vocabulary_example(tokenizer):
    t = tokenizer
    encoded = encode_vocabulary_sample(t, (("human", "<image>\nOCR this (dropped)"), ("gpt", " A chat")), 16, 512)
    vocab = t.vocab
    answer = [vocab["A"], vocab["\u0120chat"], vocab["\u010a"]]  # "A", " chat", "\n": the leading space is stripped
    assert encoded.input_ids == [2, t.img_start_id] + [t.img_pad_id] * 16 + [t.img_end_id] + answer + [2]
    assert encoded.labels == [IGNORE_INDEX] * 19 + answer + [2]  # </s>, <img>, 16 x <imgpad>, </img>
    assert not encoded.truncated

    cut = encode_vocabulary_sample(t, (("human", "<image>"), ("gpt", "the page line text")), 16, 20)
    assert cut.truncated and len(cut.input_ids) == 20 and cut.input_ids[-1] == cut.labels[-1] == 2
    assert cut.labels[:19] == [IGNORE_INDEX] * 19 and cut.labels[19] == cut.input_ids[19]

    # Several turns, against the original re-enacted on strings (its mask leaves later human turns learned).
    for turns, max_length in [((("human", "<image>\nq"), ("gpt", "the page")), 512),
                              ((("human", "<image>"), ("gpt", "Read"), ("human", "every word,"),
                                ("gpt", "the 123\n\nline")), 512),
                              ((("human", "<image>"), ("gpt", "the page line text numbers")), 22)]:
        expected = original_caption_opt(t, [{"from": r, "value": v} for r, v in turns], 16, max_length)
        encoded = encode_vocabulary_sample(t, turns, 16, max_length)
        assert (encoded.input_ids, encoded.labels) == expected, turns


def _independent_loss(loaded, batch) -> tuple[float, int]:
    """The inference forward one row at a time (no padding), image features from encode_images."""
    model, nll, n = loaded.model, 0.0, 0
    for row in range(batch["input_ids"].shape[0]):
        keep = int((batch["input_ids"][row] != loaded.tokenizer.pad_id).sum())
        ids = batch["input_ids"][row:row + 1, :keep]
        embeds = model.embed(ids, model.encode_images(batch["sam"][row:row + 1]))
        with torch.no_grad():
            logits = model(embeds, torch.arange(keep)[None],
                           attention_bias(torch.zeros(1, dtype=torch.long), 0, keep, keep, torch.float32), [1.0])[0]
        log_probs = torch.log_softmax(logits.double(), dim=-1)
        for pos in range(keep - 1):
            target = int(batch["labels"][row, pos + 1])
            if target != IGNORE_INDEX:
                nll -= float(log_probs[pos, target])
                n += 1
    return nll, n


def test_one_batch_loss_matches_an_independent_computation(tiny_opt_checkpoint, pairs):
    from vary_cli.train.vocabulary import vocabulary_loss

    loaded = load_directory(tiny_opt_checkpoint, CPU, torch.float32)
    dataset = TrainDataset(read_samples(pairs, "vary-tiny"), loaded.tokenizer, loaded.config, 512)
    batch = collate([dataset[0], dataset[1]], loaded.tokenizer.pad_id)
    assert batch["input_ids"].shape[0] == 2 and (batch["input_ids"] == loaded.tokenizer.pad_id).any()  # padded
    assert "clip" not in batch and batch["sam"].shape == (2, 3, 64, 64)
    total, count = vocabulary_loss(loaded.model, batch["input_ids"], batch["labels"], batch["sam"])
    nll, n = _independent_loss(loaded, batch)
    assert int(count) == n == len(loaded.tokenizer.encode(ANSWERS[0] + "\n")) + len(
        loaded.tokenizer.encode(ANSWERS[1] + "\n")) + 2
    assert float(total) / int(count) == pytest.approx(nll / n, rel=1e-5)


def _config(model: Path, data: Path, out: Path, **changes) -> TrainConfig:
    settings = dict(stage="vocabulary", data=(data,), out=out, model=str(model), device="cpu", dtype="fp32",
                    batch_size=2, workers=0, lr=1e-2, max_steps=25, save_every=100, dropout=0.0)
    return TrainConfig(**{**settings, **changes})


def test_overfits_two_pages_and_ocr_with_an_empty_prompt_reads_them_back(tiny_opt_checkpoint, pairs, tmp_path):
    from vary_cli.models.config import VaryTinyConfig
    from vary_cli.engine.config import GenerationConfig
    from vary_cli.convert.pipeline import ocr_images
    from vary_cli.train.loop import run

    cfg = _config(tiny_opt_checkpoint, pairs, tmp_path / "out")
    assert (cfg.max_length, cfg.warmup_ratio, cfg.gradient_checkpointing) == (512, 0.0, False)  # the stage's
    result = run(cfg)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < 0.03 * losses[0]
    directory = result.checkpoint
    release = json.loads((directory / "config.json").read_text())
    assert release["model_type"] == "vary" and "ffn_dim" in release and "kv_channels" not in release
    names = set(weights(directory))
    assert {"model.mm_projector.weight", "lm_head.weight", "model.decoder.embed_tokens.weight",
            "model.vision_tower_2.net_3.weight", "model.vision_tower_2.blocks.0.attn.rel_pos_h"} <= names
    assert all(n.startswith(("model.vision_tower_2.", "model.mm_projector.", "model.decoder.")) or n == "lm_head.weight"
               for n in names)
    for name in ("vocab.json", "merges.txt", "added_tokens.json", "special_tokens_map.json"):
        assert (directory / name).read_bytes() == (tiny_opt_checkpoint / name).read_bytes()

    loaded = load_directory(directory, CPU, torch.float32)
    assert isinstance(loaded.config, VaryTinyConfig)
    pages = [pairs.parent / "pages" / f"{i}.png" for i in range(2)]
    texts = [r.text for r in ocr_images(loaded, pages, "", GenerationConfig(max_new_tokens=12))]
    assert [text.rstrip("\n") for text in texts] == list(ANSWERS)
    # Every parameter trained, SAM included (the original runs it with gradients enabled).
    start = load_directory(tiny_opt_checkpoint, CPU, torch.float32).model.state_dict()
    trained = loaded.model.state_dict()
    assert not torch.equal(start["vision_tower_high.layers.0.attn.qkv.weight"],
                           trained["vision_tower_high.layers.0.attn.qkv.weight"])
    assert not torch.equal(start["vision_tower_high.net_2.weight"], trained["vision_tower_high.net_2.weight"])


def fake_sam_file(path: Path, seed: int = 3) -> dict[str, torch.Tensor]:
    """A SAM ViT-B-style checkpoint at the tiny size, in segment-anything's layout: `image_encoder.*` (the
    names written by the fixtures' own inverse table), plus prompt-encoder and mask-decoder tensors."""
    spec = tiny_opt_config().sam
    torch.manual_seed(seed)
    encoder = VisionVocabulary(spec)
    with torch.no_grad():
        for param in encoder.parameters():
            param.normal_(0, 0.1)
    ours = {"vision_tower_high." + k: v for k, v in encoder.state_dict().items() if not k.startswith("net_")}
    state = tiny_release_names(ours, sam_prefix="image_encoder.")
    state.update({"prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": torch.randn(2, 128),
                  "mask_decoder.iou_token.weight": torch.randn(1, 256)})
    torch.save(state, path)
    return {k: v for k, v in encoder.state_dict().items() if not k.startswith("net_")}


def test_sam_weights_init_maps_every_key(tmp_path):
    from vary_cli.train.vocabulary import init_vocabulary, read_sam_encoder

    expected = fake_sam_file(tmp_path / "sam_vit_b.pth")
    read = read_sam_encoder(tmp_path / "sam_vit_b.pth", tiny_opt_config().sam)
    assert read.keys() == expected.keys() and len(read) == len(VisionVocabulary(tiny_opt_config().sam).state_dict()) - 2
    assert all(torch.equal(read[k], expected[k]) for k in read)

    model = random_opt_model(tiny_opt_config())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert "SAM encoder" in init_vocabulary(model, str(tmp_path / "sam_vit_b.pth"))
    after = model.state_dict()
    assert all(torch.equal(after["vision_tower_high." + k], v) for k, v in expected.items())
    for key in ("vision_tower_high.net_2.weight", "vision_tower_high.net_3.weight", "mm_projector.weight"):
        assert not torch.equal(after[key], before[key])  # new, random
    assert torch.equal(after["decoder.layers.0.fc1.weight"], before["decoder.layers.0.fc1.weight"])

    state = torch.load(tmp_path / "sam_vit_b.pth", weights_only=True)
    broken = dict(state)
    del broken["image_encoder.blocks.1.attn.rel_pos_h"]
    torch.save(broken, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match=r"1 missing, e\.g\. layers\.1\.attn\.rel_pos_h"):
        read_sam_encoder(tmp_path / "missing.pth", tiny_opt_config().sam)
    broken = dict(state, **{"image_encoder.neck.0.weight": torch.zeros(3, 3, 1, 1)})
    torch.save(broken, tmp_path / "shape.pth")
    with pytest.raises(WeightsError, match=r"image_encoder\.neck\.conv1\.weight has shape \(3, 3, 1, 1\)"):
        read_sam_encoder(tmp_path / "shape.pth", tiny_opt_config().sam)


def test_cli_vocabulary_run_from_sam_weights(tiny_opt_checkpoint, pairs, tmp_path):
    from vary_cli.cli.app import app

    expected = fake_sam_file(tmp_path / "sam.pth")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["train", "--vocabulary", str(pairs), "--model", str(tiny_opt_checkpoint),
                                      "--out", str(out), "--vocabulary-init", str(tmp_path / "sam.pth"),
                                      "--max-steps", "1", "--lr", "1e-12", "--batch-size", "2", "--device", "cpu",
                                      "--dtype", "fp32", "--workers", "0"])
    assert result.exit_code == 0, result.output
    trained = load_directory(out / "checkpoint-1", CPU, torch.float32).model.vision_tower_high.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(trained[key], value, rtol=0, atol=1e-6)
    bad = CliRunner().invoke(app, ["train", "--vocabulary", str(pairs), "--sft", str(pairs)])
    assert bad.exit_code != 0 and "exactly one of --vocabulary" in bad.output


def test_vocabulary_stage_needs_a_vary_tiny_model(tiny_checkpoint, pairs, tmp_path):
    from vary_cli.errors import VaryError
    from vary_cli.train.loop import run

    with pytest.raises(VaryError, match=r"--vocabulary trains Vary-tiny \(OPT\), but .* is Vary-toy"):
        run(_config(tiny_checkpoint, pairs, tmp_path / "out"))


def _release_tensors(directory: Path) -> dict[str, torch.Tensor]:
    return {k: v for path in weight_files(directory) for k, v in read_weight_file(path)}


def test_graft_puts_the_tiny_vocabulary_into_vary_toy(tiny_opt_checkpoint, tiny_checkpoint, tmp_path):
    from vary_cli.cli.train import graft_vocabulary

    app = typer.Typer()
    app.command()(graft_vocabulary)
    out = tmp_path / "grafted"
    result = CliRunner().invoke(app, ["--vocabulary", str(tiny_opt_checkpoint), "--into", str(tiny_checkpoint),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    toy, tiny, new = (_release_tensors(d) for d in (tiny_checkpoint, tiny_opt_checkpoint, out))
    assert new.keys() == toy.keys()
    for key, tensor in new.items():
        if key.startswith("transformer.vision_tower_high."):
            assert torch.equal(tensor, tiny["model.vision_tower_2." + key.removeprefix("transformer.vision_tower_high.")])
        else:
            assert torch.equal(tensor, toy[key]), key
    assert (out / "qwen.tiktoken").read_bytes() == (tiny_checkpoint / "qwen.tiktoken").read_bytes()
    assert json.loads((out / "config.json").read_text()) == json.loads((tiny_checkpoint / "config.json").read_text())

    grafted = load_directory(out, CPU, torch.float32).model.state_dict()
    toy_model = load_directory(tiny_checkpoint, CPU, torch.float32).model.state_dict()
    tiny_model = load_directory(tiny_opt_checkpoint, CPU, torch.float32).model.state_dict()
    for key, tensor in grafted.items():
        source = tiny_model if key.startswith("vision_tower_high.") else toy_model
        assert torch.equal(tensor, source[key]), key
    assert sum(k.startswith("vision_tower_high.") for k in grafted) == sum(
        k.startswith("vision_tower_high.") for k in tiny_model) > 0


def test_graft_refuses_mismatched_shapes_and_writes_nothing(tiny_opt_checkpoint, tiny_checkpoint, tmp_path):
    from vary_cli.train.graft import graft_vocabulary

    tampered = tmp_path / "tampered"
    shutil.copytree(tiny_opt_checkpoint, tampered)
    state = torch.load(tampered / "pytorch_model.bin", weights_only=True)
    state["model.vision_tower_2.net_2.weight"] = torch.zeros(24, 16, 1, 1)
    torch.save(state, tampered / "pytorch_model.bin")
    with pytest.raises(WeightsError, match=r"transformer\.vision_tower_high\.net_2\.weight: shape \(24, 16, 3, 3\)"):
        graft_vocabulary(tampered, tiny_checkpoint, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))
    with pytest.raises(WeightsError, match="must be a Vary-tiny"):
        graft_vocabulary(tiny_checkpoint, tiny_checkpoint, tmp_path / "out")
    with pytest.raises(WeightsError, match="must be a Vary-toy or Vary-base"):
        graft_vocabulary(tiny_opt_checkpoint, tiny_opt_checkpoint, tmp_path / "out")


def test_everything_trains_with_the_original_decay_groups():
    from vary_cli.train.loop import parameter_groups
    from vary_cli.train.vocabulary import VocabularyRecipe

    model = random_opt_model(tiny_opt_config())
    model.requires_grad_(False)
    recipe = VocabularyRecipe(model, model.config, None, {})
    recipe.prepare(_config(Path("m"), Path("d"), Path("o"), dropout=0.1))
    assert all(p.requires_grad for p in model.parameters())
    assert {layer.dropout for layer in model.decoder.layers} == {0.1}
    groups = parameter_groups(model, weight_decay=0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay = {names[id(p)] for p in groups[1]["params"]}
    # nn.LayerNorm weights and biases are not decayed; SAM's LayerNorm2d (the neck's) is, as in the original.
    assert {"vision_tower_high.layers.0.layer_norm1.weight", "decoder.final_layer_norm.weight",
            "mm_projector.bias"} <= no_decay
    assert "vision_tower_high.neck.layer_norm1.weight" not in no_decay
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(model.parameters()))
    recipe.finish()
    assert {layer.dropout for layer in model.decoder.layers} == {0.0}


def test_kill_and_resume_with_dropout_gives_the_same_weights(tiny_opt_checkpoint, pairs, tmp_path):
    from vary_cli.train.loop import run

    settings = dict(max_steps=4, save_every=2, batch_size=1, lr=1e-3, dropout=0.1)
    straight = run(_config(tiny_opt_checkpoint, pairs, tmp_path / "a", **settings))

    def kill(step: int) -> None:
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(_config(tiny_opt_checkpoint, pairs, tmp_path / "b", extra={"after_step": kill}, **settings))
    resumed = run(_config(tiny_opt_checkpoint, pairs, tmp_path / "b", resume=True, **settings))
    a, b = weights(straight.checkpoint), weights(resumed.checkpoint)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
