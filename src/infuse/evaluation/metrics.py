"""Scoring: short answers (exact match, token F1), multiple choice by log-likelihood, bootstrap
intervals, and retrieval metrics (recall@k, reciprocal rank, nDCG@k).

Short answers follow the SQuAD evaluation script for English (lowercase, strip punctuation, drop the
articles a/an/the, collapse whitespace; F1 over whitespace tokens). Japanese has no spaces between
words, so Japanese answers are compared by characters after NFKC normalisation with punctuation and
whitespace removed (the usual practice for JaQuAD and JSQuAD).

Multiple choice follows lm-evaluation-harness (``lm_eval/api/task.py``, ``process_results`` for
``output_type: multiple_choice``, checked against lm-eval 0.4.13): each choice is scored as the
continuation ``target_delimiter + choice`` of the question (one log-likelihood request per choice);
``acc`` takes the argmax of the log-likelihoods and ``acc_norm`` the argmax of each log-likelihood
divided by ``len(choice)``: the number of characters (Python ``str`` length, not bytes and not tokens)
of the choice string *without* the delimiter. Ties go to the first choice (``numpy.argmax``).
``tests/test_lm_eval_agreement.py`` runs lm-eval on the same model and questions and checks both
accuracies and every log-likelihood.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from infuse.language import detect_language
from infuse.models.base import LanguageModel, LoglikelihoodRequest

# Languages written without spaces between words: compared by characters.
CHARACTER_LEVEL_LANGUAGES = frozenset({"ja", "zh"})

# --- short answers -----------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ASCII_PUNCTUATION = frozenset(string.punctuation)


def _character_level(text: str, lang: str | None) -> bool:
    if lang is not None:
        return str(lang).lower() in CHARACTER_LEVEL_LANGUAGES
    return detect_language(text) == "ja"


def _normalize_en(text: str) -> str:
    """The SQuAD v1.1/v2.0 ``normalize_answer``."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _ASCII_PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _normalize_characters(text: str) -> str:
    """NFKC (full-width to half-width, compatibility forms), lowercase, no punctuation, no whitespace."""
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(
        ch
        for ch in text
        if not ch.isspace() and ch not in _ASCII_PUNCTUATION and not unicodedata.category(ch).startswith("P")
    )


def normalize_answer(text: str, lang: str | None = None) -> str:
    """Normalise an answer for comparison.

    English (and any language other than ``ja``/``zh``): SQuAD normalisation. Japanese (``lang="ja"``,
    or ``lang=None`` and :func:`infuse.language.detect_language` says Japanese): NFKC, lowercase,
    punctuation (ASCII and every Unicode ``P*`` character, e.g. 。、「」・！？) and whitespace removed.

    >>> normalize_answer("The  Eiffel Tower!")
    'eiffel tower'
    >>> normalize_answer("「東京都」です。")
    '東京都です'
    """
    return _normalize_characters(text) if _character_level(text, lang) else _normalize_en(text)


def _tokens(normalized: str, character_level: bool) -> list[str]:
    return list(normalized) if character_level else normalized.split()


def _pair_f1(prediction: str, answer: str, lang: str | None) -> tuple[float, float]:
    # The gold answer decides the language when none is given: a model may answer a Japanese
    # question in English (or vice versa), but the gold answer is what the question expects.
    character_level = _character_level(answer, lang)
    mode = "ja" if character_level else "en"
    pred = normalize_answer(prediction, mode)
    gold = normalize_answer(answer, mode)
    em = float(pred == gold)
    pred_tokens, gold_tokens = _tokens(pred, character_level), _tokens(gold, character_level)
    if not pred_tokens or not gold_tokens:
        # SQuAD 2.0: an empty answer (no answer) scores 1 only against an empty prediction.
        return em, float(pred_tokens == gold_tokens)
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return em, 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return em, 2 * precision * recall / (precision + recall)


def _answers(answers: Sequence[str] | str) -> list[str]:
    if isinstance(answers, str):
        return [answers]
    # SQuAD 2.0: an unanswerable question has the single gold answer "".
    return list(answers) or [""]


def exact_match(prediction: str, answers: Sequence[str], lang: str | None = None) -> float:
    """1.0 when the normalised prediction equals one of the normalised answers, else 0.0.

    ``answers`` empty means unanswerable (SQuAD 2.0): only an empty prediction matches.
    """
    return max(_pair_f1(prediction, answer, lang)[0] for answer in _answers(answers))


def token_f1(prediction: str, answers: Sequence[str], lang: str | None = None) -> float:
    """The best F1 over ``answers``: SQuAD token F1 for English, character F1 for Japanese.

    >>> round(token_f1("東京都", ["東京"]), 3)  # P = 2/3, R = 1
    0.8
    """
    return max(_pair_f1(prediction, answer, lang)[1] for answer in _answers(answers))


# --- multiple choice ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MCScore:
    """One multiple-choice question scored by log-likelihood (lm-evaluation-harness definitions)."""

    loglikelihoods: tuple[float, ...]  # log P(separator + choice | context), one per choice
    lengths: tuple[int, ...]  # len(choice) in characters, without the separator: acc_norm's divisor
    pred: int  # argmax of loglikelihoods
    pred_norm: int  # argmax of loglikelihoods / lengths
    acc: float  # 1.0 when pred is the gold index
    acc_norm: float  # 1.0 when pred_norm is the gold index


MCItem = tuple[str, Sequence[str], int]  # (context, choices, answer index)


def _check_choices(choices: Sequence[str]) -> None:
    if isinstance(choices, str) or len(choices) == 0:
        raise ValueError("a multiple-choice question needs a non-empty list of choices")


def mc_choice_loglikelihoods_batch(
    model: LanguageModel, items: Sequence[tuple[str, Sequence[str]]], *, separator: str = " "
) -> list[tuple[float, ...]]:
    """Log-likelihood of every choice of every ``(context, choices)`` item, in one model call.

    One call lets the backend sort and batch all the requests together (much faster than one call
    per question on a local model).
    """
    requests: list[LoglikelihoodRequest] = []
    for context, choices in items:
        _check_choices(choices)
        requests.extend(LoglikelihoodRequest(context, separator + choice) for choice in choices)
    results = model.loglikelihood(requests) if requests else []
    if len(results) != len(requests):
        raise RuntimeError(f"{model.name} returned {len(results)} log-likelihoods for {len(requests)} requests")
    out: list[tuple[float, ...]] = []
    position = 0
    for _, choices in items:
        out.append(tuple(float(r.logprob) for r in results[position : position + len(choices)]))
        position += len(choices)
    return out


def mc_score(loglikelihoods: Sequence[float], choices: Sequence[str], answer_index: int) -> MCScore:
    """acc and acc_norm from the choices' log-likelihoods, exactly as lm-evaluation-harness computes them."""
    _check_choices(choices)
    if len(loglikelihoods) != len(choices):
        raise ValueError(f"{len(loglikelihoods)} log-likelihoods for {len(choices)} choices")
    if not 0 <= answer_index < len(choices):
        raise ValueError(f"answer index {answer_index} is outside the {len(choices)} choices")
    lls = np.asarray(loglikelihoods, dtype=np.float64)
    lengths = np.array([float(len(choice)) for choice in choices])
    pred = int(np.argmax(lls))
    with np.errstate(divide="ignore", invalid="ignore"):  # an empty choice divides by 0, as in lm-eval
        pred_norm = int(np.argmax(lls / lengths))
    return MCScore(
        loglikelihoods=tuple(float(x) for x in lls),
        lengths=tuple(len(choice) for choice in choices),
        pred=pred,
        pred_norm=pred_norm,
        acc=float(pred == answer_index),
        acc_norm=float(pred_norm == answer_index),
    )


def score_multiple_choice_batch(
    model: LanguageModel, items: Sequence[MCItem], *, separator: str = " "
) -> list[MCScore]:
    """:func:`score_multiple_choice` for many ``(context, choices, answer_index)`` items in one model call."""
    lls = mc_choice_loglikelihoods_batch(
        model, [(context, choices) for context, choices, _ in items], separator=separator
    )
    return [mc_score(ll, choices, answer) for ll, (_, choices, answer) in zip(lls, items)]


def score_multiple_choice(
    model: LanguageModel, context: str, choices: Sequence[str], answer_index: int, *, separator: str = " "
) -> MCScore:
    """Score one question: ``LoglikelihoodRequest(context, separator + choice)`` per choice.

    ``separator`` is lm-eval's ``target_delimiter`` (default ``" "``); ``context`` is the whole
    prompt (lm-eval's ``doc_to_text``, e.g. ``"Question: ...\\nAnswer:"``).
    """
    return score_multiple_choice_batch(model, [(context, choices, answer_index)], separator=separator)[0]


# --- confidence intervals ----------------------------------------------------------------------


def bootstrap_ci(
    values: Sequence[float], *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (e.g. per-question 0/1 correctness).

    Deterministic for a given ``seed``. Empty ``values`` give ``(nan, nan)``.
    """
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    if resamples < 1:
        raise ValueError("resamples must be at least 1")
    data = np.asarray(values, dtype=np.float64)
    n = len(data)
    if n == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, 2_000_000 // n)  # bounded memory: at most ~2M indices at a time
    for start in range(0, resamples, step):
        count = min(step, resamples - start)
        means[start : start + count] = data[rng.integers(0, n, size=(count, n))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    # Keep the interval inside the data's range (rounding can push a constant sample's mean off by 1 ulp).
    return (float(max(low, data.min())), float(min(high, data.max())))


# --- retrieval ---------------------------------------------------------------------------------


def _gold_set(gold: str | Collection[str]) -> set[str]:
    golds = {gold} if isinstance(gold, str) else set(gold)
    if not golds:
        raise ValueError("retrieval metrics need at least one gold id")
    return golds


def _relevant_ranks(retrieved: Sequence[str], golds: set[str], k: int) -> list[int]:
    """1-based ranks within the first ``k`` of the gold ids, each gold id counted once (first occurrence)."""
    if k < 1:
        raise ValueError("k must be at least 1")
    seen: set[str] = set()
    ranks = []
    for rank, item in enumerate(retrieved[:k], start=1):
        if item in golds and item not in seen:
            seen.add(item)
            ranks.append(rank)
    return ranks


def recall_at_k(retrieved: Sequence[str], gold: str | Collection[str], k: int) -> float:
    """Share of the gold ids found in the first ``k`` retrieved (one gold id: 1.0 if found, else 0.0)."""
    golds = _gold_set(gold)
    return len(_relevant_ranks(retrieved, golds, k)) / len(golds)


def reciprocal_rank(retrieved: Sequence[str], gold: str | Collection[str], k: int = 10) -> float:
    """1 / rank of the first gold id within the first ``k`` (0.0 if none); the mean over questions is MRR@k."""
    ranks = _relevant_ranks(retrieved, _gold_set(gold), k)
    return 1.0 / ranks[0] if ranks else 0.0


def ndcg_at_k(retrieved: Sequence[str], gold: str | Collection[str], k: int) -> float:
    """nDCG@k with binary relevance: sum of 1/log2(rank+1) over gold ids found, over the ideal ranking's.

    A repeated id counts once (at its first rank). With one gold id this is 1/log2(rank+1).
    """
    golds = _gold_set(gold)
    dcg = sum(1.0 / math.log2(rank + 1) for rank in _relevant_ranks(retrieved, golds, k))
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(golds), k) + 1))
    return dcg / ideal
