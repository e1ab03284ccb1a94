"""Scoring functions against hand-computed cases."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from infuse.evaluation.metrics import (
    MCScore,
    bootstrap_ci,
    exact_match,
    mc_choice_loglikelihoods_batch,
    ndcg_at_k,
    normalize_answer,
    recall_at_k,
    reciprocal_rank,
    score_multiple_choice,
    score_multiple_choice_batch,
    token_f1,
)
from infuse.models.base import Loglikelihood, LoglikelihoodRequest

# --- normalisation, EM, F1 ---------------------------------------------------------------------


def test_normalize_english_is_squad() -> None:
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_answer("An apple, a day.") == "apple day"
    assert normalize_answer("Theater") == "theater"  # articles only as whole words
    assert normalize_answer("  U.S.A.  ") == "usa"


def test_normalize_japanese() -> None:
    assert normalize_answer("「東京都」です。") == "東京都です"
    assert normalize_answer("東京・大阪、名古屋！？") == "東京大阪名古屋"
    assert normalize_answer("ＡＰＩキー　１０日") == "apiキー10日"  # NFKC: full-width Latin/digits, ideographic space
    assert normalize_answer("a b", lang="ja") == "ab"  # explicit language wins over detection
    assert normalize_answer("東京 タワー", lang="en") == "東京 タワー"


def test_exact_match() -> None:
    assert exact_match("the Eiffel Tower", ["Eiffel Tower", "Tour Eiffel"]) == 1.0
    assert exact_match("Eiffel", ["Eiffel Tower"]) == 0.0
    assert exact_match("東京都。", ["東京都"]) == 1.0
    assert exact_match("東京", ["東京都"]) == 0.0
    assert exact_match("", []) == 1.0  # SQuAD 2.0: no answer matches an empty prediction
    assert exact_match("Paris", []) == 0.0


def test_token_f1_english() -> None:
    # pred [eiffel, tower, in, paris], gold [eiffel, tower]: P 2/4, R 1, F1 2/3
    assert token_f1("The Eiffel Tower in Paris", ["Eiffel Tower"]) == pytest.approx(2 / 3)
    # best over answers
    assert token_f1("tower", ["Eiffel Tower", "the tower"]) == pytest.approx(1.0)
    assert token_f1("London", ["Eiffel Tower"]) == 0.0
    # repeated tokens count with multiplicity: pred [new, new, york], gold [new, york]: common 2, P 2/3, R 1
    assert token_f1("new new york", ["New York"]) == pytest.approx(0.8)
    assert token_f1("", ["Paris"]) == 0.0
    assert token_f1("", []) == 1.0


def test_token_f1_japanese_is_character_level() -> None:
    # 東京都 vs 東京: common 2 characters, P 2/3, R 1, F1 0.8
    assert token_f1("東京都", ["東京"]) == pytest.approx(0.8)
    # 10日間 vs 10日 (after NFKC the full-width digits match): common 3, P 3/4, R 1, F1 6/7
    assert token_f1("１０日間", ["10日"]) == pytest.approx(6 / 7)
    # punctuation does not count: 「週3日」。 vs 週3日まで: common 3, P 1, R 3/5, F1 0.75
    assert token_f1("「週3日」。", ["週3日まで"]) == pytest.approx(0.75)
    assert token_f1("大阪", ["東京"]) == 0.0
    # the gold answer decides the language when none is given
    assert token_f1("東京 です", ["東京"]) == pytest.approx(2 * (2 / 4) * 1 / (2 / 4 + 1))


# --- multiple choice ---------------------------------------------------------------------------


class FixedModel:
    """A LanguageModel stub returning preset log-likelihoods per continuation."""

    name = "fixed"
    context_length = None

    def __init__(self, table: dict[str, float]) -> None:
        self.table = table
        self.calls: list[list[LoglikelihoodRequest]] = []

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        self.calls.append(list(requests))
        return [Loglikelihood(self.table[r.continuation], False, 1) for r in requests]


def test_acc_and_acc_norm_hand_computed() -> None:
    # lls -2, -3, -10 over lengths 1, 4, 12 characters: per character -2, -0.75, -0.83
    model = FixedModel({" a": -2.0, " bbbb": -3.0, " cccccccccccc": -10.0})
    score = score_multiple_choice(model, "Q:", ["a", "bbbb", "cccccccccccc"], answer_index=1)
    assert score == MCScore(
        loglikelihoods=(-2.0, -3.0, -10.0), lengths=(1, 4, 12), pred=0, pred_norm=1, acc=0.0, acc_norm=1.0
    )
    assert model.calls == [
        [
            LoglikelihoodRequest("Q:", " a"),
            LoglikelihoodRequest("Q:", " bbbb"),
            LoglikelihoodRequest("Q:", " cccccccccccc"),
        ]
    ]


def test_acc_norm_counts_characters_not_bytes_and_ties_go_first() -> None:
    # 東京都 is 3 characters (9 bytes), tokyo 5: per character -1.0 vs -1.2; per byte -0.33 vs -1.2
    model = FixedModel({"東京都": -3.0, "tokyo": -6.0, "x": -1.0, "y": -1.0})
    score = score_multiple_choice(model, "Q:", ["tokyo", "東京都"], 1, separator="")
    assert (score.pred, score.pred_norm, score.lengths) == (1, 1, (5, 3))
    tie = score_multiple_choice(model, "Q:", ["x", "y"], 1, separator="")
    assert (tie.pred, tie.pred_norm, tie.acc) == (0, 0, 0.0)


def test_batch_is_one_model_call_and_validates() -> None:
    model = FixedModel({" a": -1.0, " b": -2.0, " c": -0.5})
    scores = score_multiple_choice_batch(model, [("Q1", ["a", "b"], 0), ("Q2", ["b", "c", "a"], 2)])
    assert len(model.calls) == 1 and len(model.calls[0]) == 5
    assert [s.loglikelihoods for s in scores] == [(-1.0, -2.0), (-2.0, -0.5, -1.0)]
    assert [(s.acc, s.pred) for s in scores] == [(1.0, 0), (0.0, 1)]
    assert mc_choice_loglikelihoods_batch(model, []) == []
    with pytest.raises(ValueError):
        score_multiple_choice(model, "Q", ["a", "b"], 2)
    with pytest.raises(ValueError):
        score_multiple_choice(model, "Q", [], 0)


def direct_loglikelihood(model, tokenizer, context: str, continuation: str) -> float:
    """log P(continuation | context) by one plain forward pass (no special tokens; the context and
    continuation here need none of lm-eval's whitespace handling)."""
    import torch

    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    assert whole[: len(context_ids)] == context_ids
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([whole])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return sum(float(logprobs[i - 1, whole[i]]) for i in range(len(context_ids), len(whole)))


def test_multiple_choice_on_a_real_model_matches_a_forward_pass(tiny_llama_dir: str) -> None:
    from infuse.models.transformers_backend import TransformersModel

    model = TransformersModel.load(tiny_llama_dir, device="cpu")
    context = "Question: How long are backups kept?\nAnswer:"
    choices = ["x", "The quick brown fox jumps over the lazy dog.", "35 days", "blue"]
    expected = [direct_loglikelihood(model.model, model.tokenizer, context, " " + c) for c in choices]
    score = score_multiple_choice(model, context, choices, answer_index=2)
    assert score.loglikelihoods == pytest.approx(expected, abs=1e-4)
    assert score.pred == int(np.argmax(expected))
    assert score.pred_norm == int(np.argmax(np.array(expected) / [len(c) for c in choices]))
    # On this random model "x" (one character) has the highest total log-likelihood but the worst
    # per character; "35 days" has the best per character: acc and acc_norm disagree.
    assert (score.pred, score.pred_norm) == (0, 2)
    assert (score.acc, score.acc_norm) == (0.0, 1.0)


# --- bootstrap ---------------------------------------------------------------------------------


def test_bootstrap_constant_and_deterministic() -> None:
    assert bootstrap_ci([1.0] * 50) == (1.0, 1.0)
    assert bootstrap_ci([0.0] * 7) == (0.0, 0.0)
    values = [1, 0, 1, 1, 0, 1, 0, 1, 1, 1]
    low, high = bootstrap_ci(values)
    assert low < 0.7 < high and 0.0 <= low and high <= 1.0
    assert bootstrap_ci(values) == (low, high)
    continuous = np.random.default_rng(0).normal(size=30)
    assert bootstrap_ci(continuous, seed=1) != bootstrap_ci(continuous, seed=0)
    narrow = bootstrap_ci(values * 20)
    assert narrow[1] - narrow[0] < high - low
    assert all(math.isnan(x) for x in bootstrap_ci([]))
    with pytest.raises(ValueError):
        bootstrap_ci(values, confidence=1.5)


def test_bootstrap_coverage_sanity() -> None:
    """95% intervals of Bernoulli(0.7) means over 200 questions cover 0.7 about 95% of the time."""
    rng = np.random.default_rng(123)
    trials = 200
    covered = 0
    for seed in range(trials):
        sample = (rng.random(200) < 0.7).astype(float)
        low, high = bootstrap_ci(sample, resamples=1000, seed=seed)
        covered += low <= 0.7 <= high
    assert 0.88 <= covered / trials <= 0.99


# --- retrieval ---------------------------------------------------------------------------------


def test_retrieval_single_gold() -> None:
    retrieved = ["d3", "d1", "d7", "d2"]
    assert recall_at_k(retrieved, "d7", 2) == 0.0
    assert recall_at_k(retrieved, "d7", 3) == 1.0
    assert reciprocal_rank(retrieved, "d7") == pytest.approx(1 / 3)
    assert reciprocal_rank(retrieved, "d7", k=2) == 0.0
    assert reciprocal_rank(retrieved, "d9") == 0.0
    assert ndcg_at_k(retrieved, "d7", 10) == pytest.approx(1 / math.log2(4))  # 0.5
    assert ndcg_at_k(retrieved, "d3", 1) == 1.0
    assert ndcg_at_k([], "d3", 5) == 0.0


def test_retrieval_several_gold_and_duplicates() -> None:
    retrieved = ["a", "x", "b", "a", "y"]
    gold = {"a", "b", "c"}
    assert recall_at_k(retrieved, gold, 3) == pytest.approx(2 / 3)
    assert recall_at_k(retrieved, gold, 5) == pytest.approx(2 / 3)  # the repeated "a" counts once
    assert reciprocal_rank(retrieved, gold) == 1.0
    # DCG = 1/log2(2) + 1/log2(4) = 1.5; ideal (3 gold within k=5) = 1 + 1/log2(3) + 1/log2(4)
    assert ndcg_at_k(retrieved, gold, 5) == pytest.approx(1.5 / (1 + 1 / math.log2(3) + 0.5))
    # ideal truncated at k: k=2 gives IDCG = 1 + 1/log2(3)
    assert ndcg_at_k(retrieved, gold, 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    with pytest.raises(ValueError):
        recall_at_k(retrieved, [], 3)
    with pytest.raises(ValueError):
        ndcg_at_k(retrieved, "a", 0)
