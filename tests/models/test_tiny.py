"""Vary-tiny (SAM + OPT): loading the release layout, tokenizer, both prompt formats, parity, key map.

The reference for the decoder is transformers' `OPTForCausalLM` (the class the original
`varyOPTForCausalLM` subclasses) with the release's weights, run in float64 on embeddings merged by
`reference_vary`, recomputing the whole sequence at every step (no cache). The SAM branch is checked
against the independent reference of the spec's formulas. Tests marked `both_families` run the same
assertions on a tiny Vary-toy checkpoint too: the loader, key table, LoadedModel and generate are shared.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import reference_vary as ref
import torch
from PIL import Image
from tiny_opt import IMAGE_TOKENS, make_tiny_checkpoint, tiny_bpe, tiny_opt_config, to_release_state_dict
from transformers import OPTConfig, OPTForCausalLM

from vary_cli.models.checkpoint import build_on_meta, load_directory, read_config
from vary_cli.models.keys import KEY_TABLE, SAM_PREFIXES, TINY, convert_state_dict, to_original, to_ours
from vary_cli.models.config import VaryConfig, VaryTinyConfig, config_from_release, preset
from vary_cli.engine.config import GenerationConfig
from vary_cli.errors import PromptError, WeightsError
from engine_util import decode
from vary_cli.models.vary_qwen import attention_bias
from vary_cli.models.preprocess import (
                                        IMAGENET_MEAN,
                                        IMAGENET_STD,
                                        load_image,
                                        resize_linear_like_opencv,
                                        sam_pixels,
                                        linear_imagenet_pixels,
                                        )
from vary_cli.text.prompts import V1_SYSTEM
from vary_cli.text.gpt2_tokenizer import OPTTokenizer

F64 = torch.float64
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny(tiny_opt_checkpoint):
    return load_directory(tiny_opt_checkpoint, CPU, F64)


@pytest.fixture(scope="module")
def release(tiny_opt_checkpoint) -> dict[str, torch.Tensor]:
    state = torch.load(tiny_opt_checkpoint / "pytorch_model.bin", weights_only=True)
    return {k: v.to(F64) for k, v in state.items()}


@pytest.fixture(params=["vary-toy", "vary-tiny"])
def both_families(request, tiny_checkpoint, tiny_opt_checkpoint) -> Path:
    return tiny_checkpoint if request.param == "vary-toy" else tiny_opt_checkpoint


def reference_opt(release: dict[str, torch.Tensor], config: VaryTinyConfig) -> OPTForCausalLM:
    lm = config.lm
    model = OPTForCausalLM(OPTConfig(
        vocab_size=lm.vocab_size, hidden_size=lm.hidden_size, num_hidden_layers=lm.num_layers, ffn_dim=lm.ffn_dim,
        num_attention_heads=lm.num_heads, max_position_embeddings=lm.max_position_embeddings,
        word_embed_proj_dim=lm.word_embed_proj_dim, do_layer_norm_before=True, activation_function="relu",
        dropout=0.0, attention_dropout=0.0, tie_word_embeddings=True, attn_implementation="eager"))
    decoder = {k: v for k, v in release.items() if k.startswith("model.decoder.")}
    missing, unexpected = model.load_state_dict(decoder, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    model.tie_weights()
    return model.to(F64).eval()


def reference_features(pixels: torch.Tensor, release: dict[str, torch.Tensor], config: VaryTinyConfig) -> torch.Tensor:
    # reference_vary reads SAM under Vary-toy's prefix; the tensors are the same.
    renamed = {k.replace("model.vision_tower_2.", "transformer.vision_tower_high."): v for k, v in release.items()}
    sam = ref.sam_features(pixels, renamed, config.sam)
    return sam @ release["model.mm_projector.weight"].T + release["model.mm_projector.bias"]


def reference_greedy(ids: list[int], features: torch.Tensor, release, opt: OPTForCausalLM, config, steps: int,
                     stop: int) -> list[int]:
    ids, out = list(ids), []
    start = ids.index(config.im_start_token)
    for _ in range(steps):
        embeds = release["model.decoder.embed_tokens.weight"][torch.tensor(ids)].clone()
        embeds[start + 1:start + 1 + features.shape[0]] = features
        with torch.no_grad():
            logits = opt(inputs_embeds=embeds[None]).logits[0, -1]
        token = int(logits.argmax())
        if token == stop:
            break
        out.append(token)
        ids.append(token)
    return out


# ---- config and family -------------------------------------------------------------------------------

def test_the_family_comes_from_the_config_fields_not_the_name(tmp_path, tiny_opt_checkpoint, tiny_checkpoint):
    disguised = tmp_path / "Vary-toy-qwen"  # a misleading directory name changes nothing
    shutil.copytree(tiny_opt_checkpoint, disguised)
    assert isinstance(read_config(disguised), VaryTinyConfig)
    assert isinstance(read_config(tiny_checkpoint), VaryConfig)
    raw = json.loads((tiny_opt_checkpoint / "config.json").read_text())
    assert raw["model_type"] == "vary" and "ffn_dim" in raw
    with pytest.raises(WeightsError, match="found both"):
        config_from_release(dict(raw, kv_channels=16))
    with pytest.raises(WeightsError, match="found neither"):
        config_from_release({k: v for k, v in raw.items() if k not in ("ffn_dim", "word_embed_proj_dim")})


def test_preset_is_opt_125m_with_the_image_tokens():
    config = preset("vary-tiny")
    assert (config.lm.hidden_size, config.lm.num_layers, config.lm.num_heads, config.lm.ffn_dim) == (768, 12, 12, 3072)
    assert (config.im_patch_token, config.im_start_token, config.im_end_token) == (50265, 50266, 50267)
    assert config.projector_width == 768 and config.image_token_len == 256
    assert config_from_release(config.to_release()) == config


# ---- tokenizer and prompts ---------------------------------------------------------------------------

TEXTS = ["Provide the OCR results of this image.", "  two  spaces\tand\nnewlines\n\n", "naïve café 😀 123,456.7",
         "don't I'LL we've", "<img></s><imgpad> stays text"]


@pytest.mark.parametrize("text", TEXTS)
def test_bpe_ids_equal_transformers_gpt2_tokenizer(tiny_opt_checkpoint, text):
    from transformers import GPT2Tokenizer

    reference = GPT2Tokenizer(vocab=str(tiny_opt_checkpoint / "vocab.json"),
                              merges=str(tiny_opt_checkpoint / "merges.txt"), add_prefix_space=False)
    ours = OPTTokenizer.from_directory(tiny_opt_checkpoint)
    assert ours.encode(text) == reference.encode(text, add_special_tokens=False)
    assert ours.decode(ours.encode(text)) == text


def test_tokenizer_ids_and_user_text_never_special(tiny):
    t = tiny.tokenizer
    n = len(tiny_bpe()[0])
    assert (t.bos_id, t.eos_id, t.pad_id) == (2, 2, 1)
    assert (t.img_pad_id, t.img_start_id, t.img_end_id) == (n, n + 1, n + 2)
    ids = t.encode("stop </s> here <img><imgpad></img>")
    assert not set(ids) & ({2} | {t.img_pad_id, t.img_start_id, t.img_end_id})
    assert t.decode([2] + ids + [t.img_end_id, 1]) == "stop </s> here <img><imgpad></img>"


def test_chat_prompt_is_the_v1_template_as_transformers_4_32_tokenizes_it(tiny):
    t = tiny.tokenizer
    ids = tiny.prompt_ids("ocr")
    start, end = ids.index(t.img_start_id), ids.index(t.img_end_id)
    assert ids[0] == 2 and ids[start + 1:end] == [t.img_pad_id] * 16 and end == start + 17
    # The slow tokenizer strips whitespace on both sides of an added token: "USER: " and "\n" go.
    assert ids[1:start] == t.encode(V1_SYSTEM + " USER:")
    assert ids[end + 1:] == t.encode("Provide the OCR results of this image. ASSISTANT:")
    assert tiny.prompt_ids("  Read it.  ")[end + 1:] == t.encode("Read it.   ASSISTANT:")


def test_empty_prompt_is_the_image_only_format(tiny):
    t = tiny.tokenizer
    assert tiny.prompt_ids("") == [2, t.img_start_id] + [t.img_pad_id] * 16 + [t.img_end_id]


# ---- preprocessing of the image-only format ----------------------------------------------------------

def test_linear_imagenet_pixels_normalize_with_imagenet_constants():
    spec = tiny_opt_config().sam
    image = Image.fromarray(np.full((64, 64, 3), (10, 128, 250), dtype=np.uint8))  # already 64²: no resampling
    pixels = linear_imagenet_pixels(image, spec)
    assert pixels.shape == (3, 64, 64) and pixels.dtype == torch.float32
    expected = [(v / 255 - m) / s for v, m, s in zip((10, 128, 250), IMAGENET_MEAN, IMAGENET_STD)]
    torch.testing.assert_close(pixels[:, 0, 0], torch.tensor(expected), rtol=1e-6, atol=1e-6)


def test_linear_resize_equals_opencv_where_installed():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    for shape in [(300, 200, 3), (2200, 1700, 3), (777, 1333, 3), (64, 50, 3)]:
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        expected = cv2.resize(image, (1024, 1024), interpolation=cv2.INTER_LINEAR)
        assert np.array_equal(resize_linear_like_opencv(image, 1024, 1024), expected), shape


# ---- the model against transformers' OPT and the reference -------------------------------------------

@pytest.mark.parametrize("prompt", ["ocr", ""])
def test_prefill_logits_equal_transformers_opt(tiny, release, page_image, prompt):
    model, config = tiny.model, tiny.config
    ids = tiny.prompt_ids(prompt)
    features = tiny.encode_pages([load_image(page_image)], prompt)
    to_pixels = linear_imagenet_pixels if prompt == "" else sam_pixels
    expected_features = reference_features(to_pixels(load_image(page_image), config.sam)[None].to(F64), release, config)
    torch.testing.assert_close(features, expected_features, rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        embeds = model.embed(torch.tensor([ids]), features)
        bias = attention_bias(torch.zeros(1, dtype=torch.long), 0, len(ids), len(ids), F64)
        logits = model(embeds, torch.arange(len(ids))[None], bias, model.prompt_alphas([len(ids)]))
        expected = reference_opt(release, config)(inputs_embeds=embeds).logits
    # transformers 5's eager OPT attention takes its softmax in float32 even for float64 inputs: hence 1e-6.
    torch.testing.assert_close(logits, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("prompt", ["ocr", ""])
def test_greedy_tokens_equal_the_reference_in_both_formats(tiny, release, page_image, prompt):
    config = tiny.config
    ids = tiny.prompt_ids(prompt)
    features = tiny.encode_pages([load_image(page_image)], prompt)  # preprocessed for the prompt's format
    (ours,) = decode(tiny.model, [ids], features, GenerationConfig(max_new_tokens=12), tiny.stop_ids)
    expected = reference_greedy(ids, features[0], release, reference_opt(release, config), config, 12, 2)
    assert ours.token_ids == expected
    assert len(set(expected)) > 3, "random weights should not collapse to one token"


def test_a_left_padded_batch_gives_what_each_prompt_gives_alone(tiny_opt_checkpoint, page_image):
    loaded = load_directory(tiny_opt_checkpoint, CPU, torch.float32)
    prompts = [loaded.prompt_ids(p) for p in ("ocr", "Read every word, please, and the numbers too.", "x")]
    features = loaded.encode_pages([load_image(page_image)], prompt="ocr")
    gen = GenerationConfig(max_new_tokens=10)
    alone = [decode(loaded.model, [p], features, gen, loaded.stop_ids)[0].token_ids for p in prompts]
    batch = decode(loaded.model, prompts, features.expand(3, -1, -1), gen, loaded.stop_ids)
    assert [r.token_ids for r in batch] == alone


def test_generation_stops_at_opt_positions_with_length(tmp_path, page_image):
    loaded = load_directory(make_tiny_checkpoint(tmp_path / "short", tiny_opt_config(max_positions=80)), CPU,
                            torch.float32)
    ids = loaded.prompt_ids("ocr")  # 66 tokens
    features = loaded.encode_pages([load_image(page_image)])
    (result,) = decode(loaded.model, [ids], features, GenerationConfig(max_new_tokens=30), {-1})
    assert result.finish_reason == "length" and len(result.token_ids) == 80 - 66
    with pytest.raises(PromptError, match="80 positions"):  # the model itself refuses what it cannot compute
        loaded.model(loaded.model.embed(torch.tensor([[5] * 81]), None), torch.arange(81)[None],
                     attention_bias(torch.zeros(1, dtype=torch.long), 0, 81, 81, torch.float32), [1.0])


# ---- loading: layouts, key map, errors ---------------------------------------------------------------

@pytest.mark.parametrize("sam_prefix", ["model.vision_tower_2.", "model.vision_tower."])
@pytest.mark.parametrize("with_lm_head", [True, False])
def test_both_sam_prefixes_and_a_tied_head_with_or_without_its_tensor(tmp_path, sam_prefix, with_lm_head):
    directory = make_tiny_checkpoint(tmp_path / "ckpt", sam_prefix=sam_prefix, with_lm_head=with_lm_head)
    loaded = load_directory(directory, CPU, torch.float32)
    assert loaded.model.lm_head.weight is loaded.model.decoder.embed_tokens.weight


def test_an_untied_head_is_read_from_the_file(tmp_path):
    config = tiny_opt_config(tie=False)
    directory = make_tiny_checkpoint(tmp_path / "untied", config)
    state = torch.load(directory / "pytorch_model.bin", weights_only=True)
    loaded = load_directory(directory, CPU, torch.float32)
    assert loaded.model.lm_head.weight is not loaded.model.decoder.embed_tokens.weight
    torch.testing.assert_close(loaded.model.lm_head.weight, state["lm_head.weight"])
    del state["lm_head.weight"]
    torch.save(state, directory / "pytorch_model.bin")
    with pytest.raises(WeightsError, match="missing tensor.*lm_head.weight"):
        load_directory(directory, CPU, torch.float32)


def test_key_map_at_real_size_on_meta():
    config = preset("vary-tiny")
    model = build_on_meta(config)
    ours = {k: v.shape for k, v in model.state_dict().items() if k not in model.tied_keys}
    # The original's names: transformers' OPTForCausalLM for the decoder (varyOPTForCausalLM subclasses
    # it), the SAM tensors under `model.vision_tower_2.`, the projector under `model.`.
    with torch.device("meta"):
        opt = OPTForCausalLM(OPTConfig(vocab_size=50268, hidden_size=768, num_hidden_layers=12, ffn_dim=3072,
                                       num_attention_heads=12, max_position_embeddings=2048))
    original = {k: v for k, v in opt.state_dict().items()}
    original.update(to_release_state_dict({k: v for k, v in model.state_dict().items()
                                            if k.startswith(("vision_tower_high.", "mm_projector."))}))
    assert len([k for k in original if k.startswith("model.vision_tower_2.")]) == 179
    renamed, unknown = convert_state_dict(original)
    assert not unknown
    renamed.pop("lm_head.weight")  # tied: the loader reads the embedding only
    assert {k: v.shape for k, v in renamed.items()} == ours
    assert ours["decoder.embed_tokens.weight"] == (50268, 768)
    assert ours["decoder.embed_positions.weight"] == (2050, 768)  # OPT's offset of 2
    assert ours["mm_projector.weight"] == (768, 1024)
    assert sum(v.numel() for v in ours.values()) > 200e6


def test_one_key_table_serves_both_families():
    families = {family for _, _, fams in KEY_TABLE for family in fams}
    assert families == {"qwen", "tiny", "got-hf", "got-original"}
    # Every SAM row loads under each release's prefix and saves under the family's own.
    for prefix in SAM_PREFIXES:
        assert to_ours(f"{prefix}.blocks.3.norm1.weight") == "vision_tower_high.layers.3.layer_norm1.weight"
    assert to_original("vision_tower_high.layers.3.layer_norm1.weight", TINY) == (
        "model.vision_tower_2.blocks.3.norm1.weight", None)
    assert to_original("vision_tower_high.layers.3.layer_norm1.weight", "qwen") == (
        "transformer.vision_tower_high.blocks.3.norm1.weight", None)
    assert to_original("vision_tower_high.layers.3.layer_norm1.weight", "got-original") == (
        "model.vision_tower_high.blocks.3.norm1.weight", None)


def test_key_table_rows_round_trip_in_both_directions():
    sample = {"n": "7", "wb": "bias", "rest": "a.b.weight", "attn_or_mlp": "mlp", "net": "net_3",
              "projector": "mm_projector_vary", "buffer": "masked_bias", "qkv": "k"}
    for original, ours, families in KEY_TABLE:
        for family in families:
            sam = {"qwen": "transformer.vision_tower_high", "tiny": "model.vision_tower_2",
                   "got-original": "model.vision_tower_high", "got-hf": ""}[family]
            name = original.format(**sample, sam=sam)
            if ours is None:
                assert to_ours(name) is None
                continue
            loaded = to_ours(name)
            expected = ours.replace("{qkv}", "\x00").format(**sample).replace("\x00", "{qkv}")
            assert loaded == expected, original
            saved, which = to_original(loaded.replace("{qkv}", "k"), family)
            assert saved == name and which == ("k" if "{qkv}" in ours else None)


def test_tokenizer_files_missing_or_foreign(tmp_path, tiny_opt_checkpoint):
    directory = tmp_path / "ckpt"
    shutil.copytree(tiny_opt_checkpoint, directory)
    (directory / "merges.txt").unlink()
    with pytest.raises(WeightsError, match="no merges.txt"):
        load_directory(directory, CPU, torch.float32)
    shutil.copy(tiny_opt_checkpoint / "merges.txt", directory / "merges.txt")
    (directory / "added_tokens.json").write_text(json.dumps({IMAGE_TOKENS[0]: 999}))
    with pytest.raises(WeightsError, match="image tokens"):
        load_directory(directory, CPU, torch.float32)
    n = len(tiny_bpe()[0])
    swapped = {IMAGE_TOKENS[0]: n + 1, IMAGE_TOKENS[1]: n, IMAGE_TOKENS[2]: n + 2}
    (directory / "added_tokens.json").write_text(json.dumps(swapped))
    with pytest.raises(WeightsError, match="does not belong to this model"):
        load_directory(directory, CPU, torch.float32)


# ---- the same tests for both families: shared loader, errors, LoadedModel, generate -------------------

def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return torch.load(directory / "pytorch_model.bin", weights_only=True)


def test_missing_and_unexpected_tensors_are_named(tmp_path, both_families):
    directory = tmp_path / "ckpt"
    shutil.copytree(both_families, directory)
    state = _weights(directory)
    victim = next(k for k in state if "blocks.1.attn.qkv.weight" in k)
    state.pop(victim)
    state["model.decoder.extra.weight"] = torch.zeros(1)
    torch.save(state, directory / "pytorch_model.bin")
    with pytest.raises(WeightsError, match=r"1 missing tensor.*vision_tower_high\.layers\.1\.attn\.qkv\.weight"
                                           r".*unexpected tensor.*extra\.weight"):
        load_directory(directory, CPU, torch.float32)


def test_a_wrong_shape_is_named(tmp_path, both_families):
    directory = tmp_path / "ckpt"
    shutil.copytree(both_families, directory)
    state = _weights(directory)
    key = next(k for k in state if k.endswith("net_3.weight"))
    state[key] = state[key][:, :-1]
    torch.save(state, directory / "pytorch_model.bin")
    with pytest.raises(WeightsError, match="vision_tower_high.net_3.weight has shape"):
        load_directory(directory, CPU, torch.float32)


def test_loaded_model_runs_a_page_end_to_end(both_families, page_image):
    loaded = load_directory(both_families, CPU, torch.float32)
    ids = loaded.prompt_ids("ocr")
    features = loaded.encode_pages([load_image(page_image)] * 2)
    assert features.shape == (2, loaded.config.image_token_len, loaded.model.embed_tokens.embedding_dim)
    results = decode(loaded.model, [ids, ids], features, GenerationConfig(max_new_tokens=6), loaded.stop_ids)
    assert results[0].token_ids == results[1].token_ids and len(results[0].token_ids) == 6
    assert isinstance(loaded.tokenizer.decode(results[0].token_ids), str)


def test_image_token_mismatch_raises_for_both(both_families, page_image):
    loaded = load_directory(both_families, CPU, torch.float32)
    ids = loaded.prompt_ids("ocr")
    pad = loaded.config.im_patch_token
    short = ids[:ids.index(pad)] + ids[ids.index(pad) + 1:]
    features = loaded.encode_pages([load_image(page_image)])
    with pytest.raises(PromptError):
        loaded.model.embed(torch.tensor([short]), features)
