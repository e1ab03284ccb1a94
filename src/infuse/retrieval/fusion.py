"""Reciprocal rank fusion (Cormack et al. 2009), weighted per list.

fused(d) = sum over lists L of weight_L / (k + rank_L(d)), ranks starting at 1. A weight of 0
removes a list; a low weight lets a weak list (an English-only embedder on Japanese text) break
ties without dragging good keyword results down.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

Key = TypeVar("Key", bound=Hashable)


def reciprocal_rank_fusion(
    ranked_lists: Sequence[Sequence[Key]], weights: Sequence[float] | None = None, k: int = 60
) -> list[tuple[Key, float]]:
    """Fuse ranked lists of keys into one list of (key, fused score), best first.

    >>> reciprocal_rank_fusion([["a", "b"], ["b", "c"]], k=60)[0][0]
    'b'
    """
    if weights is None:
        weights = [1.0] * len(ranked_lists)
    if len(weights) != len(ranked_lists):
        raise ValueError(f"{len(weights)} weights for {len(ranked_lists)} lists")
    scores: dict[Key, float] = {}
    best: dict[Key, tuple[int, int]] = {}
    for list_index, (ranked, weight) in enumerate(zip(ranked_lists, weights)):
        if weight == 0:
            continue
        for rank, key in enumerate(ranked, start=1):
            scores[key] = scores.get(key, 0.0) + weight / (k + rank)
            best[key] = min(best.get(key, (rank, list_index)), (rank, list_index))
    # Ties (equal fused scores) are broken by the best rank in any list, then by list order, so the
    # result is deterministic.
    return sorted(scores.items(), key=lambda item: (-item[1], best[item[0]]))
