"""The metrics against golden values computed once with the reference libraries (nltk 3.10, rapidfuzz, jieba).

Each golden was printed by calling the reference function itself (`sentence_bleu`, `meteor_score` with WordNet
3.0, `nltk.metrics.precision/recall/f_measure`, `nltk.edit_distance`, `jieba.lcut`) on the pair shown.
"""

import random

import pytest

from vary_cli.eval.metrics import (anls, bleu, edit_distance, meteor, relaxed_accuracy, relaxed_correctness,
                                   set_scores)
from vary_cli.eval.protocols import PROTOCOLS, get_protocol
from vary_cli.eval.score import page_metrics
from vary_cli.eval.tokens import tokenize_pair
from vary_cli.eval.wordnet import LEXNAMES, ensure_wordnet, lexnames_text

EN_PRED = "The quick brown fox jumps over the lazy dog"
EN_GT = "The quick brown fox jumped over the lazy dog ."
ZH_PRED = "我们今天去公园玩，天气很好。"
ZH_GT = "我们明天去公园玩，天气非常好。"


@pytest.fixture(scope="module")
def wordnet():
    root, reason = ensure_wordnet()
    if reason:
        pytest.skip(f"needs Debian's wordnet-base + wordnet-sense-index: {reason}")
    return root


def test_bleu_of_a_three_token_exact_match_has_no_4_grams():
    # nltk without smoothing: each empty n-gram order counts as sys.float_info.min -> (2.2e-308)^(1/4).
    assert bleu(["a", "b", "c"], ["a", "b", "c"]) == 1.2213386697554703e-77


def test_meteor_of_a_perfect_ten_token_match(wordnet):
    assert meteor(list("abcdefghij"), list("abcdefghij")) == pytest.approx(0.9995, abs=1e-12)


def test_meteor_uses_wordnet_synonyms_and_stems(wordnet):
    hyp, ref = "a cat was sitting on the rug".split(), "the cat sat on the mat".split()
    assert meteor(hyp, ref) == pytest.approx(0.4189435336976321, abs=1e-12)
    assert bleu(hyp, ref) == pytest.approx(7.711523862191631e-155, rel=1e-9)


def test_english_page_golden(wordnet):
    values = page_metrics((EN_PRED, EN_GT, "jieba", True))
    assert values == pytest.approx({"edit_distance": 0.08695652173913043, "precision": 0.8888888888888888,
                                    "recall": 0.8, "f1": 0.8421052631578947, "bleu": 0.5341735956899847,
                                    "meteor": 0.9084673899488716}, abs=1e-12)


def test_swapping_prediction_and_truth_trades_precision_and_recall_only(wordnet):
    right = page_metrics((EN_PRED, EN_GT, "jieba", True))
    swapped = page_metrics((EN_GT, EN_PRED, "jieba", True))
    assert swapped["precision"] == right["recall"] and swapped["recall"] == right["precision"]
    assert swapped["f1"] == pytest.approx(right["f1"]) and swapped["edit_distance"] == right["edit_distance"]
    # BLEU and METEOR are not symmetric: the published (swapped) numbers score the ground truth.
    assert swapped["bleu"] == pytest.approx(0.5253819788848316, abs=1e-12)
    assert swapped["meteor"] == pytest.approx(0.9883326549993218, abs=1e-12)


def test_chinese_goes_through_jieba_on_both_strings(wordnet):
    pred_tokens, gt_tokens = tokenize_pair(ZH_PRED, ZH_GT, "jieba")
    assert pred_tokens == ["我们", "今天", "去", "公园", "玩", "，", "天气", "很", "好", "。"]
    assert gt_tokens == ["我们", "明天", "去", "公园", "玩", "，", "天气", "非常", "好", "。"]
    values = page_metrics((ZH_PRED, ZH_GT, "jieba", True))
    assert values == pytest.approx({"edit_distance": 0.2, "precision": 0.8, "recall": 0.8, "f1": 0.8,
                                    "bleu": 0.4671379777282001, "meteor": 0.7789062500000001}, abs=1e-12)
    # nougat splits on whitespace only: each Chinese sentence is one token.
    assert tokenize_pair(ZH_PRED, ZH_GT, "whitespace") == ([ZH_PRED], [ZH_GT])
    # Either side holding Chinese switches both to jieba (Fox/GOT's rule).
    assert tokenize_pair("hello world", "你好", "jieba")[0] == ["hello", " ", "world"]


def test_got_scene_takes_one_token_per_character_spaces_included():
    assert tokenize_pair("a b", "ab", "chars") == (["a", " ", "b"], ["a", "b"])


def test_set_scores_match_nltk_on_random_pairs():
    from nltk.metrics import f_measure, precision, recall

    rng = random.Random(0)
    assert set_scores("a b c d e".split(), "a b x".split()) == pytest.approx((0.4, 2 / 3, 0.5))
    for _ in range(200):
        pred = [rng.choice("abcdefgh") for _ in range(rng.randint(1, 8))]
        gt = [rng.choice("abcdefgh") for _ in range(rng.randint(1, 8))]
        ref, test = set(gt), set(pred)
        assert set_scores(pred, gt) == pytest.approx((precision(ref, test), recall(ref, test), f_measure(ref, test)))
    assert set_scores([], ["a"]) == (0.0, 0.0, 0.0)  # nltk: None, None, None


def test_edit_distance_is_nltks_over_unicode_characters():
    import nltk

    rng = random.Random(1)
    for _ in range(100):
        a = "".join(rng.choice("ab cé中") for _ in range(rng.randint(0, 12)))
        b = "".join(rng.choice("ab cé中") for _ in range(rng.randint(1, 12)))
        assert edit_distance(a, b) == pytest.approx(nltk.edit_distance(a, b) / max(len(a), len(b)))
    assert edit_distance("", "") == 0.0 and edit_distance("", "abc") == 1.0


def test_anls_as_the_official_docvqa_script():
    assert anls("new  york ", ["New York"]) == 1.0
    # The distance is taken on normalized strings but divided by the unnormalized length (10, not 7 or 8).
    assert anls("new yrk   ", ["New York"]) == pytest.approx(0.9)
    assert anls("Denver", ["Denver Broncos", "Denver"]) == 1.0  # best over the answers
    assert anls("abcdef", ["abcxyz"]) == pytest.approx(0.5)  # 1 - 3/6 = 0.5 is kept
    assert anls("abcdef", ["abwxyz"]) == 0.0  # 1 - 4/6 < 0.5 -> 0


def test_relaxed_accuracy_as_pix2struct():
    assert relaxed_correctness("100", "95.2")  # within 5%
    assert not relaxed_correctness("100", "94.9")
    assert not relaxed_correctness("0", "0.0")  # a zero target is compared as a string
    assert relaxed_correctness("12%", "0.12") and relaxed_correctness("Yes", "yes")
    assert relaxed_accuracy("95.2", ["100"]) == 1.0 and relaxed_accuracy("0.0", ["0"]) == 0.0
    assert relaxed_accuracy("7", ["x", "7"]) == 1.0


def test_protocols_skip_as_their_scripts_do():
    assert get_protocol("nougat").skip_reason("abc", "abcdef") is not None  # < 4 characters
    assert get_protocol("nougat").skip_reason("abcd", "abcd") is None
    assert get_protocol("got").skip_reason("", "text") is not None  # GOT drops empty predictions
    assert get_protocol("fox").skip_reason("", "text") is None  # Fox scores every page ...
    assert get_protocol("fox").skip_reason("", "") is not None  # ... but one it cannot (division by zero)
    assert get_protocol("got").skip_reason(" ", "text") is None  # GOT's length rule counts a space
    assert get_protocol("got-scene").skip_reason(" ", " ") is None  # a space is a character token
    assert set(PROTOCOLS) == {"fox", "got", "got-scene", "nougat"}
    with pytest.raises(ValueError, match="choose one of"):
        get_protocol("marker")


def test_lexnames_is_wordnets_fixed_list():
    lines = lexnames_text().splitlines()
    assert len(lines) == len(LEXNAMES) == 45
    assert lines[0] == "00 adj.all 3" and lines[3] == "03 noun.Tops 1" and lines[29] == "29 verb.body 2"
    assert lines[-1] == "44 adj.ppl 3"


def test_missing_wordnet_is_a_reason_not_a_crash(tmp_path, monkeypatch):
    import nltk

    import vary_cli.eval.wordnet as wn

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nothing")])
    monkeypatch.setattr(wn, "SYSTEM_DIRS", ())
    monkeypatch.delenv("WNSEARCHDIR", raising=False)
    root, reason = wn.ensure_wordnet(tmp_path / "data")
    assert root is None and reason.startswith("METEOR unavailable: WordNet 3.0 not found")
