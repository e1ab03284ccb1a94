"""Weighted reciprocal rank fusion against hand-computed scores."""

from __future__ import annotations

import pytest

from infuse.retrieval.fusion import reciprocal_rank_fusion


def test_two_lists_default_k_60():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "d"]])
    expected = {
        "a": 1 / 61,
        "b": 1 / 62 + 1 / 61,
        "c": 1 / 63,
        "d": 1 / 62,
    }
    assert [key for key, _ in fused] == ["b", "a", "d", "c"]
    for key, score in fused:
        assert score == pytest.approx(expected[key], rel=1e-12)


def test_single_list_keeps_its_order_with_rrf_scores():
    fused = reciprocal_rank_fusion([["x", "y", "z"]])
    assert fused == [("x", pytest.approx(1 / 61)), ("y", pytest.approx(1 / 62)), ("z", pytest.approx(1 / 63))]


def test_custom_k():
    fused = dict(reciprocal_rank_fusion([["a", "b"], ["b", "a"]], k=1))
    assert fused["a"] == pytest.approx(1 / 2 + 1 / 3)
    assert fused["b"] == pytest.approx(1 / 3 + 1 / 2)
    fused = reciprocal_rank_fusion([["a", "b"], ["c"]], k=0)
    assert fused == [("a", 1.0), ("c", 1.0), ("b", 0.5)]


def test_weights_scale_each_list():
    dense, lexical = ["d1", "shared", "d3"], ["shared", "l2", "l3"]
    fused = reciprocal_rank_fusion([dense, lexical], weights=[0.3, 1.0])
    expected = {
        "d1": 0.3 / 61,
        "shared": 0.3 / 62 + 1.0 / 61,
        "d3": 0.3 / 63,
        "l2": 1.0 / 62,
        "l3": 1.0 / 63,
    }
    assert [key for key, _ in fused] == ["shared", "l2", "l3", "d1", "d3"]
    for key, score in fused:
        assert score == pytest.approx(expected[key], rel=1e-12)


def test_a_heavier_list_wins_a_disagreement():
    # "a" is first in list 0, "b" first in list 1; the list with weight 2 decides.
    assert reciprocal_rank_fusion([["a", "b"], ["b", "a"]], weights=[1.0, 2.0])[0][0] == "b"
    assert reciprocal_rank_fusion([["a", "b"], ["b", "a"]], weights=[2.0, 1.0])[0][0] == "a"


def test_weight_zero_contributes_nothing_to_scores():
    fused = dict(reciprocal_rank_fusion([["a", "b"], ["b", "c"]], weights=[1.0, 0.0]))
    assert fused["a"] == pytest.approx(1 / 61)
    assert fused["b"] == pytest.approx(1 / 62)
    assert fused.get("c", 0.0) == 0.0
    ranking = [key for key, _ in reciprocal_rank_fusion([["a", "b"], ["b", "c"]], weights=[1.0, 0.0])]
    assert ranking.index("a") < ranking.index("b")


def test_weight_zero_is_the_same_as_leaving_the_list_out():
    with_zero = reciprocal_rank_fusion([["a", "b"], ["c", "b", "a"]], weights=[1.0, 0.0])
    without = reciprocal_rank_fusion([["a", "b"]], weights=[1.0])
    assert with_zero == without


def test_ties_are_deterministic_and_follow_list_order():
    # Each key is first in exactly one list with the same weight: equal scores, list order decides.
    lists = [["p"], ["q"], ["r"]]
    fused = reciprocal_rank_fusion(lists)
    assert [key for key, _ in fused] == ["p", "q", "r"]
    assert fused[0][1] == fused[1][1] == fused[2][1]
    assert [key for key, _ in reciprocal_rank_fusion([["r"], ["q"], ["p"]])] == ["r", "q", "p"]
    assert reciprocal_rank_fusion(lists) == fused  # same input, same output


def test_ties_prefer_the_better_rank():
    # "a" and "b" have swapped ranks in two equal-weight lists: identical scores, "a" ranks 1 first.
    fused = reciprocal_rank_fusion([["a", "b"], ["b", "a"]])
    assert fused[0][1] == fused[1][1]
    assert [key for key, _ in fused] == ["a", "b"]


def test_ties_are_broken_by_best_rank_in_any_list():
    # A: ranks 4, 1, 2. B: ranks 2, 4, 1. Same three terms, so the fused scores are equal.
    lists = [["x", "B", "y", "A"], ["A", "z", "w", "B"], ["B", "A"]]
    fused = reciprocal_rank_fusion(lists)
    scores = dict(fused)
    assert scores["A"] == scores["B"]
    # Both have a best rank of 1; A's is in list 1, B's in list 2, so A comes first.
    order = [key for key, _ in fused]
    assert order.index("A") < order.index("B")


def test_mismatched_weights_length_raises():
    with pytest.raises(ValueError, match="1 weights for 2 lists"):
        reciprocal_rank_fusion([["a"], ["b"]], weights=[1.0])
    with pytest.raises(ValueError, match="3 weights for 2 lists"):
        reciprocal_rank_fusion([["a"], ["b"]], weights=[1.0, 1.0, 1.0])


def test_empty_inputs():
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([[], []]) == []
    assert reciprocal_rank_fusion([[], ["a"]]) == [("a", pytest.approx(1 / 61))]


def test_scores_are_sorted_descending_and_keys_unique():
    lists = [[f"d{i}" for i in range(50)], [f"d{i}" for i in range(49, -1, -2)], [f"d{i}" for i in range(0, 50, 3)]]
    fused = reciprocal_rank_fusion(lists, weights=[1.0, 0.5, 2.0])
    scores = [score for _, score in fused]
    assert scores == sorted(scores, reverse=True)
    assert len({key for key, _ in fused}) == len(fused) == 50


def test_non_string_keys():
    fused = reciprocal_rank_fusion([[3, 1], [1, 2]])
    assert [key for key, _ in fused] == [1, 3, 2]
