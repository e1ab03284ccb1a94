"""Engine parity: the Qdrant store's points, filters and queries in the real Qdrant engine.

qdrant-client's local mode (tests/test_qdrant_store.py) is a Python re-implementation; qdrant-edge-py
runs Qdrant's own engine (Rust segments, sparse index, IDF, optimizers) in-process. Here the very
objects the store sends (points from ``QdrantStore._point``, filters from ``to_qdrant``, the
keyword query vector) are translated field by field into qdrant-edge's classes (infuse.store.qdrant_edge) and run there:
filters must mean what :func:`infuse.store.filters.matches` says, keyword scores must be infuse's
BM25, fused lists must equal the store's. The known difference is pinned, not hidden: the engine's
IDF keeps counting deleted points until their segment is vacuumed (qdrant/qdrant#6735).
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest

q = pytest.importorskip("qdrant_edge")


from infuse.config import QdrantSettings  # noqa: E402
from infuse.documents.models import Chunk  # noqa: E402
from infuse.language import Language  # noqa: E402
from infuse.retrieval.fusion import reciprocal_rank_fusion  # noqa: E402
from infuse.store.base import DocumentRecord, IndexedChunk, ScoredChunk, bm25  # noqa: E402
from infuse.store.filters import AnyOf, Filter, matches  # noqa: E402
from infuse.store.qdrant import QdrantStore  # noqa: E402
from infuse.store.qdrant_edge import EdgeEngine  # noqa: E402
from infuse.store.terms import TermStatistics  # noqa: E402
from store_contract import DIM, FILTERS, chunk, document, unit  # noqa: E402


def engine(path: Path, settings: QdrantSettings | None = None) -> EdgeEngine:
    return EdgeEngine(path, settings or QdrantSettings(), DIM)


def ids_scores(hits: list[ScoredChunk]) -> list[tuple[str, float]]:
    return [(h.chunk.chunk_id, h.score) for h in hits]


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
def test_filters_in_the_engine_mean_what_the_reference_says(tmp_path: Path, filter_: Filter) -> None:
    edge = engine(tmp_path / "edge")
    items = contract_corpus()
    edge.write(items, 3.0)
    expected = sorted(i.chunk.chunk_id for i in items if matches(filter_, dataclasses.asdict(i.chunk)))
    assert sorted(cid for cid, _ in ids_scores(edge.dense_search(unit(1, 1, 1, 1), 10, filter_))) == expected
    every_word = sorted({t for i in items for t in i.tokens})
    assert sorted(cid for cid, _ in ids_scores(edge.lexical_search(every_word, 10, filter_))) == expected


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


def test_keyword_scores_in_the_engine_are_infuses_bm25(tmp_path: Path) -> None:
    items = random_corpus(random.Random(3), 120)
    average = float(np.mean([len(i.tokens) for i in items]))
    edge = engine(tmp_path / "edge")
    edge.write(items, average)
    for terms in (["w0"], ["w3", "w17"], ["w1", "w2", "w29", "absent"]):
        expected = reference_bm25(items, terms, items)
        got = dict(ids_scores(edge.lexical_search(terms, 200)))
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
    edge = engine(tmp_path / "edge")
    edge.write(items, average)
    for _ in range(10):
        vector, terms = unit(*(rng.random() for _ in range(DIM))), rng.sample([f"w{i}" for i in range(30)], 3)
        dense, lexical = local.ranked_lists(vector, terms, 20)
        edge_dense, edge_lexical = ids_scores(edge.dense_search(vector, 20)), ids_scores(edge.lexical_search(terms, 20))
        assert [h.chunk.chunk_id for h in dense] == [cid for cid, _ in edge_dense]
        assert [h.score for h in dense] == pytest.approx([s for _, s in edge_dense], abs=1e-5)
        assert {h.chunk.chunk_id: h.score for h in lexical} == pytest.approx(dict(edge_lexical), rel=1e-4)
        fused = reciprocal_rank_fusion([[h.chunk.chunk_id for h in dense], [h.chunk.chunk_id for h in lexical]])
        edge_fused = reciprocal_rank_fusion([[c for c, _ in edge_dense], [c for c, _ in edge_lexical]])
        assert [c for c, _ in fused][:10] == [c for c, _ in edge_fused][:10]


def test_pinned_idf_counts_deleted_points_until_their_segment_is_vacuumed(tmp_path: Path) -> None:
    # The known difference (qdrant/qdrant#6735): after a delete, the engine's IDF still counts the
    # deleted points, so keyword scores are those of the corpus *before* the delete, until the
    # optimizer vacuums the segment (deleted_threshold, vacuum_min_vector_number); then they are
    # exact again. LanceDB and local mode are exact at once.
    items = random_corpus(random.Random(9), 60)
    average = float(np.mean([len(i.tokens) for i in items]))
    settings = QdrantSettings(vacuum_deleted_threshold=0.2, vacuum_min_vector_number=10)
    edge = engine(tmp_path / "edge", settings)
    edge.write(items, average)
    edge.delete(AnyOf("access", ["group:b"]))
    kept = [i for i in items if i.chunk.access == ("group:a",)]
    assert 10 < len(kept) < 50
    terms = ["w2", "w5"]
    stale = dict(ids_scores(edge.lexical_search(terms, 100)))
    # IDF over every point ever written (deleted ones included); the length weights are as written.
    assert stale == pytest.approx(reference_bm25(kept, terms, items), rel=1e-4)
    assert stale != pytest.approx(reference_bm25(kept, terms, kept), rel=1e-3)
    assert edge.shard.optimize()  # the vacuum: more than 20% of the segment's points are deleted
    fresh = dict(ids_scores(edge.lexical_search(terms, 100)))
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
