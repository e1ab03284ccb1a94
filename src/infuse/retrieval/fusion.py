"""Fusion of the dense and keyword lists of hybrid search: weighted reciprocal rank fusion, or a
weighted sum of normalised scores (relative-score fusion).

Reciprocal rank fusion (Cormack et al. 2009):
fused(d) = sum over lists L of weight_L / (k + rank_L(d)), ranks starting at 1. It sees only
ranks, so a keyword list whose first hit is far ahead of its second (a question that repeats its
passage's words) counts the same as one whose top ten are near-tied: any dense share reorders a
confident keyword top list.

Relative-score fusion (as in Weaviate's ``relativeScoreFusion``):
fused(d) = sum over lists L of weight_L * (score_L(d) - min_L) / (max_L - min_L), min and max
over the list's returned hits, 0 when d is not in L. It keeps how far apart the scores are: a
keyword hit far ahead stays ahead, and dense similarity decides between near-tied keyword hits.

Invariants of both: a weight of 0 removes a list (the result equals fusing the others alone);
ties are broken by the best rank in any list, then by list order, so results are deterministic.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

from infuse.config import FusionMethod, FusionWeights

Key = TypeVar("Key", bound=Hashable)


def _checked_weights(count: int, weights: Sequence[float] | None) -> Sequence[float]:
    if weights is None:
        return [1.0] * count
    if len(weights) != count:
        raise ValueError(f"{len(weights)} weights for {count} lists")
    return weights


def _ordered(scores: dict[Key, float], best: dict[Key, tuple[int, int]]) -> list[tuple[Key, float]]:
    # Ties (equal fused scores) are broken by the best rank in any list, then by list order.
    return sorted(scores.items(), key=lambda item: (-item[1], best[item[0]]))


def reciprocal_rank_fusion(
    ranked_lists: Sequence[Sequence[Key]], weights: Sequence[float] | None = None, k: int = 60
) -> list[tuple[Key, float]]:
    """Fuse ranked lists of keys into one list of (key, fused score), best first.

    >>> reciprocal_rank_fusion([["a", "b"], ["b", "c"]], k=60)[0][0]
    'b'
    """
    weights = _checked_weights(len(ranked_lists), weights)
    scores: dict[Key, float] = {}
    best: dict[Key, tuple[int, int]] = {}
    for list_index, (ranked, weight) in enumerate(zip(ranked_lists, weights)):
        if weight == 0:
            continue
        for rank, key in enumerate(ranked, start=1):
            scores[key] = scores.get(key, 0.0) + weight / (k + rank)
            best[key] = min(best.get(key, (rank, list_index)), (rank, list_index))
    return _ordered(scores, best)


def relative_score_fusion(
    scored_lists: Sequence[Sequence[tuple[Key, float]]], weights: Sequence[float] | None = None
) -> list[tuple[Key, float]]:
    """Fuse lists of (key, score), each best first, by the weighted sum of min-max normalised
    scores (a list's best hit 1, its worst 0; a list whose scores are all equal gives each 1).

    >>> relative_score_fusion([[("a", 0.9), ("b", 0.8)], [("b", 12.0), ("a", 2.0), ("c", 1.0)]], [0.5, 1.0])[0]
    ('b', 1.0)
    """
    weights = _checked_weights(len(scored_lists), weights)
    scores: dict[Key, float] = {}
    best: dict[Key, tuple[int, int]] = {}
    for list_index, (scored, weight) in enumerate(zip(scored_lists, weights)):
        if weight == 0 or not scored:
            continue
        values = [score for _, score in scored]
        low, span = min(values), max(values) - min(values)
        for rank, (key, score) in enumerate(scored, start=1):
            normalised = (score - low) / span if span > 0 else 1.0
            scores[key] = scores.get(key, 0.0) + weight * normalised
            best[key] = min(best.get(key, (rank, list_index)), (rank, list_index))
    return _ordered(scores, best)


def fuse(
    dense: Sequence[tuple[Key, float]], lexical: Sequence[tuple[Key, float]], weights: FusionWeights, rrf_k: int = 60
) -> list[tuple[Key, float]]:
    """The dense and keyword lists (each (key, score), best first) fused as ``weights.method`` says.

    >>> from infuse.config import FusionMethod, FusionWeights
    >>> fuse([("a", 0.9)], [("b", 3.0)], FusionWeights(method=FusionMethod.RRF, dense=0.5))[0][0]
    'b'
    """
    if weights.method is FusionMethod.RELATIVE_SCORE:
        return relative_score_fusion([dense, lexical], [weights.dense, weights.lexical])
    ranked = [[key for key, _ in dense], [key for key, _ in lexical]]
    return reciprocal_rank_fusion(ranked, [weights.dense, weights.lexical], k=rrf_k)
