"""Engine parity: the Qdrant store's points, filters and queries in the real Qdrant engine.

qdrant-client's local mode (tests/test_qdrant_store.py) is a Python re-implementation; qdrant-edge-py
runs Qdrant's own engine (Rust segments, sparse index, IDF, optimizers) in-process. Here the very
objects the store sends (points from ``QdrantStore._point``, filters from ``to_qdrant``, the
keyword query vector) are translated field by field into qdrant-edge's classes and run there:
filters must mean what :func:`infuse.store.filters.matches` says, keyword scores must be infuse's
BM25, fused lists must equal the store's. The known difference is pinned, not hidden: the engine's
IDF keeps counting deleted points until their segment is vacuumed (qdrant/qdrant#6735).
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

q = pytest.importorskip("qdrant_edge")

from qdrant_client import models as qm  # noqa: E402

from infuse.config import QdrantSettings  # noqa: E402
from infuse.documents.models import Chunk  # noqa: E402
from infuse.language import Language  # noqa: E402
from infuse.retrieval.fusion import reciprocal_rank_fusion  # noqa: E402
from infuse.store.base import TIE_DECIMALS, TIE_MARGIN, DocumentRecord, IndexedChunk, bm25  # noqa: E402
from infuse.store.filters import AnyOf, Filter, matches  # noqa: E402
from infuse.store.qdrant import DENSE, KEYWORDS, QdrantStore, query_vector, to_qdrant  # noqa: E402
from infuse.store.terms import TermStatistics  # noqa: E402
from store_contract import DIM, FILTERS, chunk, document, unit  # noqa: E402


def edge_condition(condition: Any) -> Any:
    """qdrant-client's filter objects as qdrant-edge's (the kinds ``to_qdrant`` and the store use)."""
    if isinstance(condition, qm.Filter):
        return q.Filter(
            must=[edge_condition(c) for c in condition.must or []] or None,
            must_not=[edge_condition(c) for c in condition.must_not or []] or None,
        )
    if isinstance(condition, qm.FieldCondition):
        assert isinstance(condition.match, qm.MatchAny)
        return q.FieldCondition(condition.key, match=q.MatchAny(list(condition.match.any)))
    if isinstance(condition, qm.IsEmptyCondition):
        return q.IsEmptyCondition(condition.is_empty.key)
    raise AssertionError(f"no qdrant-edge translation for {condition!r}")


def edge_point(point: qm.PointStruct) -> Any:
    vectors: dict[str, Any] = dict(point.vector)  # type: ignore[arg-type]
    sparse = vectors[KEYWORDS]
    return q.Point(
        point.id, {DENSE: vectors[DENSE], KEYWORDS: q.SparseVector(sparse.indices, sparse.values)}, point.payload
    )


class Engine:
    """One qdrant-edge shard configured as QdrantStore configures its chunk collection."""

    def __init__(self, path: Path, settings: QdrantSettings, local: QdrantStore) -> None:
        config = q.EdgeConfig(
            vectors={DENSE: q.EdgeVectorParams(size=DIM, distance=q.Distance.Cosine)},
            sparse_vectors={KEYWORDS: q.EdgeSparseVectorParams(modifier=q.Modifier.Idf)},
            optimizers=q.EdgeOptimizersConfig(
                deleted_threshold=settings.vacuum_deleted_threshold,
                vacuum_min_vector_number=settings.vacuum_min_vector_number,
            ),
        )
        self.shard = q.EdgeShard.create(str(path), config)
        self.local = local  # builds the points exactly as the store writes them

    def write(self, items: list[IndexedChunk], average: float) -> None:
        points = [edge_point(self.local._point(item, average)) for item in items]
        self.shard.update(q.UpdateOperation.upsert_points(points))

    def delete(self, filter_: Filter) -> None:
        self.shard.update(q.UpdateOperation.delete_points_by_filter(edge_condition(to_qdrant(filter_))))

    @staticmethod
    def _best_first(points: list[Any], k: int) -> list[tuple[str, float]]:
        """The store's order (infuse.store.base.best_first) over the engine's ``k + TIE_MARGIN``."""
        hits = sorted((-round(p.score, TIE_DECIMALS), p.payload["chunk_id"], p.score) for p in points)
        return [(chunk_id, score) for _, chunk_id, score in hits[:k]]

    def dense(self, vector: np.ndarray, k: int, filter_: Filter | None = None) -> list[tuple[str, float]]:
        qf = to_qdrant(filter_)
        request = q.QueryRequest(
            limit=k + TIE_MARGIN,
            query=q.Query.Nearest(np.asarray(vector, dtype=np.float32).tolist(), using=DENSE),
            filter=edge_condition(qf) if qf is not None else None,
            with_payload=True,
        )
        return self._best_first(self.shard.query(request), k)

    def keywords(self, tokens: list[str], k: int, filter_: Filter | None = None) -> list[tuple[str, float]]:
        vector, qf = query_vector(tokens), to_qdrant(filter_)
        request = q.QueryRequest(
            limit=k + TIE_MARGIN,
            query=q.Query.Nearest(q.SparseVector(vector.indices, vector.values), using=KEYWORDS),
            filter=edge_condition(qf) if qf is not None else None,
            with_payload=True,
        )
        return self._best_first(self.shard.query(request), k)


@pytest.fixture
def local(tmp_path: Path) -> QdrantStore:
    return QdrantStore(QdrantSettings(), "chunks", DIM, local_path=tmp_path / "local")


def contract_corpus() -> list[IndexedChunk]:
    """The contract suite's corpus (tests/store_contract.py), as indexed chunks."""
    a = document("a", metadata={"team": "legal", "year": 2024}, access=("group:legal",))
    b = document("b", metadata={"team": "sales", "year": 2023}, access=("user:bob", "group:sales", "deny:user:eve"))
    c = document("c", metadata={"team": "legal"})
    chunks = [
        (chunk(a, 0, "contract renewal terms", page=1), unit(1, 0, 0, 0)),
        (chunk(a, 1, "renewal deadline is march", page=2), unit(1, 1, 0, 0)),
        (chunk(b, 0, "sales targets for march", flags=("ignore_instructions",)), unit(0, 1, 0, 0)),
        (chunk(c, 0, "契約 更新 条件", Language.JA), unit(0, 0, 1, 0)),
        (chunk(c, 1, "renewal fees", page=2), unit(0, 0, 1, 1)),
    ]
    return [IndexedChunk(ch, tuple(ch.text.lower().split()), v) for ch, v in chunks]


@pytest.mark.parametrize("filter_", FILTERS, ids=repr)
def test_filters_in_the_engine_mean_what_the_reference_says(
    tmp_path: Path, local: QdrantStore, filter_: Filter
) -> None:
    engine = Engine(tmp_path / "edge", QdrantSettings(), local)
    items = contract_corpus()
    engine.write(items, average=3.0)
    expected = sorted(i.chunk.chunk_id for i in items if matches(filter_, dataclasses.asdict(i.chunk)))
    assert sorted(cid for cid, _ in engine.dense(unit(1, 1, 1, 1), 10, filter_)) == expected
    every_word = sorted({t for i in items for t in i.tokens})
    assert sorted(cid for cid, _ in engine.keywords(every_word, 10, filter_)) == expected


def random_corpus(rng: random.Random, n: int) -> list[IndexedChunk]:
    words = [f"w{i}" for i in range(30)]
    items = []
    for i in range(n):
        doc = document(f"d{i:03d}", access=(rng.choice(["group:a", "group:b"]),))
        tokens = tuple(rng.choices(words, weights=[1 / (r + 1) for r in range(30)], k=rng.randint(3, 25)))
        ch = dataclasses.replace(chunk(doc, 0, " ".join(tokens)), n_tokens=len(tokens))
        items.append(IndexedChunk(ch, tokens, unit(*(rng.random() + 0.01 for _ in range(DIM)))))
    return items


def reference_bm25(
    items: list[IndexedChunk], terms: list[str], statistics_from: list[IndexedChunk]
) -> dict[str, float]:
    """infuse's BM25 of ``items`` for ``terms``, with IDF counted over ``statistics_from``."""
    stats = TermStatistics.from_token_lists(i.tokens for i in statistics_from)
    tf = np.array([[i.tokens.count(t) for t in terms] for i in items], dtype=np.float64)
    lengths = np.array([len(i.tokens) for i in items], dtype=np.float64)
    average = float(np.mean([len(i.tokens) for i in statistics_from]))
    scores = bm25(tf, lengths, np.array([stats.idf(t) for t in terms]), average)
    return {i.chunk.chunk_id: float(s) for i, s in zip(items, scores) if s > 0}


def test_keyword_scores_in_the_engine_are_infuses_bm25(tmp_path: Path, local: QdrantStore) -> None:
    items = random_corpus(random.Random(3), 120)
    average = float(np.mean([len(i.tokens) for i in items]))
    engine = Engine(tmp_path / "edge", QdrantSettings(), local)
    engine.write(items, average)
    for terms in (["w0"], ["w3", "w17"], ["w1", "w2", "w29", "absent"]):
        expected = reference_bm25(items, terms, items)
        got = dict(engine.keywords(terms, 200))
        assert got.keys() == expected.keys()
        assert got == pytest.approx(expected, rel=1e-4)


def test_dense_and_keyword_lists_and_their_fusion_match_local_mode(tmp_path: Path, local: QdrantStore) -> None:
    rng = random.Random(5)
    items = random_corpus(rng, 80)
    records = [_record(i.chunk) for i in items]
    local.replace_documents(records, items)
    local.optimize()
    average = local._average_length()
    assert average is not None
    engine = Engine(tmp_path / "edge", QdrantSettings(), local)
    engine.write(items, average)
    for _ in range(10):
        vector, terms = unit(*(rng.random() for _ in range(DIM))), rng.sample([f"w{i}" for i in range(30)], 3)
        dense, lexical = local.ranked_lists(vector, terms, 20)
        edge_dense, edge_lexical = engine.dense(vector, 20), engine.keywords(terms, 20)
        assert [h.chunk.chunk_id for h in dense] == [cid for cid, _ in edge_dense]
        assert [h.score for h in dense] == pytest.approx([s for _, s in edge_dense], abs=1e-5)
        assert {h.chunk.chunk_id: h.score for h in lexical} == pytest.approx(dict(edge_lexical), rel=1e-4)
        fused = reciprocal_rank_fusion([[h.chunk.chunk_id for h in dense], [h.chunk.chunk_id for h in lexical]])
        edge_fused = reciprocal_rank_fusion([[c for c, _ in edge_dense], [c for c, _ in edge_lexical]])
        assert [c for c, _ in fused][:10] == [c for c, _ in edge_fused][:10]


def test_pinned_idf_counts_deleted_points_until_their_segment_is_vacuumed(tmp_path: Path, local: QdrantStore) -> None:
    # The known difference (qdrant/qdrant#6735): after a delete, the engine's IDF still counts the
    # deleted points, so keyword scores are those of the corpus *before* the delete, until the
    # optimizer vacuums the segment (deleted_threshold, vacuum_min_vector_number); then they are
    # exact again. LanceDB and local mode are exact at once.
    items = random_corpus(random.Random(9), 60)
    average = float(np.mean([len(i.tokens) for i in items]))
    settings = QdrantSettings(vacuum_deleted_threshold=0.2, vacuum_min_vector_number=10)
    engine = Engine(tmp_path / "edge", settings, local)
    engine.write(items, average)
    engine.delete(AnyOf("access", ["group:b"]))
    kept = [i for i in items if i.chunk.access == ("group:a",)]
    assert 10 < len(kept) < 50
    terms = ["w2", "w5"]
    stale = dict(engine.keywords(terms, 100))
    # IDF over every point ever written (deleted ones included); the length weights are as written.
    assert stale == pytest.approx(reference_bm25(kept, terms, items), rel=1e-4)
    assert stale != pytest.approx(reference_bm25(kept, terms, kept), rel=1e-3)
    assert engine.shard.optimize()  # the vacuum: more than 20% of the segment's points are deleted
    fresh = dict(engine.keywords(terms, 100))
    expected_idf = reference_bm25(kept, terms, kept)
    # IDF now counts the kept chunks only; the weights still use the average written with them,
    # so compare with that average (QdrantStore.optimize rewrites weights when it moves).
    by_written_average = _bm25_with_average(kept, terms, average)
    assert fresh == pytest.approx(by_written_average, rel=1e-4)
    assert fresh.keys() == expected_idf.keys()


def _bm25_with_average(items: list[IndexedChunk], terms: list[str], average: float) -> dict[str, float]:
    stats = TermStatistics.from_token_lists(i.tokens for i in items)
    tf = np.array([[i.tokens.count(t) for t in terms] for i in items], dtype=np.float64)
    lengths = np.array([len(i.tokens) for i in items], dtype=np.float64)
    scores = bm25(tf, lengths, np.array([stats.idf(t) for t in terms]), average)
    return {i.chunk.chunk_id: float(s) for i, s in zip(items, scores) if s > 0}


def _record(ch: Chunk) -> DocumentRecord:
    return DocumentRecord(document(ch.doc_id, access=ch.access), "pipeline-1", 1, "2026-01-01T00:00:00+00:00")
