"""LanceDB indexes keep up with writes: the vector index is built past ``min_rows``, new rows join
both indexes incrementally on ``optimize``, the index is retrained when the table outgrows it, and
``infuse status`` / ``infuse optimize`` show the state."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from infuse.cli import app
from infuse.config import IndexSettings, VectorIndexKind
from infuse.store.base import DocumentRecord, IndexedChunk, IndexState
from infuse.store.filters import Eq
from infuse.store.lancedb import TRAINED_ROWS_KEY, VECTOR_INDEX, LanceDBStore
from store_contract import chunk, document

DIM = 32


def fill(store: LanceDBStore, start: int, stop: int, rng: np.random.Generator) -> np.ndarray:
    """One document per chunk, ``doc<i>``, with a random unit vector; returns the vectors."""
    vectors = rng.standard_normal((stop - start, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records, rows = [], []
    for offset, i in enumerate(range(start, stop)):
        doc = document(f"doc{i}", metadata={"bucket": str(i % 50)})
        records.append(DocumentRecord(doc, "pipeline-1", 1, "2026-01-01T00:00:00+00:00"))
        rows.append(IndexedChunk(chunk(doc, 0, f"word{i} shared"), (f"word{i}", "shared"), vectors[offset]))
    store.replace_documents(records, rows)  # one commit, as an ingest batch
    return vectors


def states(store: LanceDBStore) -> dict[str, IndexState]:
    return {s.column: s for s in store.index_states()}


def trained_rows(store: LanceDBStore) -> int:
    metadata = store._chunks.schema.field("vector").metadata or {}
    return int(metadata.get(TRAINED_ROWS_KEY.encode(), b"0"))


def test_vector_index_is_built_past_min_rows_kept_current_and_retrained(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    store = LanceDBStore(
        tmp_path / "lancedb", "chunks", DIM, index=IndexSettings(min_rows=300, nprobes=4, retrain_growth=1.5)
    )
    fill(store, 0, 200, rng)
    store.optimize()
    assert states(store)["vector"] == IndexState("vector", None, 0, 200)  # below min_rows: exact scans
    assert states(store)["tokens"].unindexed_rows == 0

    vectors = fill(store, 200, 320, rng)
    assert states(store)["tokens"].unindexed_rows == 120  # written since the last optimize
    store.optimize()
    vector = states(store)["vector"]
    assert (vector.kind, vector.indexed_rows, vector.unindexed_rows) == ("IVF_SQ", 320, 0)
    assert trained_rows(store) == 320

    fill(store, 320, 400, rng)  # 400 <= 1.5 x 320: new rows join the index, no retraining
    assert states(store)["vector"].unindexed_rows == 80
    store.optimize()
    assert (states(store)["vector"].indexed_rows, states(store)["vector"].unindexed_rows) == (400, 0)
    assert states(store)["tokens"] == IndexState("tokens", "FTS", 400, 0)
    assert trained_rows(store) == 320

    fill(store, 400, 500, rng)  # 500 > 1.5 x 320: retrained on every row
    store.optimize()
    assert trained_rows(store) == 500 and states(store)["vector"].indexed_rows == 500

    # The indexed search finds a stored vector first (exact re-ranking of the PQ candidates), a
    # snapshot sees the same index, and a narrow filter still gets k rows (probing goes on).
    hits = store.dense_search(vectors[5], 3)
    assert hits[0].chunk.doc_id == "doc205" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert store.snapshot().dense_search(vectors[5], 1)[0].chunk.doc_id == "doc205"
    narrow = store.dense_search(vectors[5], 10, Eq("bucket", "7"))
    assert len(narrow) == 10 and all(h.chunk.metadata["bucket"] == "7" for h in narrow)
    assert [h.chunk.doc_id for h in store.lexical_search(["word333"], 5)] == ["doc333"]


def test_no_vector_index_when_switched_off(tmp_path: Path) -> None:
    store = LanceDBStore(tmp_path / "lancedb", "chunks", DIM, index=IndexSettings(min_rows=256))
    fill(store, 0, 260, np.random.default_rng(1))
    store.optimize()
    assert states(store)["vector"].kind == "IVF_SQ"
    off = LanceDBStore(
        tmp_path / "lancedb", "chunks", DIM, index=IndexSettings(min_rows=256, vector=VectorIndexKind.NONE)
    )
    off.optimize()  # the operator switched the index off: it is dropped, searches are exact again
    assert states(off)["vector"].kind is None
    assert VECTOR_INDEX not in {i.name for i in off._chunks.list_indices()}
    with pytest.raises(ValueError, match='"none"'):
        off.build_vector_index()


def test_status_and_optimize_commands_show_the_indexes(tmp_path: Path, corpus: Path) -> None:
    runner = CliRunner()
    ws = tmp_path / "ws"
    assert runner.invoke(app, ["-w", str(ws), "ingest", str(corpus)]).exit_code == 0
    status = json.loads(runner.invoke(app, ["-w", str(ws), "status", "--json"]).stdout)
    indexes = {i["column"]: i for i in status["indexes"]}
    assert indexes["vector"]["kind"] is None and indexes["vector"]["unindexed_rows"] == status["chunks"]
    assert indexes["tokens"] == {
        "column": "tokens",
        "kind": "FTS",
        "indexed_rows": status["chunks"],
        "unindexed_rows": 0,  # ingest ends by bringing the keyword index up to date
    }
    table = runner.invoke(app, ["-w", str(ws), "status"]).stdout
    assert "vector: none (exact search of" in table and "keyword: FTS" in table
    result = runner.invoke(app, ["-w", str(ws), "optimize", "--json"])
    assert result.exit_code == 0, result.output
    assert {i["column"] for i in json.loads(result.stdout)["indexes"]} == {"vector", "tokens"}
    assert "keyword: FTS" in runner.invoke(app, ["-w", str(ws), "optimize"]).stdout


def test_a_maintenance_step_preempted_by_another_writer_runs_again_on_the_latest_version() -> None:
    # Two ingest workers compacting one table at once: LanceDB fails the later rewrite with a
    # retryable commit conflict (seen in test_two_ingest_processes_on_one_s3_table_lose_nothing).
    from infuse.store.lancedb import COMMIT_ATTEMPTS, retry_commit_conflicts

    class Table:
        refreshed = 0

        def checkout_latest(self) -> None:
            self.refreshed += 1

    failures = iter([True, True, False])
    calls: list[int] = []

    def step() -> None:
        calls.append(1)
        if next(failures):
            raise RuntimeError("lance error: Retryable commit conflict for version 22: preempted")

    table = Table()
    retry_commit_conflicts(step, table)
    assert len(calls) == 3 and table.refreshed == 2

    def other_error() -> None:
        calls.append(1)
        raise RuntimeError("lance error: not found")

    calls.clear()
    with pytest.raises(RuntimeError, match="not found"):
        retry_commit_conflicts(other_error, table)
    assert len(calls) == 1  # only conflicts are retried

    def always() -> None:
        calls.append(1)
        raise RuntimeError("Retryable commit conflict")

    calls.clear()
    with pytest.raises(RuntimeError, match="Retryable commit conflict"):
        retry_commit_conflicts(always, table)
    assert len(calls) == COMMIT_ATTEMPTS  # then the conflict is reported


def test_optimize_builds_scalar_indexes_that_a_callers_prefilter_uses(tmp_path: Path) -> None:
    """Ids and the access list get scalar indexes with the others; a caller's access filter is then
    answered from the access index, and gives the same rows, indexed or written since."""
    from infuse.access import Caller, DefaultPolicy
    from infuse.store.filters import access_filter

    store = LanceDBStore(tmp_path / "lancedb", "chunks", DIM, index=IndexSettings())
    rng = np.random.default_rng(2)
    lists = [("group:g1",), ("group:g2",), ("group:g1", "deny:user:bob"), ("everyone",)]

    def write(start: int, stop: int) -> None:
        records, rows = [], []
        for i in range(start, stop):
            doc = document(f"doc{i}", access=lists[i % len(lists)])
            records.append(DocumentRecord(doc, "pipeline-1", 1, "2026-01-01T00:00:00+00:00"))
            vector = rng.standard_normal(DIM).astype(np.float32)
            rows.append(IndexedChunk(chunk(doc, 0, f"word{i} shared"), (f"word{i}", "shared"), vector))
        store.replace_documents(records, rows)

    write(0, 40)
    store.optimize()
    chunk_indexes = {tuple(i.columns): i.index_type for i in store._chunks.list_indices()}
    assert chunk_indexes[("chunk_id",)] == chunk_indexes[("doc_id",)] == "BTree"
    assert chunk_indexes[("access",)] == "LabelList"
    assert {tuple(i.columns) for i in store._documents.list_indices()} == {("doc_id",)}

    bob = access_filter(Caller("bob", groups=("g1",)), DefaultPolicy.ADMINS)
    where = store._where(bob, exclude_flagged=False)
    assert where is not None and "coalesce" not in where  # the indexable form (see filter_to_sql)
    plan = store._chunks.search().where(where).select(["chunk_id"]).explain_plan(True)
    assert "ScalarIndexQuery" in plan and "access_idx" in plan

    def readable() -> set[str]:
        return {h.chunk.doc_id for h in store.lexical_search(["shared"], 100, bob)}

    expected = {f"doc{i}" for i in range(40) if i % 4 in (0, 3)}  # g1 or everyone, never denied
    assert readable() == expected
    write(40, 48)  # not in the indexes yet: scanned, filtered the same way
    assert readable() == expected | {f"doc{i}" for i in range(40, 48) if i % 4 in (0, 3)}
    dense = store.dense_search(rng.standard_normal(DIM).astype(np.float32), 100, bob)
    assert {h.chunk.doc_id for h in dense} == readable()


def test_a_none_of_keeps_rows_without_the_column_unless_another_clause_needs_it() -> None:
    from infuse.store.filters import AllOf, AnyOf, NoneOf
    from infuse.store.lancedb import filter_to_sql

    deny = NoneOf("access", ["deny:user:bob"])
    assert filter_to_sql(deny) == "coalesce(NOT (array_has_any(access, ['deny:user:bob'])), true)"
    # Only rows listing a principal pass the first clause, so the null guard is dropped ...
    both = filter_to_sql(AllOf([AnyOf("access", ["user:bob"]), deny]))
    assert both == "(array_has_any(access, ['user:bob'])) AND (NOT (array_has_any(access, ['deny:user:bob'])))"
    # ... but not for a clause on another column.
    assert "coalesce" in str(filter_to_sql(AllOf([AnyOf("lang", ["en"]), deny])))


def test_rows_from_before_the_access_column_pass_a_none_of_and_never_a_callers_filter(tmp_path: Path) -> None:
    from infuse.access import Caller, DefaultPolicy
    from infuse.store.filters import NoneOf, access_filter

    store = LanceDBStore(tmp_path / "lancedb", "chunks", DIM, index=IndexSettings())
    fill(store, 0, 6, np.random.default_rng(3))
    store.set_access([f"doc{i}" for i in range(2, 6)], ["everyone"])
    store.optimize()
    store._chunks.update(where="doc_id IN ('doc0', 'doc1')", values_sql={"access": "NULL"})  # an old table's rows
    deny = NoneOf("access", ["deny:user:bob"])
    assert {h.chunk.doc_id for h in store.lexical_search(["shared"], 10, deny)} == {f"doc{i}" for i in range(6)}
    bob = access_filter(Caller("bob", groups=("g1",)), DefaultPolicy.ADMINS)
    everyone = {h.chunk.doc_id for h in store.lexical_search(["shared"], 10, bob)}
    assert everyone == {f"doc{i}" for i in range(2, 6)}


def test_rows_read_by_id_after_a_compaction_are_never_other_rows(tmp_path: Path) -> None:
    """Searches return row ids and read the rows afterwards: a row id from before a compaction
    names nothing afterwards (never another chunk), and a writer's search simply searches again."""
    store = LanceDBStore(tmp_path / "lancedb", "chunks", DIM, index=IndexSettings())
    rng = np.random.default_rng(5)
    fill(store, 0, 20, rng)
    fill(store, 20, 40, rng)  # two fragments
    before = store._lexical_hits(["shared"], 50, None, scoped=False)
    assert len(before) == 40
    store.delete_documents(["doc3"])
    store.optimize()  # compaction: every row moves to a new fragment
    assert store._read_rows([row_id for row_id, _ in before]) == {}
    hits = store.lexical_search(["shared"], 50)
    assert len(hits) == 39 and "doc3" not in {h.chunk.doc_id for h in hits}
    assert [h.chunk.doc_id for h in store.lexical_search(["word7"], 5)] == ["doc7"]


def test_both_lists_at_once_equal_each_search_alone(tmp_path: Path) -> None:
    """ranked_lists runs the dense leg in a worker thread and reads both lists' rows in one take:
    the lists must be exactly the two searches' own, with and without a caller's filter."""
    from infuse.access import Caller, DefaultPolicy
    from infuse.store.filters import access_filter

    store = LanceDBStore(tmp_path / "lancedb", "chunks", DIM, index=IndexSettings(min_rows=256, nprobes=4))
    rng = np.random.default_rng(6)
    vectors = fill(store, 0, 300, rng)
    store.set_access([f"doc{i}" for i in range(0, 300, 3)], ["group:g1"])
    store.optimize()
    bob = access_filter(Caller("bob", groups=("g1",)), DefaultPolicy.ADMINS)
    for filters in (None, bob):
        for query in (vectors[7], vectors[100]):
            dense, lexical = store.ranked_lists(query, ["shared", "word99"], 20, filters)
            assert [(h.chunk, h.score) for h in dense] == [
                (h.chunk, h.score) for h in store.dense_search(query, 20, filters)
            ]
            assert [(h.chunk, h.score) for h in lexical] == [
                (h.chunk, h.score) for h in store.lexical_search(["shared", "word99"], 20, filters)
            ]
            assert len(dense) == 20 and len(lexical) == 20
            if filters is not None:
                assert all(h.chunk.access == ("group:g1",) for h in [*dense, *lexical])
