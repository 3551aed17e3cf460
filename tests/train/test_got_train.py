"""`vary train --sft` on GOT-OCR2.0: the loss equals transformers' on the same batch, what trains follows
the freezing flags, and the checkpoints load back in transformers' own GotOcr2ForConditionalGeneration."""

from __future__ import annotations

import copy

import pytest
import torch
from train_fixtures import fast_config, write_data

from vary_cli.errors import VaryError
from vary_cli.models.checkpoint import load_directory
from vary_cli.train.dataset import IGNORE_INDEX, TrainDataset, collate, read_samples
from vary_cli.train.got import batch_loss
from vary_cli.train.loop import run

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("got_data")
    write_data(directory, name="conversations.jsonl")
    return write_data(directory, pairs=True)


def test_loss_of_a_batch_equals_transformers(got_checkpoint, got_reference, data):
    """Our training loss (answer tokens only) equals GotOcr2ForConditionalGeneration's with the same labels."""
    loaded = load_directory(got_checkpoint, CPU, torch.float32)
    samples = read_samples(data, loaded.config.prompt_style)
    assert samples[0].turns[0][1] == "<image>\n OCR: "  # an OCR pair asks what `vary ocr` asks
    batch = collate([TrainDataset(samples, loaded.tokenizer, loaded.config, 256)[i] for i in range(3)],
                    loaded.tokenizer.endoftext_id)
    labels = batch["labels"]
    answer = [t for t, label in zip(batch["input_ids"][0].tolist(), labels[0].tolist()) if label != IGNORE_INDEX]
    assert loaded.tokenizer.decode(answer) == "alpha 12"  # the answer and its <|im_end|> are the targets
    total, count = batch_loss(loaded.model, batch["input_ids"], labels, batch["sam"])
    reference = copy.deepcopy(got_reference[0]).float()
    attention = (batch["input_ids"] != loaded.tokenizer.endoftext_id).long()
    with torch.no_grad():
        expected = reference(input_ids=batch["input_ids"], pixel_values=batch["sam"], attention_mask=attention,
                             labels=labels).loss
    torch.testing.assert_close(total / count, expected, rtol=0, atol=1e-5)


def _tensors(directory):
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


def test_sft_trains_projector_and_llm_and_saves_what_transformers_loads(got_checkpoints, got_reference, data,
                                                                        tmp_path):
    """Started from the original layout, saved in the hf one: transformers' model and processor load it and
    compute what our loader's model computes; the encoder and its convs did not move."""
    from transformers import GotOcr2ForConditionalGeneration, GotOcr2Processor

    from tiny_got import page

    result = run(fast_config(got_checkpoints["original"], data, tmp_path / "run", max_steps=2))
    checkpoint = result.checkpoint
    start, trained = _tensors(got_checkpoints["hf"]), _tensors(checkpoint)
    assert set(trained) == set(start)  # the hf release's names, no tied lm_head
    moved = {k for k in start if not torch.equal(start[k].float(), trained[k].float())}
    assert "multi_modal_projector.multimodal_projector.weight" in moved
    assert "language_model.model.layers.0.mlp.up_proj.weight" in moved
    assert not any(k.startswith("vision_tower.") or "conv_upsampler" in k for k in moved)

    reference = GotOcr2ForConditionalGeneration.from_pretrained(checkpoint, dtype=torch.float32).eval()
    processor = GotOcr2Processor.from_pretrained(checkpoint)
    inputs = processor(page(), return_tensors="pt", num_image_tokens=16)
    loaded = load_directory(checkpoint, CPU, torch.float32)
    page_input, ids = loaded.prepare_page(page(), "ocr")
    assert ids == inputs["input_ids"][0].tolist()
    with torch.no_grad():
        expected = reference(**inputs).logits[0, -1]
        embeds = loaded.model.embed(torch.tensor([ids]), loaded.encode_inputs([page_input]))
        from vary_cli.models.vary_qwen import attention_bias

        n = len(ids)
        logits = loaded.model(embeds, torch.arange(n)[None], attention_bias(torch.zeros(1, dtype=torch.long), 0, n, n,
                                                                              torch.float32), [1.0], None)[0, -1]
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)


def test_freezing_flags(got_checkpoints, data, tmp_path):
    start = _tensors(got_checkpoints["hf"])
    encoder = run(fast_config(got_checkpoints["hf"], data, tmp_path / "encoder", max_steps=1, train_encoder=True))
    moved = {k for k, v in _tensors(encoder.checkpoint).items() if not torch.equal(start[k].float(), v.float())}
    assert "vision_tower.layers.0.attn.qkv.weight" in moved and "multi_modal_projector.conv_upsampler1.weight" in moved
    frozen_lm = run(fast_config(got_checkpoints["hf"], data, tmp_path / "frozen", max_steps=1, freeze_lm=True))
    moved = {k for k, v in _tensors(frozen_lm.checkpoint).items() if not torch.equal(start[k].float(), v.float())}
    assert moved == {"multi_modal_projector.multimodal_projector.weight",
                     "multi_modal_projector.multimodal_projector.bias", "language_model.model.embed_tokens.weight"}


def test_stages_and_flags_that_do_not_fit_the_family(got_checkpoints, tiny_checkpoint, data, tmp_path):
    with pytest.raises(VaryError, match="--pretrain trains Vary-toy/Vary-base"):
        run(fast_config(got_checkpoints["hf"], data, tmp_path / "a", stage="pretrain"))
    with pytest.raises(VaryError, match="--train-encoder trains GOT-OCR2's encoder"):
        run(fast_config(tiny_checkpoint, data, tmp_path / "b", train_encoder=True))
    with pytest.raises(VaryError, match="--train-encoder applies to GOT-OCR2's --sft only"):
        fast_config(tiny_checkpoint, data, tmp_path / "c", stage="pretrain", train_encoder=True)
