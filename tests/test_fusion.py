"""Weighted reciprocal rank fusion against hand-computed scores."""

from __future__ import annotations

import pytest

from infuse.config import FusionMethod, FusionWeights
from infuse.retrieval.fusion import fuse, reciprocal_rank_fusion, relative_score_fusion


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


# --- relative-score fusion and the per-language method --------------------------------------------


def test_relative_score_fusion_hand_computed() -> None:
    dense = [("a", 0.9), ("b", 0.7), ("c", 0.5)]  # min-max: a 1, b 0.5, c 0
    lexical = [("b", 10.0), ("d", 6.0), ("a", 2.0)]  # min-max: b 1, d 0.5, a 0
    fused = dict(relative_score_fusion([dense, lexical], [0.5, 1.0]))
    assert fused == {
        "a": pytest.approx(0.5 * 1.0 + 0.0),
        "b": pytest.approx(0.5 * 0.5 + 1.0),
        "c": pytest.approx(0.0),
        "d": pytest.approx(0.5),
    }
    assert [key for key, _ in relative_score_fusion([dense, lexical], [0.5, 1.0])] == ["b", "a", "d", "c"]


def test_relative_score_lets_dense_break_near_ties_but_not_clear_keyword_gaps() -> None:
    """The reason it exists: RRF sees only ranks, so it orders both keyword lists below alike;
    relative-score fusion keeps the gaps, so the same dense list reorders near-tied keyword hits
    (b, c) and leaves a clear keyword order alone."""
    dense = [("c", 0.9), ("a", 0.6), ("b", 0.3)]
    near_tie = [("a", 20.0), ("b", 5.0), ("c", 4.95)]
    clear_gap = [("a", 20.0), ("b", 15.0), ("c", 4.95)]

    def order(keys: list[tuple[str, float]]) -> list[str]:
        return [key for key, _ in keys]

    assert order(relative_score_fusion([dense, near_tie], [0.1, 1.0])) == ["a", "c", "b"]
    assert order(relative_score_fusion([dense, clear_gap], [0.1, 1.0])) == ["a", "b", "c"]
    rrf = [order(reciprocal_rank_fusion([order(dense), order(kw)], [0.1, 1.0])) for kw in (near_tie, clear_gap)]
    assert rrf[0] == rrf[1]


def test_relative_score_weight_zero_empty_lists_and_flat_scores() -> None:
    lexical = [("x", 3.0), ("y", 1.0)]
    assert relative_score_fusion([[("z", 0.9)], lexical], [0.0, 1.0]) == relative_score_fusion([lexical], [1.0])
    assert relative_score_fusion([[], lexical], [1.0, 1.0]) == [("x", 1.0), ("y", 0.0)]
    assert relative_score_fusion([[("p", 0.4), ("q", 0.4)]]) == [("p", 1.0), ("q", 1.0)]  # flat: all best
    with pytest.raises(ValueError, match="1 weights for 2 lists"):
        relative_score_fusion([lexical, lexical], [1.0])


def test_fuse_follows_the_languages_method() -> None:
    dense, lexical = [("a", 0.9), ("b", 0.1)], [("b", 9.0), ("a", 8.9), ("c", 1.0)]
    relative = fuse(dense, lexical, FusionWeights(method=FusionMethod.RELATIVE_SCORE, dense=0.5))
    assert relative == relative_score_fusion([dense, lexical], [0.5, 1.0]) and relative[0][0] == "a"
    rrf = fuse(dense, lexical, FusionWeights(method=FusionMethod.RRF, dense=0.5), rrf_k=10)
    assert rrf == reciprocal_rank_fusion([["a", "b"], ["b", "a", "c"]], [0.5, 1.0], k=10) and rrf[0][0] == "b"


def test_new_workspaces_use_relative_score_and_old_configs_keep_rrf(tmp_path) -> None:
    from infuse.config import Settings
    from infuse.language import Language
    from infuse.workspace import Workspace

    new = Workspace.open(tmp_path / "new", create=True).settings.search.weights
    assert new[Language.EN] == FusionWeights(method=FusionMethod.RELATIVE_SCORE, dense=0.75, lexical=1.0)
    ja = Workspace.open(tmp_path / "ja", create=True, lang=Language.JA).settings.search.weights[Language.JA]
    assert ja.method is FusionMethod.RELATIVE_SCORE and ja.dense > 0
    # An infuse.toml written before fusion methods existed names weights but no method: RRF, as before.
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "infuse.toml").write_text(
        "[search.weights.en]\ndense = 0.25\nlexical = 1.0\n\n[search.weights.ja]\ndense = 0.0\nlexical = 1.0\n"
    )
    old = Settings.load(tmp_path / "old").search.weights
    assert old[Language.EN] == FusionWeights(method=FusionMethod.RRF, dense=0.25, lexical=1.0)
