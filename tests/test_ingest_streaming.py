"""Streaming ingest: a JSONL file past ``max_file_mb`` is read record by record, so what an ingest
holds is bounded by the batch, not the corpus; a killed ingest resumes without re-embedding what
was committed."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from infuse.config import EmbedderBackend, EmbedderSettings
from infuse.documents.loaders import LoadLimits, stream_file
from infuse.documents.models import Document
from infuse.embedders.hashing import HashingEmbedder
from infuse.errors import LoadError
from infuse.workspace import Workspace

LIMITS = {"max_file_mb": 0.01, "commit_every": 32}  # 10 kB: every corpus below is streamed


def records(path: Path, count: int, start: int = 0) -> Path:
    words = "budget renewal contract backup incident rotation policy holiday".split()
    with path.open("w", encoding="utf-8") as handle:
        for i in range(start, start + count):
            text = " ".join(words[(i * 7 + j) % len(words)] for j in range(250)) + f" record{i}"
            handle.write(json.dumps({"id": f"r{i}", "text": text}) + "\n")
    return path


def hashing_workspace(path: Path) -> Workspace:
    return Workspace.open(path, create=True, embedder={"backend": "hashing", "model": "hashing-64"}, ingest=LIMITS)


def test_a_jsonl_file_over_the_limit_is_streamed_with_errors_per_line(tmp_path: Path) -> None:
    path = records(tmp_path / "big.jsonl", 60)
    with path.open("ab") as handle:
        handle.write(b'{"id": "bad", \n')  # invalid JSON
        handle.write('{"id": "sjis", "text": "契約"}\n'.encode("cp932"))  # not UTF-8
        handle.write(b'{"id": "huge", "text": "' + b"x" * 20_000 + b'"}\n')  # one line over the limit
        handle.write(b'{"id": "last", "text": "the last record"}\n')
    items = list(stream_file(path, limits=LoadLimits(max_file_mb=0.01)))
    documents = [i for i in items if isinstance(i, Document)]
    errors = [i for i in items if isinstance(i, LoadError)]
    assert len(documents) == 61 and documents[-1].text == "the last record"
    assert [e.path.rsplit(":", 1)[1] for e in errors] == ["61", "62", "63"]
    assert "invalid JSON" in errors[0].reason and "must be UTF-8" in errors[1].reason
    assert "over the 0.01 MB limit" in errors[2].reason
    small = records(tmp_path / "small.jsonl", 2)
    assert [d.doc_id for d in stream_file(small, limits=LoadLimits(max_file_mb=0.01))] == [
        d.doc_id for d in stream_file(small)
    ]  # under the limit: read whole, the same documents


def _peak_python_memory(ws: Workspace, corpus: Path) -> int:
    ws.__dict__["embedder"] = CountingEmbedder()  # the store and the pipeline are measured, not hashing
    tracemalloc.start()
    try:
        report = ws.ingest([corpus], id_field="id")
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        assert report.ok, report.errors


@pytest.mark.slow
def test_memory_is_bounded_by_the_batch_not_the_corpus(tmp_path: Path) -> None:
    # Python's peak while ingesting 1,200 records grows over ingesting 150 (8x fewer) by less than
    # half a record's size per extra record, and stays under a third of the file: both hold one
    # record and one 32-chunk batch, plus an id per document. Loading the file whole (as before
    # streaming) makes the large run's peak grow with the file.
    small = _peak_python_memory(hashing_workspace(tmp_path / "ws1"), records(tmp_path / "small.jsonl", 150))
    large = _peak_python_memory(hashing_workspace(tmp_path / "ws2"), records(tmp_path / "large.jsonl", 1200))
    corpus_bytes = (tmp_path / "large.jsonl").stat().st_size
    per_record = (large - small) / (1200 - 150)  # what grows is per-document bookkeeping (ids), not text
    assert per_record < (corpus_bytes / 1200) / 2, (small, large, per_record)
    assert large < corpus_bytes / 3, (large, corpus_bytes)


class CountingEmbedder(HashingEmbedder):
    """Embeds ``budget`` batches (then fails: a kill in the middle of a long ingest) as the same
    unit vector, cheaply; counts what it embedded."""

    def __init__(self, budget: int = 10**9) -> None:
        super().__init__(EmbedderSettings(backend=EmbedderBackend.HASHING, model="hashing-64"))
        self.budget, self.embedded = budget, 0

    def embed_passages(self, texts: list[str], on_batch: object = None) -> np.ndarray:
        if self.budget == 0:
            raise KeyboardInterrupt("killed")
        self.budget -= 1
        self.embedded += len(texts)
        return np.full((len(texts), self.dimension), self.dimension**-0.5, dtype=np.float32)


def test_a_killed_ingest_resumes_where_it_stopped(tmp_path: Path) -> None:
    corpus = records(tmp_path / "corpus.jsonl", 200)
    ws = hashing_workspace(tmp_path / "ws")
    ws.__dict__["embedder"] = first = CountingEmbedder(budget=3)
    with pytest.raises(KeyboardInterrupt):
        ws.ingest([corpus], id_field="id")
    committed = ws.knowledge_snapshot().count_documents()
    assert 0 < committed < 200 and ws.knowledge_snapshot().count_chunks() == first.embedded  # three batches

    ws = hashing_workspace(tmp_path / "ws")
    ws.__dict__["embedder"] = second = CountingEmbedder()
    report = ws.ingest([corpus], id_field="id")
    assert (report.unchanged, report.added) == (committed, 200 - committed)
    assert ws.knowledge_snapshot().count_documents() == 200
    assert first.embedded + second.embedded == ws.knowledge_snapshot().count_chunks()  # nothing embedded twice
