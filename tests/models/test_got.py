"""GOT-OCR2.0: both release layouts load through the one loader and match transformers' own model.

The reference is transformers' `GotOcr2ForConditionalGeneration` with `GotOcr2Processor`, loaded from the
tiny hf checkpoint; the original-layout checkpoint holds the same network under the original names and
files, so one reference serves both (conftest's `got_checkpoint` runs each test on each layout).
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from tiny_got import original_state_dict, page, special_ids

from vary_cli.errors import InputError, PromptError, WeightsError
from vary_cli.models.checkpoint import build_on_meta, load_directory, read_config
from vary_cli.models.config import preset
from vary_cli.models.keys import convert_state_dict
from vary_cli.models.loaded import PageOptions, got_box
from vary_cli.text.prompts import got_query
from vary_cli.text.qwen_tokenizer import QwenTokenizer

F64, CPU = torch.float64, torch.device("cpu")
TOKENS = 16  # image tokens per tile of the tiny network (the release's 256)


@pytest.fixture(scope="module")
def got64(got_checkpoints):
    return {layout: load_directory(directory, CPU, F64) for layout, directory in got_checkpoints.items()}


def processor_inputs(processor, image, **kwargs):
    return processor(image, return_tensors="pt", num_image_tokens=TOKENS, **kwargs)


def test_both_layouts_read_to_one_config(got_checkpoints, got_reference):
    hf, original = (read_config(got_checkpoints[k]) for k in ("hf", "original"))
    assert (hf.layout, original.layout) == ("hf", "original")
    # The original config.json has no vision section: its encoder sizes come from the weights' shapes.
    assert original.sam == hf.sam and original.lm == hf.lm
    vision = got_reference[0].config.vision_config
    assert hf.sam.global_attn_indexes == tuple(vision.global_attn_indexes) == (1,)
    assert (hf.sam.window_size, hf.sam.num_layers, hf.sam.num_heads) == (6, 3, 2)
    assert hf.image_token_len == TOKENS and hf.lm.tie_word_embeddings
    assert (hf.im_start_token, hf.im_end_token, hf.im_patch_token) == tuple(
        special_ids()[t] for t in ("<img>", "</img>", "<imgpad>"))


def test_loaded_model_ties_lm_head_and_reads_every_tensor(got_checkpoint):
    loaded = load_directory(got_checkpoint, CPU, torch.float32)
    model = loaded.model
    assert model.lm_head.weight is model.embed_tokens.weight
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])


def test_image_features_equal_transformers(got_checkpoint, got_reference):
    """The vision features (tiles included) equal transformers' `get_image_features` to 1e-5 in float32."""
    import copy

    reference, processor = got_reference
    reference = copy.deepcopy(reference).float()
    loaded = load_directory(got_checkpoint, CPU, torch.float32)
    image = page(150, 90)
    for crops in ("off", "auto"):
        options = PageOptions(crops=crops)
        inputs = processor_inputs(processor, image, crop_to_patches=crops == "auto")
        with torch.no_grad():
            expected = reference.model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output  # (P, 16, W)
        page_input, _ = loaded.with_options(options).prepare_page(image, "ocr")
        torch.testing.assert_close(page_input.pixels[0], inputs["pixel_values"], rtol=0, atol=0)
        features = loaded.with_options(options).encode_inputs([page_input])  # (1, P*16, W)
        assert features.shape == (1, expected.shape[0] * TOKENS, expected.shape[-1])
        torch.testing.assert_close(features[0], expected.reshape(-1, expected.shape[-1]), rtol=0, atol=1e-5)


@pytest.mark.parametrize("size", [(120, 160), (300, 64), (64, 64), (1000, 90)])
@pytest.mark.parametrize("crops", ["off", "auto", 3])
def test_pixels_and_prompt_ids_equal_the_processor(got_checkpoint, got_reference, size, crops):
    _, processor = got_reference
    loaded = load_directory(got_checkpoint, CPU, torch.float32).with_options(PageOptions(crops=crops))
    image = page(*size)
    kwargs = {} if crops == "off" else {"crop_to_patches": True, "max_patches": 12 if crops == "auto" else crops}
    for prompt, formatted in (("ocr", False), ("markdown", True), ("format", True)):
        inputs = processor_inputs(processor, image, format=formatted, **kwargs)
        page_input, ids = loaded.prepare_page(image, prompt)
        assert ids == inputs["input_ids"][0].tolist()
        assert torch.equal(page_input.pixels[0], inputs["pixel_values"])


@pytest.mark.parametrize("box,color", [((10, 20, 60, 80), None), (None, "red"), ((0, 0, 119, 159.5), "blue")])
def test_box_and_colour_prompts_equal_the_processor(got_checkpoint, got_reference, box, color):
    _, processor = got_reference
    loaded = load_directory(got_checkpoint, CPU, torch.float32)
    image = page(120, 160)
    options = PageOptions(box=box, color=color)
    _, ids = loaded.with_options(options).prepare_page(image, "ocr")
    kwargs = {"box": list(box)} if box else {}
    inputs = processor_inputs(processor, image, color=color, **kwargs)
    assert ids == inputs["input_ids"][0].tolist()


def test_queries_are_the_processors():
    assert got_query(False) == " OCR: "
    assert got_query(True) == " OCR with format: "
    assert got_query(False, color="red") == "[red]  OCR: "
    assert got_query(True, box=[1, 2, 3, 4], crops=True) == "[1, 2, 3, 4] OCR with format upon the patch reference: "
    # Box coordinates go to 0..1000 of the page, truncated.
    assert got_box(PageOptions(box=(10, 20, 60, 80)), 120, 160) == [83, 125, 500, 500]
    assert got_box(PageOptions(box=(0, 0, 120, 160)), 120, 160) == [0, 0, 1000, 1000]


def test_bad_boxes_colours_and_prompts_are_one_line_errors(got_checkpoints, tiny_checkpoint):
    with pytest.raises(InputError, match="x1 <= x2"):
        PageOptions(box=(50, 0, 10, 10))
    with pytest.raises(InputError, match="--color"):
        PageOptions(color="purple")
    with pytest.raises(InputError, match="--crops"):
        PageOptions(crops=0)
    loaded = load_directory(got_checkpoints["hf"], CPU, torch.float32)
    with pytest.raises(InputError, match="outside the 120x160 image"):
        loaded.with_options(PageOptions(box=(0, 0, 121, 20))).prepare_page(page(120, 160), "ocr")
    with pytest.raises(PromptError, match="--prompt ocr"):
        loaded.prepare_page(page(), "Convert the document to markdown format.")
    vary = load_directory(tiny_checkpoint, CPU, torch.float32)
    with pytest.raises(InputError, match="GOT-OCR2.0 options"):
        vary.with_options(PageOptions(crops="auto"))


TEXTS = ["\n [12, 34, 999, 1000] OCR with format upon the patch reference: ", "line 12345: GOT 100 250\n\n x",
         "表 3：2023 年 <|im_end|> naïve e\u0301", "  indented\tline\r\n\n\nnext  "]


def test_tokenizers_of_both_layouts_equal_transformers(got_checkpoints, got_reference):
    _, processor = got_reference
    hf = QwenTokenizer.from_tokenizer_json(got_checkpoints["hf"] / "tokenizer.json")
    loaded = load_directory(got_checkpoints["original"], CPU, torch.float32)
    for text in TEXTS:
        expected = processor.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        assert hf.encode(text) == loaded.tokenizer.encode(text) == expected
        assert hf.decode(expected) == processor.tokenizer.decode(expected, skip_special_tokens=True)
    # Digits go in runs of up to three, as transformers' converter splits them (Qwen-1 splits each digit).
    assert len(hf.encode("1000")) == 2


def test_real_vocabulary_tokenizes_as_transformers_converts_it():
    """The real qwen.tiktoken read with GOT's pattern gives the ids of the tokenizer.json transformers
    converts from it (the hf release's), e.g. for box prompts with multi-digit numbers."""
    dashscope = pytest.importorskip("dashscope")
    from pathlib import Path

    from tiny_got import hf_tokenizer

    from vary_cli.text.qwen_tokenizer import GOT_PATTERN

    real = Path(dashscope.__file__).parent / "resources" / "qwen.tiktoken"
    ours = QwenTokenizer.from_file(real, pattern=GOT_PATTERN, nfc=False)
    reference = hf_tokenizer(real)
    for text in TEXTS + ["[173, 48, 1000, 999] OCR: 3.14159 and 2024-09-03", "\\frac{a}{b} x_{i+1}"]:
        assert ours.encode(text) == reference(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    assert reference.convert_tokens_to_ids(["<img>", "</img>", "<imgpad>"]) == [151857, 151858, 151859]


def test_full_size_key_map_on_meta():
    """Both releases' names at full size (transformers' model on the meta device) map onto our model."""
    from transformers import GotOcr2ForConditionalGeneration

    config = preset("got-ocr2")
    with torch.device("meta"):
        reference = GotOcr2ForConditionalGeneration(config.to_hf())
    legacy = {k.replace("model.language_model.", "language_model.model.").replace("model.vision_tower.", "vision_tower.")
              .replace("model.multi_modal_projector.", "multi_modal_projector."): v
              for k, v in reference.state_dict().items() if k != "lm_head.weight"}
    ours = {k: tuple(v.shape) for k, v in build_on_meta(config).state_dict().items() if k != "lm_head.weight"}
    for release in (legacy, original_state_dict(legacy)):
        renamed, unknown = convert_state_dict(release)
        renamed.pop("lm_head.weight", None)  # the original's copy of the tied head
        assert not unknown and {k: tuple(v.shape) for k, v in renamed.items()} == ours
    assert ours["multi_modal_projector.conv_upsampler2.weight"] == (1024, 512, 3, 3)
    assert 550e6 < sum(torch.Size(s).numel() for s in ours.values()) < 600e6  # "580M parameters"


def test_original_sizes_come_from_the_weights(tmp_path, got_checkpoints):
    """A bigger encoder in the original layout (other window, blocks, heads) loads with its own sizes."""
    from safetensors.torch import load_file, save_file

    from tiny_got import random_reference, write_hf_release, write_original_release

    hf = write_hf_release(tmp_path / "hf", random_reference(seed=1, window=4, image_size=128))
    original = write_original_release(tmp_path / "original", hf)
    config = read_config(original)
    assert config.sam.window_size == 4 and config.sam.image_size == 128 and config.image_token_len == 64
    # A missing SAM tensor is named; a block numbering gap is refused.
    state = load_file(str(original / "model.safetensors"))
    state.pop("model.vision_tower_high.blocks.1.attn.rel_pos_h")
    save_file(state, str(original / "model.safetensors"))
    with pytest.raises(WeightsError, match="blocks.1.attn.rel_pos_h"):
        read_config(original)


def test_broken_got_checkpoints_are_weights_errors(tmp_path, got_checkpoints):
    hf = tmp_path / "hf"
    shutil.copytree(got_checkpoints["hf"], hf)
    (hf / "tokenizer.json").unlink()
    with pytest.raises(WeightsError, match="no tokenizer.json"):
        load_directory(hf, CPU, torch.float32)
    original = tmp_path / "original"
    shutil.copytree(got_checkpoints["original"], original)
    config = json.loads((original / "config.json").read_text())
    (original / "config.json").write_text(json.dumps(dict(config, image_token_len=20)))
    with pytest.raises(WeightsError, match="image_token_len 20"):
        load_directory(original, CPU, torch.float32)


def test_batch_sizing_counts_the_tiles(got_checkpoints):
    loaded = load_directory(got_checkpoints["hf"], CPU, torch.float32)
    one = loaded.longest_prompt("ocr")
    assert one == len(loaded.prompt_ids("ocr")) and loaded.most_tiles == 1
    tiled = loaded.with_options(PageOptions(crops=4))
    assert tiled.most_tiles == 5 and tiled.longest_prompt("ocr") == len(tiled.prompt_ids("ocr")) + 4 * TOKENS
    # The longest prompt is what a page cut into the most tiles gets.
    _, ids = tiled.prepare_page(page(400, 100), "ocr")
    assert len(ids) == tiled.longest_prompt("ocr")
