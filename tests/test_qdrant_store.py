"""The KnowledgeStore contract against the Qdrant store in qdrant-client's local mode (the same
client and request objects as against a server), plus what only this store promises."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("qdrant_client")

from infuse.config import QdrantSettings, StoreBackend  # noqa: E402
from infuse.errors import ConfigError  # noqa: E402
from infuse.store.base import KnowledgeStore  # noqa: E402
from infuse.store.memory import InMemoryStore  # noqa: E402
from infuse.store.migrate import copy_store  # noqa: E402
from infuse.store.qdrant import QdrantStore, qm  # noqa: E402
from infuse.workspace import Workspace  # noqa: E402
from store_contract import DIM, MakeStore, StoreContract, chunk, document, unit, write  # noqa: E402


class TestQdrantStore(StoreContract):
    PINNED_SNAPSHOTS = False  # Qdrant has no point-in-time reads (docs/qdrant.md)

    @pytest.fixture
    def make_store(self, tmp_path: Path) -> MakeStore:
        return lambda dimension: QdrantStore(QdrantSettings(exact=True), "chunks", dimension, local_path=tmp_path / "q")


class _Observed:
    """The store's client, running ``check`` after every write request (upsert, delete, ...): what a
    concurrent reader would see between the requests of one replace."""

    WRITES = ("upsert", "delete", "set_payload", "update_vectors")

    def __init__(self, client: object, check: Callable[[], None]) -> None:
        self._client, self._check = client, check

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if name not in self.WRITES:
            return method

        def observed(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            self._check()
            return result

        return observed


def test_a_reader_between_the_requests_of_a_replace_never_sees_a_chunk_twice(tmp_path: Path) -> None:
    store = QdrantStore(QdrantSettings(), "chunks", DIM, local_path=tmp_path / "q")
    a, b = document("a"), document("b")
    write(store, a, *((chunk(a, i, f"renewal old {i}"), unit(1, i, 0, 0)) for i in range(5)))
    write(store, b, (chunk(b, 0, "renewal other"), unit(0, 1, 0, 0)))
    seen: list[list[str]] = []

    def check() -> None:
        dense, lexical = store.ranked_lists(unit(1, 1, 0, 0), ["renewal"], 20)
        for hits in (dense, lexical):
            ids = [h.chunk.chunk_id for h in hits]
            assert len(ids) == len(set(ids)), ids
            assert {h.chunk.doc_id for h in hits} == {"a", "b"}  # a document never vanishes mid-replace
        listed = [c.chunk_id for c in store.iter_chunks()]
        assert len(listed) == len(set(listed)) == store.count_chunks()
        seen.append(sorted(listed))

    store._client = _Observed(store._client, check)  # type: ignore[assignment]
    a2 = document("a", content_hash="h2")
    write(store, a2, *((chunk(a2, i, f"renewal new {i}"), unit(1, 0, i, 0)) for i in range(3)))
    # After the upsert the reader sees a's three rewritten chunks and the two the new version lacks
    # (documented); after the delete exactly the new version.
    assert seen[0] == ["a#c0", "a#c1", "a#c2", "a#c3", "a#c4", "b#c0"]
    assert seen[1] == seen[-1] == ["a#c0", "a#c1", "a#c2", "b#c0"]
    assert {c.text for c in store.iter_chunks() if c.doc_id == "a"} == {f"renewal new {i}" for i in range(3)}


def test_optimize_makes_keyword_scores_exact_bm25_after_the_average_length_moves(tmp_path: Path) -> None:
    # The first write fixes the average keyword count in the weights; a second write of much longer
    # chunks moves it. Before optimize the scores use the old average, after it they are BM25's.
    memory, store = InMemoryStore(DIM), QdrantStore(QdrantSettings(), "chunks", DIM, local_path=tmp_path / "q")
    a, b = document("a"), document("b")
    short = [(chunk(a, i, f"renewal terms {i}"), unit(1, i, 0, 0)) for i in range(3)]
    long = [(chunk(b, i, "renewal " + " ".join(f"w{j}" for j in range(20 + i))), unit(0, 1, i, 0)) for i in range(3)]
    for target in (memory, store):
        write(target, a, *short)
        write(target, b, *long)

    def scores(target: KnowledgeStore) -> dict[str, float]:
        return {h.chunk.chunk_id: h.score for h in target.lexical_search(["renewal", "w3"], 10)}

    expected = scores(memory)
    assert scores(store) != pytest.approx(expected, rel=1e-4)
    store.optimize()
    assert scores(store) == pytest.approx(expected, rel=1e-4)


def test_migrate_copies_a_knowledge_base_both_ways_without_embedding_again(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashing = {"backend": "hashing", "model": "hashing-64"}
    ws = Workspace.open(tmp_path / "ws", create=True, embedder=hashing)
    assert ws.ingest([corpus]).ok
    questions = ["API keys rotated", "backups kept", "リモートワーク 承認"]
    before = {q: [h.chunk.chunk_id for h in ws.search(q, k=3)] for q in questions}
    with pytest.raises(ConfigError, match="store.backend = 'qdrant'"):
        ws.migrate(StoreBackend.QDRANT)

    def embedding_forbidden(*args: Any) -> Any:
        raise AssertionError("migrate embedded a passage")

    for to in (StoreBackend.QDRANT, StoreBackend.LANCEDB):
        moved = Workspace.open(tmp_path / "ws", embedder=hashing, store={"backend": to.value})
        monkeypatch.setattr(type(moved.embedder), "embed_passages", embedding_forbidden)
        report = moved.migrate(to)
        assert (report.documents, report.chunks) == (5, moved.status().chunks)
        assert moved.status().store["backend"] == to.value and moved.manifest().store is to  # type: ignore[union-attr]
        assert {q: [h.chunk.chunk_id for h in moved.search(q, k=3)] for q in questions} == before


def test_the_migrate_command_says_what_it_copied(tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from infuse.cli import app

    ws = tmp_path / "ws"
    Workspace.open(ws, create=True)
    (ws / "infuse.toml").write_text('[embedder]\nbackend = "hashing"\nmodel = "hashing-64"\n', encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(app, ["-w", str(ws), "ingest", str(corpus)]).exit_code == 0
    refused = runner.invoke(app, ["-w", str(ws), "migrate", "--to", "qdrant"])
    assert refused.exit_code == 1 and "set store.backend = 'qdrant'" in refused.output
    monkeypatch.setenv("INFUSE_STORE__BACKEND", "qdrant")
    result = runner.invoke(app, ["-w", str(ws), "migrate", "--to", "qdrant", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["documents"] == 5
    hits = json.loads(runner.invoke(app, ["-w", str(ws), "search", "API keys rotated", "--json"]).output)
    assert hits and "keys.md" in json.dumps(hits)


def test_a_migration_killed_between_chunks_and_documents_is_simply_run_again(tmp_path: Path) -> None:
    source, target = InMemoryStore(DIM), QdrantStore(QdrantSettings(), "chunks", DIM, local_path=tmp_path / "q")
    a, b = document("a"), document("b")
    write(source, a, (chunk(a, 0, "renewal terms"), unit(1, 0, 0, 0)))
    write(source, b, (chunk(b, 0, "sales targets"), unit(0, 1, 0, 0)))
    # What a kill leaves: chunks of a document whose row was never written, and a stale document.
    orphan = document("gone")
    write(target, orphan, (chunk(orphan, 0, "old"), unit(0, 0, 1, 0)))
    target._client.delete(target._c.documents, qm.FilterSelector(filter=qm.Filter()), wait=True)
    report = copy_store(source, target)
    assert (report.documents, report.chunks) == (2, 2)
    assert sorted(target.chunk_ids()) == ["a#c0", "b#c0"]


def test_status_shows_where_each_store_keeps_the_knowledge_base(tmp_path: Path) -> None:
    from infuse.config import QdrantSettings, StoreBackend, StoreSettings
    from infuse.store.factory import store_location

    local = StoreSettings(backend=StoreBackend.QDRANT)
    server = StoreSettings(backend=StoreBackend.QDRANT, qdrant=QdrantSettings(url="http://qdrant:6333"))
    assert store_location(StoreBackend.QDRANT, tmp_path, local) == tmp_path / "qdrant"
    assert store_location(StoreBackend.QDRANT, tmp_path, server) == "http://qdrant:6333"
    s3 = StoreSettings(uri="s3://bucket/kb")
    assert store_location(StoreBackend.LANCEDB, tmp_path, s3) == "s3://bucket/kb"
    with pytest.raises(ValueError, match=r"store.uri \(s3://bucket/kb\) is where the LanceDB store"):
        StoreSettings(backend=StoreBackend.QDRANT, uri="s3://bucket/kb")  # a Qdrant server is qdrant.url
