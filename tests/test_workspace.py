"""Integration tests on a real workspace: real LanceDB, real MiniLM, real files."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import lancedb
import pytest
from filelock import FileLock

from conftest import CORPUS, write_corpus
from infuse.config import SearchMode
from infuse.errors import EmbedderMismatchError, WorkspaceBusyError, WorkspaceNotFoundError
from infuse.store.filters import AnyOf, Eq, FilterError
from infuse.workspace import Workspace


def _chunk_rows(ws: Workspace) -> dict[str, tuple]:
    """chunk_id -> (text, content_hash, vector) straight from the chunk table."""
    table = lancedb.connect(str(ws.kb_dir / "lancedb")).open_table(ws.manifest().chunks_table)
    rows = table.search().select(["chunk_id", "text", "content_hash", "vector"]).limit(None).to_list()
    return {r["chunk_id"]: (r["text"], r["content_hash"], tuple(r["vector"])) for r in rows}


def test_ingest_then_search_finds_the_right_document_in_both_languages(workspace: Workspace, corpus: Path) -> None:
    report = workspace.ingest([corpus])
    assert (report.added, report.failed) == (len(CORPUS), 0)
    assert workspace.status().documents == len(CORPUS)

    top = workspace.search("how often are API keys rotated", k=3)[0]
    assert top.chunk.source_path.endswith("keys.md")
    assert top.chunk.heading_path == ("Security", "API keys")
    assert Path(top.chunk.source_path).read_text(encoding="utf-8")[top.chunk.start : top.chunk.end] == top.chunk.text

    top_ja = workspace.search("有給休暇は何日", k=3)[0]
    assert top_ja.chunk.source_path.endswith("vacation_ja.txt")
    assert top_ja.chunk.lang == "ja"
    for mode in SearchMode:
        assert workspace.search("backups kept days", k=1, mode=mode)[0].chunk.source_path.endswith("backups.txt")


def test_unchanged_reingest_embeds_nothing_and_keeps_counts(tmp_path: Path, corpus: Path) -> None:
    Workspace.open(tmp_path / "ws", create=True).ingest([corpus])
    before = _chunk_rows(Workspace.open(tmp_path / "ws"))

    fresh = Workspace.open(tmp_path / "ws")
    report = fresh.ingest([corpus])
    assert (report.unchanged, report.added, report.updated, report.chunks_written) == (len(CORPUS), 0, 0, 0)
    assert "model" not in fresh.embedder.__dict__, "an unchanged corpus must not even load the embedder"
    assert _chunk_rows(fresh) == before


def test_modifying_one_file_replaces_only_its_chunks(workspace: Workspace, corpus: Path) -> None:
    workspace.ingest([corpus])
    before = _chunk_rows(workspace)
    (corpus / "backups.txt").write_text("Backups now run every hour and are kept for 90 days.\n", encoding="utf-8")

    report = workspace.ingest([corpus])
    assert (report.updated, report.unchanged, report.added) == (1, len(CORPUS) - 1, 0)
    after = _chunk_rows(workspace)
    changed = {cid for cid in before.keys() | after.keys() if before.get(cid) != after.get(cid)}
    assert changed and all("backups.txt" in cid for cid in changed)
    assert len(after) == len(before)
    assert "every hour" in workspace.search("how often do backups run", k=1)[0].chunk.text


def test_shrinking_document_drops_its_extra_chunks(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    long = "\n\n".join(f"Paragraph {i} talks about topic number {i} in some detail." for i in range(40))
    (corpus / "long.txt").write_text(long, encoding="utf-8")
    ws = Workspace.open(tmp_path / "ws", create=True, chunking={"size": 32, "overlap": 0})
    ws.ingest([corpus])
    many = ws.status().chunks
    (corpus / "long.txt").write_text("Now a single short paragraph.", encoding="utf-8")
    ws.ingest([corpus])
    assert many > 5 and ws.status().chunks == 1


def test_deleted_file_stays_until_prune(workspace: Workspace, corpus: Path) -> None:
    workspace.ingest([corpus])
    chunks_before = workspace.status().chunks
    (corpus / "incidents.md").unlink()

    kept = workspace.ingest([corpus])
    assert kept.pruned == 0 and workspace.status().documents == len(CORPUS)

    pruned = workspace.ingest([corpus], prune=True)
    assert pruned.pruned == 1
    status = workspace.status()
    assert status.documents == len(CORPUS) - 1 and status.chunks < chunks_before
    assert all("incidents" not in h.chunk.source_path for h in workspace.search("SEV1 page acknowledged", k=10))


def test_jsonl_records_sync_by_id_field(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "faq.jsonl"
    path.write_text(
        '{"id": "a", "text": "Invoices are issued monthly.", "team": "billing"}\n'
        '{"id": "b", "text": "The rate limit is 600 requests per minute.", "team": "platform"}\n',
        encoding="utf-8",
    )
    workspace.ingest([path], id_field="id")
    hit = workspace.search("rate limit", k=1)[0]
    assert hit.chunk.doc_id == "b" and hit.chunk.metadata == {"team": "platform"}

    path.write_text(
        '{"id": "a", "text": "Invoices are issued every two weeks.", "team": "billing"}\n', encoding="utf-8"
    )
    report = workspace.ingest([path], id_field="id", prune=True)
    assert (report.updated, report.pruned) == (1, 1)
    assert [h.chunk.doc_id for h in workspace.search("rate limit", k=5)] == ["a"]


def test_partial_failure_ingests_the_rest_and_is_reported(workspace: Workspace, corpus: Path) -> None:
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
    (corpus / "blob.txt").write_bytes(bytes(range(256)) * 4)
    report = workspace.ingest([corpus, corpus / "missing.md"])
    assert report.added == len(CORPUS)
    failed = {Path(e["path"]).name: e["error"] for e in report.errors}
    assert set(failed) == {"broken.pdf", "blob.txt", "missing.md"}
    assert "binary" in failed["blob.txt"] and "PDF" in failed["broken.pdf"]
    assert workspace.status().last_sync["failed"] == 3


def test_filters_on_columns_and_metadata(workspace: Workspace, corpus: Path, tmp_path: Path) -> None:
    records = tmp_path / "products.jsonl"
    records.write_text(
        '{"id": "p1", "text": "Compute instances start in two seconds.", "category": "compute"}\n'
        '{"id": "p2", "text": "The object store keeps versions of every object.", "category": "storage"}\n',
        encoding="utf-8",
    )
    workspace.ingest([corpus, records], id_field="id")
    assert {h.chunk.lang for h in workspace.search("days", k=10, filters={"lang": "ja"})} == {"ja"}
    assert [h.chunk.doc_id for h in workspace.search("start seconds", k=10, filters={"category": "storage"})] == ["p2"]
    source = str((corpus / "keys.md").resolve())
    assert {h.chunk.source_path for h in workspace.search("days", k=10, filters={"source_path": source})} == {source}


def test_filters_are_checked_against_the_schema_before_the_store_sees_them(
    workspace: Workspace, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace.ingest([corpus])
    with pytest.raises(FilterError, match=r"filter page='abc': page is a whole number"):
        workspace.search("days", filters={"page": "abc"})
    with pytest.raises(FilterError, match=r"unknown filter key 'langg'. Did you mean 'lang'\?"):
        workspace.search("days", filters=Eq("langg", "ja"))
    with pytest.raises(FilterError, match=r"filter lang='de': lang is one of en, ja"):
        workspace.retriever(filters=AnyOf("lang", ["en", "de"])).search("days", 3)
    assert workspace.search("days", filters={"page": "1"}) == []  # a number as text is a number: no pages here
    monkeypatch.chdir(corpus)
    relative = workspace.search("API keys", k=10, filters={"source_path": "keys.md"})
    assert relative and {h.chunk.source_path for h in relative} == {(corpus / "keys.md").resolve().as_posix()}


def test_retriever_and_pipeline_take_a_search_mode(workspace: Workspace, corpus: Path) -> None:
    workspace.ingest([corpus])
    lexical = workspace.retriever(mode=SearchMode.LEXICAL).search("API keys rotated", 3)
    assert lexical and all(h.dense_score is None and h.lexical_score is not None for h in lexical)
    hybrid = workspace.retriever().search("API keys rotated", 3)
    assert any(h.dense_score is not None for h in hybrid)


def test_fused_scores_follow_rrf(workspace: Workspace, corpus: Path) -> None:
    from infuse.config import FusionMethod, FusionWeights
    from infuse.language import Language

    workspace.settings.search.weights[Language.EN] = FusionWeights(method=FusionMethod.RRF, dense=0.25)
    workspace.ingest([corpus])
    hits = workspace.search("API keys rotated", k=5, mode=SearchMode.HYBRID)
    weights = workspace.settings.search.weights["en"]
    for hit in hits:
        expected = 0.0
        if hit.dense_rank:
            expected += weights.dense / (60 + hit.dense_rank)
        if hit.lexical_rank:
            expected += weights.lexical / (60 + hit.lexical_rank)
        assert hit.fused_score == pytest.approx(expected)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_fused_scores_of_a_new_workspace_follow_relative_score_fusion(workspace: Workspace, corpus: Path) -> None:
    from infuse.config import FusionMethod

    weights = workspace.settings.search.weights["en"]
    assert weights.method is FusionMethod.RELATIVE_SCORE and 0 < weights.dense < weights.lexical
    workspace.ingest([corpus])
    hits = workspace.search("how many days are API keys and backups kept", k=50, mode=SearchMode.HYBRID)
    dense = [h.dense_score for h in hits if h.dense_score is not None]
    lexical = [h.lexical_score for h in hits if h.lexical_score is not None]
    assert len(dense) > 1 and len(lexical) > 1
    for hit in hits:
        expected = 0.0
        if hit.dense_score is not None:
            expected += weights.dense * (hit.dense_score - min(dense)) / (max(dense) - min(dense))
        if hit.lexical_score is not None:
            expected += weights.lexical * (hit.lexical_score - min(lexical)) / (max(lexical) - min(lexical))
        assert hit.fused_score == pytest.approx(expected)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_reranker_reorders_by_cross_encoder_scores(tmp_path: Path, corpus: Path, tiny_cross_encoder_dir: str) -> None:
    from sentence_transformers import CrossEncoder

    ws = Workspace.open(tmp_path / "ws", create=True, search={"reranker": tiny_cross_encoder_dir, "rerank_depth": 5})
    ws.ingest([corpus])
    hits = ws.search("API keys rotated", k=5)
    expected = CrossEncoder(tiny_cross_encoder_dir).predict([("API keys rotated", h.chunk.text) for h in hits])
    assert [h.rerank_score for h in hits] == pytest.approx([float(s) for s in expected], abs=1e-5)
    assert [h.rerank_score for h in hits] == sorted((h.rerank_score for h in hits), reverse=True)


def test_other_embedder_is_a_clear_error_until_reindex(tmp_path: Path, corpus: Path, tiny_embedder_dir: str) -> None:
    Workspace.open(tmp_path / "ws", create=True).ingest([corpus])
    other = Workspace.open(tmp_path / "ws", embedder={"model": tiny_embedder_dir})
    with pytest.raises(EmbedderMismatchError, match="infuse .*reindex"):
        other.search("API keys")
    assert other.search("API keys", mode=SearchMode.LEXICAL)[0].chunk.source_path.endswith("keys.md")

    report = other.reindex()
    assert report.updated == len(CORPUS)
    assert other.status().embedder["dimension"] == 32
    assert len(other.search("API keys", k=3)) == 3
    with pytest.raises(EmbedderMismatchError):
        Workspace.open(tmp_path / "ws").search("API keys")


def test_second_writer_fails_clearly_or_waits(workspace: Workspace, corpus: Path) -> None:
    holder = FileLock(str(workspace.lock_path), thread_local=False)
    holder.acquire()
    try:
        with pytest.raises(WorkspaceBusyError, match="another ingest"):
            workspace.ingest([corpus])
        assert workspace.status().ingest_running
        waiting = Workspace.open(workspace.path, ingest={"lock_timeout": 30})
        threading.Timer(1.0, holder.release).start()
        started = time.monotonic()
        report = waiting.ingest([corpus])
        assert time.monotonic() - started >= 0.9 and report.added == len(CORPUS)
    finally:
        if holder.is_locked:
            holder.release()


def test_search_during_ingest_sees_whole_documents(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "c", {f"doc{i}.txt": f"Version one of document {i}. " * 30 for i in range(12)})
    ws = Workspace.open(tmp_path / "ws", create=True, ingest={"commit_every": 3}, chunking={"size": 48, "overlap": 8})
    ws.ingest([corpus])
    failures: list[str] = []
    done = threading.Event()

    def writer() -> None:
        try:
            for version in ("two", "three", "four"):
                for i in range(12):
                    (corpus / f"doc{i}.txt").write_text(
                        f"Version {version} of document {i}. " * (20 + i), encoding="utf-8"
                    )
                ws.ingest([corpus])
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    reader = Workspace.open(tmp_path / "ws")
    searches = 0
    while not done.is_set() or searches == 0:
        hits = reader.search("version of document", k=100)
        searches += 1
        ids = [h.chunk.chunk_id for h in hits]
        if len(ids) != len(set(ids)):
            failures.append(f"duplicate chunks: {ids}")
        hashes: dict[str, set[str]] = {}
        for hit in hits:
            hashes.setdefault(hit.chunk.doc_id, set()).add(hit.chunk.content_hash)
        failures.extend(f"{doc} mixes versions" for doc, seen in hashes.items() if len(seen) > 1)
    thread.join()
    assert searches > 1 and not failures, failures[:3]


def test_opening_a_missing_workspace_read_only_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceNotFoundError, match="infuse -w"):
        Workspace.open(tmp_path / "nothing")


def test_empty_workspace_searches_to_nothing(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws", create=True)
    assert ws.search("anything") == [] and ws.status().documents == 0


def test_two_reindexes_in_the_same_second_each_write_a_fresh_table(
    workspace: Workspace, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table name carries the time to the second; two reindexes inside one second must not
    share a table (the second would write into the one in service, then drop nothing)."""
    monkeypatch.setattr("infuse.workspace.utc_stamp", lambda: "20261203-120000")
    workspace.ingest([corpus])
    before = _chunk_rows(workspace)
    tables = []
    for _ in range(2):
        workspace.reindex()
        tables.append(workspace.manifest().chunks_table)
        assert _chunk_rows(workspace) == before, "the same chunks and vectors, none doubled or lost"
    assert tables[0] != tables[1]
    on_disk = sorted(p.name for p in (workspace.kb_dir / "lancedb").glob("chunks*.lance"))
    assert on_disk == [f"{tables[1]}.lance"]
