"""models/vary_qwen.py + the engine (tests/engine_util.decode) against the independent reference of the spec's formulas (tests/reference_vary.py).

Everything runs in float64 so that any difference is a difference of function, not of rounding. The
tiny checkpoints are loaded through the user's path (`load_directory`), so these tests also cover the
key table, the fused c_attn split and the w1/w2 mapping.
"""

from pathlib import Path

import pytest
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

import reference_vary as ref
from conftest import tiny_config
from vary_cli.models.checkpoint import load_directory, read_config
from vary_cli.engine.config import GenerationConfig
from vary_cli.errors import PromptError
from engine_util import decode
from vary_cli.models.vary_qwen import attention_bias, check_image_tokens, ntk_alpha
from vary_cli.models.preprocess import load_image, preprocess_page

F64 = torch.float64


def release_state(directory: Path) -> dict[str, torch.Tensor]:
    state = torch.load(directory / "pytorch_model.bin", weights_only=True)
    return {k: v.to(F64) for k, v in state.items()}


def reference_clip(state, config):
    spec = config.clip
    model = CLIPVisionModel(CLIPVisionConfig(
        hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size, num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads, image_size=spec.image_size, patch_size=spec.patch_size,
        hidden_act="quick_gelu", layer_norm_eps=1e-5, attn_implementation="eager"))
    # transformers 5's CLIPVisionModel has no `vision_model.` level any more; 4.x (the original's) had.
    prefix = "transformer.vision_tower.vision_model."
    model.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, strict=True)
    return model.to(F64).eval()


@pytest.fixture(scope="module", params=["fits", "beyond_seq_length"])
def case(request, tiny_checkpoint, tiny_long_checkpoint, page_image):
    directory = tiny_checkpoint if request.param == "fits" else tiny_long_checkpoint
    loaded = load_directory(directory, torch.device("cpu"), F64)
    state = release_state(directory)
    page = preprocess_page(load_image(page_image), loaded.config)
    return loaded, state, page.clip[None].to(F64), page.sam[None].to(F64)


def test_the_long_case_really_exceeds_seq_length(tiny_long_checkpoint):
    config = read_config(tiny_long_checkpoint)
    loaded = load_directory(tiny_long_checkpoint, torch.device("cpu"), torch.float32)
    n = len(loaded.prompt_ids("ocr"))
    assert n > config.lm.seq_length and ntk_alpha(n, config.lm.seq_length) > 1


def test_ntk_alpha_matches_the_spec_example():
    assert ntk_alpha(292, 128) == 7
    assert ntk_alpha(292, 8192) == 1
    assert ntk_alpha(128, 128) == 1 and ntk_alpha(129, 128) == 3


def test_sam_vocabulary_equals_the_reference(case):
    loaded, state, _, sam = case
    with torch.no_grad():
        ours = loaded.model.vision_tower_high(sam)
    expected = ref.sam_features(sam, state, loaded.config.sam)
    assert ours.shape == (1, loaded.config.image_token_len, loaded.config.sam.feature_dim)
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-10)


def test_image_features_equal_the_reference(case):
    loaded, state, clip, sam = case
    with torch.no_grad():
        ours = loaded.model.encode_images(clip, sam)
        expected = ref.image_features(reference_clip(state, loaded.config), clip, sam, state, loaded.config)
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-10)


def test_prefill_logits_equal_the_reference(case):
    loaded, state, clip, sam = case
    model, config = loaded.model, loaded.config
    ids = loaded.prompt_ids("ocr")
    with torch.no_grad():
        features = model.encode_images(clip, sam)
        embeds = model.embed(torch.tensor([ids]), features)
        positions = torch.arange(len(ids))[None]
        bias = attention_bias(torch.zeros(1, dtype=torch.long), 0, len(ids), len(ids), F64)
        logits = model(embeds, positions, bias, model.prompt_alphas([len(ids)]))[0]
    alpha = ntk_alpha(len(ids), config.lm.seq_length)
    expected_embeds = ref.merged_embeddings(ids, features[0], state, config)
    torch.testing.assert_close(embeds[0], expected_embeds)
    expected = ref.qwen1_hidden(expected_embeds, state, config.lm, alpha) @ state["lm_head.weight"].T
    torch.testing.assert_close(logits, expected, rtol=1e-9, atol=1e-9)  # same features in: float64-exact


def test_greedy_tokens_equal_the_reference(case):
    loaded, state, clip, sam = case
    model, tokenizer = loaded.model, loaded.tokenizer
    ids = loaded.prompt_ids("ocr")
    stops = {tokenizer.im_end_id, tokenizer.endoftext_id}
    with torch.no_grad():
        features = model.encode_images(clip, sam)
    (ours,) = decode(model, [ids], features, GenerationConfig(max_new_tokens=12), stops)
    expected = ref.greedy(ids, features[0], state, loaded.config, 12, stops)
    assert ours.token_ids == expected
    assert len(set(expected)) > 3, "random weights should not collapse to one token"


def test_a_batch_gives_what_each_prompt_gives_alone(tiny_long_checkpoint, page_image):
    loaded = load_directory(tiny_long_checkpoint, torch.device("cpu"), torch.float32)
    model, tokenizer = loaded.model, loaded.tokenizer
    prompts = [loaded.prompt_ids(p) for p in ("ocr", "Read every word, please, and the numbers too.", "x")]
    page = preprocess_page(load_image(page_image), loaded.config)
    stops = {tokenizer.im_end_id, tokenizer.endoftext_id}
    gen = GenerationConfig(max_new_tokens=10)
    with torch.no_grad():
        features = model.encode_images(page.clip[None], page.sam[None])
    alone = [decode(model, [p], features, gen, stops)[0].token_ids for p in prompts]
    batch = decode(model, prompts, features.expand(3, -1, -1), gen, stops)
    assert [r.token_ids for r in batch] == alone


def test_image_token_checks_raise_prompt_errors():
    config = tiny_config()
    s, e, p = config.im_start_token, config.im_end_token, config.im_patch_token
    good = [1, s] + [p] * 16 + [e, 2]
    check_image_tokens(torch.tensor([good]), config, 16)
    for bad in ([1, s] + [p] * 15 + [e, 2, 3],  # too few pads
                [1, s] + [p] * 16 + [2, 3],  # no </img>
                [1] + [p] * 16 + [e, 2, 3],  # no <img>
                [1, s] + [p] * 16 + [e, s, e]):  # two images
        with pytest.raises(PromptError):
            check_image_tokens(torch.tensor([bad]), config, 16)


def test_each_release_preprocesses_the_sam_branch_as_its_own_demo(page_image):
    from vary_cli.models.preprocess import linear_imagenet_pixels, sam_pixels

    image = load_image(page_image)
    toy, base = tiny_config(prompt_style="vary-toy"), tiny_config(prompt_style="vary-base")
    # Vary-toy's demo: BlipImageEvalProcessor; Vary-base's (Vary repo, run_qwen_vary.py): test_transform.
    assert torch.equal(preprocess_page(image, toy).sam, sam_pixels(image, toy.sam))
    assert torch.equal(preprocess_page(image, base).sam, linear_imagenet_pixels(image, base.sam))
    assert torch.equal(preprocess_page(image, base).clip, preprocess_page(image, toy).clip)
