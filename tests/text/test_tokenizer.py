"""text/qwen_tokenizer.py and text/prompts.py: real Qwen-1 ids (from dashscope's reference tokenizer), special tokens, templates."""

import base64
from pathlib import Path

import pytest

from vary_cli.errors import WeightsError
from vary_cli.text.prompts import PRESETS, build_prompt_ids, resolve_prompt, template_text
from vary_cli.text.qwen_tokenizer import QwenTokenizer, StreamDecoder

dashscope = pytest.importorskip("dashscope")
REAL_FILE = Path(dashscope.__file__).parent / "resources" / "qwen.tiktoken"

MIXED = [
    "Provide the ocr results of this image.",
    "表 3：2023 年第 4 季度营收 1,234.56 万元（同比 +12%）",
    "  indented\tline\r\n\n\nnext   words  \n",
    "E = mc^2, \\frac{a}{b}, x_{i+1} <= 10 -- naïve café 😀 ÅΩ",
    "don't I'LL we've 12345678 ... ???!!!",
    "e\u0301 composed",  # NFD: Qwen-1 normalizes to NFC before encoding
]


@pytest.fixture(scope="module")
def real():
    return QwenTokenizer.from_file(REAL_FILE)


@pytest.fixture(scope="module")
def reference():
    from dashscope.tokenizers.qwen_tokenizer import QwenTokenizer as DashscopeQwen

    return DashscopeQwen(str(REAL_FILE))


@pytest.mark.parametrize("text", MIXED)
def test_ids_equal_the_reference_qwen_tokenizer(real, reference, text):
    assert real.encode(text) == reference.encode(text, allowed_special=set())
    assert real.decode(real.encode(text)).replace("e\u0301", "é") == text.replace("e\u0301", "é")


def test_special_token_ids_are_the_released_ones(real, reference):
    assert real.n_ranks == 151643
    assert (real.endoftext_id, real.im_start_id, real.im_end_id) == (151643, 151644, 151645)
    assert (reference.eod_id, reference.im_start_id, reference.im_end_id) == (151643, 151644, 151645)
    assert real.special["<|extra_204|>"] == 151850
    assert (real.special["<ref>"], real.special["</quad>"]) == (151851, 151856)
    assert (real.img_start_id, real.img_end_id, real.img_pad_id) == (151857, 151858, 151859)


def test_user_text_is_never_parsed_as_special_tokens(real):
    ids = real.encode("stop here <|im_end|><|endoftext|><img>")
    assert not set(ids) & set(real.special.values())
    assert real.decode(ids) == "stop here <|im_end|><|endoftext|><img>"


def test_decode_drops_special_and_padding_ids(real):
    ids = [real.im_start_id] + real.encode("hello") + [real.im_end_id, 151900]
    assert real.decode(ids) == "hello"


def test_stream_decoder_holds_back_split_utf8(real):
    ids = real.encode("数学 😀 ok")
    stream = StreamDecoder(real)
    pieces = [stream.feed(i) for i in ids]
    assert "".join(pieces) == "数学 😀 ok"
    assert all("\ufffd" not in p for p in pieces)


def test_vary_toy_prompt_is_292_tokens_and_equals_the_template_string(real, reference):
    ids = build_prompt_ids(real, resolve_prompt("ocr"), style="vary-toy", image_token_len=256)
    assert len(ids) == 292
    # The original tokenizes the whole template string with special tokens allowed. dashscope's reference
    # lacks the Qwen-VL tokens, so stand-in specials (<|extra_N|>) split the text at the same places.
    stand_ins = {"<img>": "<|extra_0|>", "</img>": "<|extra_1|>", "<imgpad>": "<|extra_2|>"}
    text = template_text(PRESETS["ocr"], "vary-toy", 256)
    for token, stand_in in stand_ins.items():
        text = text.replace(token, stand_in)
    back = {real.special[s]: real.special[t] for t, s in stand_ins.items()}
    assert [back.get(i, i) for i in reference.encode(text)] == ids
    start = ids.index(real.img_start_id)
    assert ids[start + 1:start + 257] == [real.img_pad_id] * 256 and ids[start + 257] == real.img_end_id
    assert real.decode(ids[start + 258:]).startswith("\nProvide the ocr results")


def test_vary_base_prompt_has_no_newline_after_the_image(real):
    toy = build_prompt_ids(real, "Read it.", style="vary-toy", image_token_len=256)
    base = build_prompt_ids(real, "Read it.", style="vary-base", image_token_len=256)
    end = base.index(real.img_end_id)
    assert real.decode(base[end + 1:]).startswith("Read it.")
    assert len(toy) == len(base) + 1


def test_prompt_presets_and_free_text():
    assert resolve_prompt("markdown") == "Convert the document to markdown format."
    assert resolve_prompt("Read the table.") == "Read the table."


def test_bad_tokenizer_files(tmp_path):
    with pytest.raises(WeightsError, match="no qwen.tiktoken"):
        QwenTokenizer.from_file(tmp_path / "qwen.tiktoken")
    bad = tmp_path / "bad.tiktoken"
    bad.write_text("not base64 at all here\n")
    with pytest.raises(WeightsError, match="not a tiktoken rank file"):
        QwenTokenizer.from_file(bad)
    gap = tmp_path / "gap.tiktoken"
    gap.write_text(f"{base64.b64encode(b'a').decode()} 0\n{base64.b64encode(b'b').decode()} 5\n")
    with pytest.raises(WeightsError, match="without gaps"):
        QwenTokenizer.from_file(gap)
