"""Qdrant's own engine in-process (qdrant-edge-py), fed what :class:`~infuse.store.qdrant.QdrantStore` sends.

Why: no Qdrant server can be installed where infuse is developed, and qdrant-client's local mode
is a Python re-implementation. qdrant-edge-py runs Qdrant's Rust engine (segments, sparse index
with IDF, optimizers and vacuum) in the calling process. :class:`EdgeEngine` configures one shard
as the store configures its chunk collection and translates the store's very objects (points
from ``QdrantStore._point``, filters from :func:`~infuse.store.qdrant.to_qdrant`, the keyword query
vector) field by field into qdrant-edge's classes, so tests/test_qdrant_parity.py and
benchmarks/qdrant_parity.py check the engine, not a copy of it. Not a workspace store: it holds
chunks only (``ranked_lists`` serves ``HybridSearcher``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as edge
from qdrant_client import models as qm

from infuse.config import QdrantSettings
from infuse.store.base import TIE_MARGIN, IndexedChunk, ScoredChunk, best_first
from infuse.store.filters import Filter
from infuse.store.qdrant import DENSE, KEYWORDS, QdrantStore, chunk_from_payload, query_vector, to_qdrant


def edge_filter(condition: Any) -> Any:
    """qdrant-client's filter objects as qdrant-edge's (the kinds ``to_qdrant`` and the store use)."""
    if isinstance(condition, qm.Filter):
        return edge.Filter(
            must=[edge_filter(c) for c in condition.must or []] or None,
            must_not=[edge_filter(c) for c in condition.must_not or []] or None,
        )
    if isinstance(condition, qm.FieldCondition) and isinstance(condition.match, qm.MatchAny):
        return edge.FieldCondition(condition.key, match=edge.MatchAny(list(condition.match.any)))  # type: ignore[arg-type]
    if isinstance(condition, qm.IsEmptyCondition):
        return edge.IsEmptyCondition(condition.is_empty.key)
    raise TypeError(f"no qdrant-edge translation for {condition!r}")


def edge_point(point: qm.PointStruct) -> Any:
    vectors: dict[str, Any] = dict(point.vector)  # type: ignore[arg-type]
    sparse = vectors[KEYWORDS]
    return edge.Point(
        point.id, {DENSE: vectors[DENSE], KEYWORDS: edge.SparseVector(sparse.indices, sparse.values)}, point.payload
    )


class EdgeEngine:
    """One qdrant-edge shard configured as the Qdrant store configures its chunk collection."""

    def __init__(self, path: Path, settings: QdrantSettings, dimension: int) -> None:
        config = edge.EdgeConfig(
            vectors={DENSE: edge.EdgeVectorParams(size=dimension, distance=edge.Distance.Cosine)},
            sparse_vectors={KEYWORDS: edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf)},
            optimizers=edge.EdgeOptimizersConfig(
                deleted_threshold=settings.vacuum_deleted_threshold,
                vacuum_min_vector_number=settings.vacuum_min_vector_number,
            ),
        )
        self.shard = edge.EdgeShard.create(str(path), config)
        # Builds points exactly as the store writes them (an in-memory local-mode store, unused otherwise).
        self._points = QdrantStore(settings.model_copy(update={"url": None}), "edge_points", dimension)

    def write(self, items: Sequence[IndexedChunk], average_length: float) -> None:
        points = [edge_point(self._points._point(item, average_length)) for item in items]
        self.shard.update(edge.UpdateOperation.upsert_points(points))

    def delete(self, filter_: Filter) -> None:
        self.shard.update(edge.UpdateOperation.delete_points_by_filter(edge_filter(to_qdrant(filter_))))

    def _request(self, query: Any, using: str, k: int, filter_: Filter | None) -> Any:
        qf = to_qdrant(filter_)
        return edge.QueryRequest(
            limit=k + TIE_MARGIN,
            query=edge.Query.Nearest(query, using=using),
            filter=edge_filter(qf) if qf is not None else None,
            with_payload=True,
        )

    def ranked_lists(
        self,
        vector: np.ndarray | None,
        tokens: Sequence[str] | None,
        k: int,
        filters: Filter | None = None,
        *,
        exclude_flagged: bool = False,
    ) -> tuple[list[ScoredChunk], list[ScoredChunk]]:
        """The dense and keyword lists in one batch, ordered as the store orders them (ties by
        chunk id). Keyword scores use the engine's IDF over every point: no per-caller scoping."""
        if exclude_flagged:
            raise NotImplementedError("EdgeEngine does not leave out flagged chunks")
        terms = list(dict.fromkeys(t for t in tokens or () if t.strip()))
        requests = []
        if vector is not None:
            requests.append(self._request(np.asarray(vector, dtype=np.float32).tolist(), DENSE, k, filters))
        if terms:
            sparse = query_vector(terms)
            requests.append(self._request(edge.SparseVector(sparse.indices, sparse.values), KEYWORDS, k, filters))
        answers = self.shard.query_batch(edge.QueryBatchRequest(requests)) if requests else []
        lists = [best_first([ScoredChunk(chunk_from_payload(p.payload or {}), p.score) for p in a], k) for a in answers]
        dense = lists.pop(0) if vector is not None else []
        return dense, (lists.pop(0) if terms else [])

    def dense_search(self, vector: np.ndarray, k: int, filters: Filter | None = None) -> list[ScoredChunk]:
        return self.ranked_lists(vector, None, k, filters)[0]

    def lexical_search(self, tokens: Sequence[str], k: int, filters: Filter | None = None) -> list[ScoredChunk]:
        return self.ranked_lists(None, tokens, k, filters)[1]
