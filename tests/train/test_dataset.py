"""train/dataset.py: data file parsing and validation, the template and label mask of training.md §3, batching."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tiny_vocab import tiny_id, write_tiny_tiktoken
from train_fixtures import write_data
from vary_cli.train.dataset import IGNORE_INDEX, check_images, collate, encode_all, encode_conversation, ocr_question, \
    read_samples
from vary_cli.errors import InputError
from vary_cli.text.prompts import build_prompt_ids
from vary_cli.text.qwen_tokenizer import QwenTokenizer


@pytest.fixture(scope="module")
def real_tokenizer():
    dashscope = pytest.importorskip("dashscope")
    return QwenTokenizer.from_file(Path(dashscope.__file__).parent / "resources" / "qwen.tiktoken")


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory):
    return QwenTokenizer.from_file(write_tiny_tiktoken(tmp_path_factory.mktemp("tok") / "qwen.tiktoken"))


def test_worked_example_labels(real_tokenizer):
    """training.md §3: 284 masked tokens, then "Hi" (13048) and <|im_end|> (151645)."""
    turns = (("human", "<image>\nOCR"), ("gpt", "Hi"))
    encoded = encode_conversation(real_tokenizer, turns, image_token_len=256, max_length=4096)
    assert len(encoded.input_ids) == 286
    assert encoded.labels == [IGNORE_INDEX] * 284 + [13048, 151645]
    assert encoded.input_ids[-2:] == [13048, 151645]
    assert encoded.input_ids[:17][0] == 151644 and encoded.input_ids[16] == 151645  # the 17-token system block
    assert encoded.input_ids[17 + 3 + 258:17 + 3 + 258 + 2] == [198, 93495]  # "\nOCR"
    # The training prefix is exactly the inference prompt of vary.md §8.
    assert encoded.input_ids[:284] == build_prompt_ids(real_tokenizer, "OCR", style="vary-toy", image_token_len=256)


def test_answer_with_leading_newline_is_masked_like_the_original(real_tokenizer):
    """The original masks len(tokens of "<|im_start|>assistant\\n") tokens of the jointly tokenized
    text; when the answer starts with a newline, "\\n\\n" is one token and is masked with the header."""
    turns = (("human", "<image>\nOCR"), ("gpt", "\nHi"))
    encoded = encode_conversation(real_tokenizer, turns, image_token_len=256, max_length=4096)
    joint = real_tokenizer.encode("assistant\n\nHi")
    assert encoded.input_ids[-1 - len(joint):-1] == joint
    kept = [label for label in encoded.labels if label != IGNORE_INDEX]
    assert kept == joint[2:] + [151645]


def test_multi_turn_mask_keeps_every_answer_and_its_im_end(tiny_tokenizer):
    t = tiny_tokenizer
    turns = (("human", "<image>\nQ1"), ("gpt", "A1"), ("human", "Q2"), ("gpt", "A22"))
    encoded = encode_conversation(t, turns, image_token_len=16, max_length=1000)
    ids, labels = encoded.input_ids, encoded.labels
    assert len(ids) == len(labels)
    kept = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
    assert [ids[i] for i in kept] == t.encode("A1") + [t.im_end_id] + t.encode("A22") + [t.im_end_id]
    assert all(labels[i] == ids[i] for i in kept)
    # The second user turn, including its <|im_end|>, and both assistant headers are masked.
    text = t.decode(ids)
    assert text.count("user\n") == 2 and text.count("assistant\n") == 2
    assert ids.count(t.img_pad_id) == 16 and ids.count(t.img_start_id) == 1


def test_truncation_cuts_the_tail_and_is_counted(tiny_tokenizer, tiny_checkpoint):
    from vary_cli.models.checkpoint import read_config

    config = read_config(tiny_checkpoint)
    turns = (("human", "<image>\nQ"), ("gpt", "x" * 50))
    full = encode_conversation(tiny_tokenizer, turns, 16, max_length=10_000)
    cut = encode_conversation(tiny_tokenizer, turns, 16, max_length=len(full.input_ids) - 20)
    assert cut.truncated and not full.truncated
    assert cut.input_ids == full.input_ids[:-20] and cut.labels == full.labels[:-20]
    prefix = len(full.input_ids) - 52  # everything before the answer's 50 bytes, <|im_end|> and header
    samples = read_samples(write_data(Path(tiny_checkpoint).parent / "trunc", answers=("x" * 50,)))
    report = encode_all(samples, tiny_tokenizer, config, max_length=prefix)
    assert report.truncated == 1 and report.no_targets == 1 and report.warnings
    with pytest.raises(InputError, match=r"train.jsonl:1: the image tokens end after --max-length"):
        encode_all(samples, tiny_tokenizer, config, max_length=30)


def test_ocr_pairs_become_the_inference_conversation(tmp_path):
    path = write_data(tmp_path, answers=("hello",), pairs=True)
    (sample,) = read_samples(path, prompt_style="vary-toy")
    assert sample.turns == (("human", "<image>\nProvide the ocr results of this image."), ("gpt", "hello"))
    assert sample.image == tmp_path / "pages" / "0.png"
    (base,) = read_samples(path, prompt_style="vary-base")
    assert base.turns[0][1] == ocr_question("vary-base") == "<image>Provide the ocr results of this image."


def test_json_list_with_line_numbers_and_leading_gpt_dropped(tmp_path):
    items = [{"conversations": [{"from": "gpt", "value": "hi"}, {"from": "human", "value": "q"},
                                {"from": "gpt", "value": "a"}]},
             {"conversations": [{"from": "human", "value": "q"}, {"from": "human", "value": "a"}]}]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(items, indent=1))
    with pytest.raises(InputError, match=r"data\.json:18: turns must alternate"):
        read_samples(path)
    path.write_text(json.dumps(items[:1], indent=1))
    (sample,) = read_samples(path)
    assert sample.turns == (("human", "q"), ("gpt", "a")) and sample.image is None and sample.line == 2


@pytest.mark.parametrize("line, message", [
    ("{not json", r"bad\.jsonl:2: not valid JSON"),
    ('["a list"]', r"bad\.jsonl:2: a sample must be a JSON object"),
    ('{"image": "x.png"}', r"bad\.jsonl:2: a sample needs 'conversations'"),
    ('{"image": "x.png", "conversations": [{"from": "human", "value": "no placeholder"}, '
     '{"from": "gpt", "value": "a"}]}', r"bad\.jsonl:2: a sample with an image needs exactly one <image>"),
    ('{"conversations": [{"from": "human", "value": "<image> q"}, {"from": "gpt", "value": "a"}]}',
     r"bad\.jsonl:2: <image> appears but the sample has no 'image'"),
    ('{"conversations": [{"from": "human", "value": "q"}]}', r"bad\.jsonl:2: the conversation must end with a gpt"),
    ('{"conversations": [{"from": "robot", "value": "q"}]}', r"bad\.jsonl:2: turn 1 must be"),
])
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    good = json.dumps({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]})
    path = tmp_path / "bad.jsonl"
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(InputError, match=message):
        read_samples(path)


def test_missing_and_broken_images_are_listed_before_training(tmp_path):
    path = write_data(tmp_path, answers=("a", "b", "c"))
    (tmp_path / "pages" / "1.png").unlink()
    (tmp_path / "pages" / "2.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match=r"2 image\(s\) missing or unreadable: .*train\.jsonl:2: .*1\.png \(missing\)"
                                         r".*train\.jsonl:3: .*2\.png"):
        check_images(read_samples(path))


def test_collate_right_pads_with_endoftext_and_ignore_index():
    items = [{"input_ids": torch.tensor([1, 2, 3]), "labels": torch.tensor([-100, 2, 3]),
              "clip": torch.zeros(3, 4, 4), "sam": torch.zeros(3, 8, 8)},
             {"input_ids": torch.tensor([4]), "labels": torch.tensor([4]),
              "clip": torch.ones(3, 4, 4), "sam": torch.ones(3, 8, 8)}]
    batch = collate(items, pad_id=tiny_id(151643))
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, tiny_id(151643), tiny_id(151643)]]
    assert batch["labels"].tolist() == [[-100, 2, 3], [4, -100, -100]]
    assert batch["clip"].shape == (2, 3, 4, 4) and batch["sam"].shape == (2, 3, 8, 8)


def test_truncated_images_are_caught_before_training(tmp_path):
    path = write_data(tmp_path, answers=("a", "b"))
    image = tmp_path / "pages" / "1.png"
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])  # the header still parses
    with pytest.raises(InputError, match=r"1 image\(s\) missing or unreadable: .*train\.jsonl:2: .*truncated"):
        check_images(read_samples(path))


def test_json_list_line_numbers_stay_right_deep_into_a_long_list(tmp_path):
    item = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    bad = {"conversations": [{"from": "human", "value": "q"}]}
    path = tmp_path / "data.json"
    path.write_text(json.dumps([item] * 500 + [bad], indent=1))
    per_item = json.dumps(item, indent=1).count("\n") + 1
    with pytest.raises(InputError, match=rf"data\.json:{2 + 500 * per_item}: the conversation must end"):
        read_samples(path)
