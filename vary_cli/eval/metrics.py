"""The paper's metrics, one function each, computed as the reference scripts compute them.

| metric | definition (and the library that defines it) |
|---|---|
| edit distance | Levenshtein(pred, gt) / max(len(pred), len(gt)) over code points, unit costs (rapidfuzz; equals nltk.edit_distance) |
| precision / recall / F1 | nltk.metrics.scores on token *sets*: P = \\|S(gt) ∩ S(pred)\\| / \\|S(pred)\\|, R = ... / \\|S(gt)\\|, F1 0 when P or R is 0 |
| BLEU | nltk `sentence_bleu([gt_tokens], pred_tokens)`: 4-gram, uniform weights, no smoothing |
| METEOR | nltk `meteor_score([gt_tokens], pred_tokens)`, WordNet 3.0, alpha 0.9, beta 3, gamma 0.5 |
| ANLS | the official DocVQA script (see `anls`) |
| relaxed accuracy | pix2struct's `relaxed_correctness`, best over the answers |

Where a reference script would divide by zero or return None (an empty page), the value is defined here
instead: edit distance 0 when both strings are empty, and P/R/F1 0 when a token set is empty (GOT's
`get_value_or_zero`). `protocols.py` decides whether such pages are scored at all: a page with nothing on
either side never is, so a page that is scored and empty on one side is a miss on every metric.
"""

from __future__ import annotations

import warnings

from rapidfuzz.distance import Levenshtein


def edit_distance(pred: str, gt: str) -> float:
    """Normalized Levenshtein distance in [0, 1]; 0 for two empty strings."""
    longest = max(len(pred), len(gt))
    return Levenshtein.distance(pred, gt) / longest if longest else 0.0


def set_scores(pred_tokens: list[str], gt_tokens: list[str]) -> tuple[float, float, float]:
    """(precision, recall, F1) of the token sets with nltk.metrics.scores' semantics (alpha 0.5).

    nltk returns None for an empty set; that is 0.0 here.
    """
    pred_set, gt_set = set(pred_tokens), set(gt_tokens)
    common = len(pred_set & gt_set)
    precision = common / len(pred_set) if pred_set else 0.0
    recall = common / len(gt_set) if gt_set else 0.0
    if precision == 0 or recall == 0:
        return precision, recall, 0.0
    return precision, recall, 1.0 / (0.5 / precision + 0.5 / recall)


def bleu(pred_tokens: list[str], gt_tokens: list[str]) -> float:
    """nltk's sentence BLEU: one reference, 4-grams, uniform weights, no smoothing.

    Without smoothing a missing n-gram order contributes sys.float_info.min, so a 3-token exact match
    scores about 1.2e-77, as in every published table computed with nltk.
    """
    from nltk.translate.bleu_score import sentence_bleu

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nltk warns on every page without 4-gram overlap
        return float(sentence_bleu([gt_tokens], pred_tokens))


def meteor(pred_tokens: list[str], gt_tokens: list[str]) -> float:
    """nltk's METEOR with its defaults (alpha 0.9, beta 3, gamma 0.5, WordNet synonyms).

    Needs WordNet on nltk's data path first (`wordnet.ensure_wordnet`); raises LookupError otherwise.
    """
    from nltk.translate.meteor_score import meteor_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available" without OMW
        return float(meteor_score([gt_tokens], pred_tokens))


def anls(prediction: str, answers: list[str], threshold: float = 0.5) -> float:
    """ANLS of one question as the official DocVQA / InfographicVQA script computes it.

    Both strings are lowercased with whitespace stripped and collapsed before the Levenshtein distance,
    but the script divides by the length of the *unnormalized* strings (`len(answer.upper())`), so extra
    spaces in either string lower the distance. 1 - the smallest normalized distance over the answers,
    and 0 when that is below `threshold`.
    """
    if not answers:
        return 0.0
    detected = " ".join(prediction.strip().lower().split())
    values = []
    for answer in answers:
        expected = " ".join(answer.strip().lower().split())
        length = max(len(answer.upper()), len(prediction.upper()))
        values.append(Levenshtein.distance(expected, detected) / length if length else 0.0)
    score = 1.0 - min(values)
    return 0.0 if score < threshold else score


def _to_float(text: str) -> float | None:
    try:
        if text.endswith("%"):
            return float(text.rstrip("%")) / 100.0
        return float(text)
    except ValueError:
        return None


def relaxed_correctness(target: str, prediction: str, max_relative_change: float = 0.05) -> bool:
    """pix2struct's ChartQA rule: numbers within 5% of a non-zero target, else case-insensitive equality.

    `x%` is read as x/100. A target of 0 is compared as a string, so "0.0" against "0" is wrong.
    """
    prediction_float = _to_float(prediction)
    target_float = _to_float(target)
    if prediction_float is not None and target_float:
        return abs(prediction_float - target_float) / abs(target_float) <= max_relative_change
    return prediction.lower() == target.lower()


def relaxed_accuracy(prediction: str, answers: list[str]) -> float:
    """1.0 when the prediction is relaxed-correct for any answer (pix2struct's max over targets), else 0.0."""
    return float(any(relaxed_correctness(answer, prediction) for answer in answers))
