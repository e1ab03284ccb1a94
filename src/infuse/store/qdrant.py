"""Qdrant implementation of :class:`~infuse.store.base.KnowledgeStore` (``[store] backend = "qdrant"``).

Why: a dedicated engine for collections beyond one machine (shards, replicas, Raft), with the same
results as the embedded LanceDB store. The same code talks to a server (``[store.qdrant] url``)
or runs in qdrant-client's local mode (files under the workspace, pure Python, for tests and
small knowledge bases): the request objects are the same.

Mapping (one point per chunk, id = UUID5 of the chunk id, so a chunk is never stored twice):

- named dense vector ``dense`` (cosine) and named sparse vector ``keywords``: infuse's *own*
  keyword tokens (:mod:`infuse.retrieval.lexical`) as hashed term ids (:func:`term_id`, 32 bits)
  whose weights are BM25's term-frequency part; the sparse vector's ``modifier: idf`` makes Qdrant
  multiply in BM25's IDF, so a query of weight-1 terms scores exactly BM25 (k1 1.2, b 0.75). The
  length normalisation uses the average keyword count stored in the collection's metadata;
  :meth:`QdrantStore.optimize` rewrites the weights when the live average moved by more than
  ``length_drift``.
- payload: the chunk's fields (:class:`~infuse.documents.models.Chunk`), ``tags`` (metadata as
  ``key=value`` strings, as LanceDB filters them), ``tokens`` and ``n_keywords``.
- documents: a second collection ``<collection>_documents`` of vector-less points.

What Qdrant does not give, and what this store does instead:

- No multi-point transaction. Replacing a document upserts its new chunks, then deletes (by
  filter) the document's chunks whose ids were not written. A concurrent reader may see, for a
  moment, the new chunks next to old chunks of the same document that the new version no longer
  has (never the same chunk twice, never a document with no chunks). ``set_access`` is one
  set-payload request, applied point by point: a reader may briefly see part of a document's
  chunks with the new list.
- No cross-request snapshot: :meth:`QdrantStore.snapshot` is a read-only view of the live
  collection (``PINNED_SNAPSHOTS`` is False in the contract suite). :meth:`QdrantStore.ranked_lists`
  gets the dense and keyword lists of a search in one batch request, so they are computed together.
- IDF is per shard, and deleted points count in it until their segment is vacuumed
  (qdrant/qdrant#6735): vacuum thresholds are settings; benchmarks/qdrant_idf_deletes.py measures
  the effect. A search scoped to one caller (a filter naming ``access``) must not weigh terms by
  chunks the caller cannot read, so infuse scores it itself (:func:`~infuse.store.base.bm25` over
  the chunks passing the filter, read by paging), exactly as the LanceDB store does.
- Corpus statistics (term statistics, iteration, flagged chunks) are read by paging (``scroll``);
  counts by language are one exact ``count`` per language.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from infuse.config import QdrantSettings
from infuse.documents.models import Chunk, Document, FileType, Section
from infuse.language import Language
from infuse.store.base import (
    BM25_B,
    BM25_K1,
    TIE_MARGIN,
    DocumentRecord,
    DocumentState,
    IndexedChunk,
    IndexState,
    ScoredChunk,
    access_column,
    best_first,
    bm25,
)
from infuse.store.filters import ACCESS_FIELD, CHUNK_FIELDS, AllOf, Eq, Filter, NoneOf, names_field
from infuse.store.lancedb import CHUNK_TABLE_PREFIX, metadata_tag
from infuse.store.terms import TermStatistics

try:
    from qdrant_client import QdrantClient
    from qdrant_client import models as qm
except ImportError as exc:  # pragma: no cover - the extra is installed in dev
    raise ImportError("the Qdrant store needs qdrant-client: pip install 'infuse[qdrant]'") from exc

DENSE, KEYWORDS = "dense", "keywords"
AVERAGE_LENGTH = "infuse_average_keywords"  # collection metadata key
PAGE = 512  # points per scroll page and per upsert batch
_NAMESPACE = uuid.UUID("6f1d3c52-8b0e-4c7a-9a51-2f0c1e7d9b44")
_KEYWORD_FIELDS = (*CHUNK_FIELDS, ACCESS_FIELD, "tags", "tokens", "flags", "chunk_id")
_CLIENTS: dict[str, QdrantClient] = {}  # local mode: one client per folder and process (it locks the folder)
_CLIENTS_LOCK = threading.Lock()


@atexit.register
def _close_clients() -> None:
    """Close local-mode clients while the interpreter can still run their clean-up."""
    with _CLIENTS_LOCK:
        for client in _CLIENTS.values():
            client.close()
        _CLIENTS.clear()


def term_id(token: str) -> int:
    """A keyword's sparse-vector index: 32 bits of its BLAKE2b hash (stable across processes and
    machines). Two keywords may share an id (about one pair among 65,000 distinct keywords)."""
    return int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=4).digest(), "little")


def point_id(chunk_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, chunk_id))


def keyword_vector(tokens: Sequence[str], average_length: float) -> qm.SparseVector:
    """BM25's term-frequency part of each keyword (k1 1.2, b 0.75, the given average length)."""
    counts = Counter(term_id(t) for t in tokens)
    norm = BM25_K1 * (1 - BM25_B + BM25_B * len(tokens) / (average_length or 1))
    ids = sorted(counts)
    return qm.SparseVector(indices=ids, values=[c * (BM25_K1 + 1) / (c + norm) for c in (counts[i] for i in ids)])


def query_vector(tokens: Sequence[str]) -> qm.SparseVector:
    ids = sorted({term_id(t) for t in tokens})
    return qm.SparseVector(indices=ids, values=[1.0] * len(ids))


# --- payloads: one conversion per record, driven by the dataclass fields ----------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, (FileType, Language)):
        return value.value
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Section):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return dict(value)
    return value


def _chunk_payload(item: IndexedChunk) -> dict[str, Any]:
    chunk = item.chunk
    payload = {f.name: _plain(getattr(chunk, f.name)) for f in fields(chunk)}
    payload["metadata"] = dict(chunk.metadata)
    payload["tags"] = [metadata_tag(k, v) for k, v in chunk.metadata.items() if v is not None]
    payload["tokens"] = list(item.tokens)
    payload["n_keywords"] = len(item.tokens)
    return payload


_CHUNK_READ = {"file_type": FileType, "lang": Language, "heading_path": tuple, "flags": tuple, "access": tuple}
_DOCUMENT_READ: dict[str, Any] = {
    "file_type": FileType,
    "hidden_text": tuple,
    "access": tuple,
    "sections": lambda v: tuple(Section(s["start"], s["end"], tuple(s["heading_path"]), s["page"]) for s in v),
}
_CHUNK_FIELD_NAMES = [f.name for f in fields(Chunk)]
_DOCUMENT_FIELD_NAMES = [f.name for f in fields(Document)]
_INGEST_FIELDS = ("pipeline", "n_chunks", "ingested_at")


def chunk_from_payload(payload: dict[str, Any]) -> Chunk:
    """The chunk a point's payload holds."""
    return Chunk(**{n: _CHUNK_READ.get(n, _same)(payload[n]) for n in _CHUNK_FIELD_NAMES if n in payload})


def _same(value: Any) -> Any:
    return value


def _document_payload(record: DocumentRecord) -> dict[str, Any]:
    payload = {n: _plain(getattr(record.document, n)) for n in _DOCUMENT_FIELD_NAMES}
    payload.update({n: getattr(record, n) for n in _INGEST_FIELDS})
    return payload


def _record(payload: dict[str, Any]) -> DocumentRecord:
    document = Document(**{n: _DOCUMENT_READ.get(n, _same)(payload[n]) for n in _DOCUMENT_FIELD_NAMES})
    return DocumentRecord(document, **{n: payload[n] for n in _INGEST_FIELDS})


# --- filters ----------------------------------------------------------------------------------------

_NOTHING = qm.Filter(must_not=[qm.Filter()])  # an empty filter matches everything: not it, nothing


def _any_of(field: str, values: Sequence[Any]) -> qm.FieldCondition:
    if field in CHUNK_FIELDS or field == ACCESS_FIELD:
        return qm.FieldCondition(key=field, match=qm.MatchAny(any=list(values)))
    return qm.FieldCondition(key="tags", match=qm.MatchAny(any=[metadata_tag(field, v) for v in values]))


def to_qdrant(filter_: Filter | None) -> qm.Filter | None:
    """Qdrant's filter for a typed filter (same meaning as :func:`infuse.store.filters.matches`).

    Chunk columns and the access list match by value (a list field when it shares a value); any
    other field through ``tags``. ``NoneOf`` is ``must_not``, which a missing field passes."""
    if filter_ is None:
        return None
    if isinstance(filter_, AllOf):
        return qm.Filter(must=[c for c in (to_qdrant(clause) for clause in filter_.clauses) if c is not None])
    values = (filter_.value,) if isinstance(filter_, Eq) else filter_.values
    if isinstance(filter_, NoneOf):
        return qm.Filter(must_not=[_any_of(filter_.field, values)]) if values else qm.Filter()
    return qm.Filter(must=[_any_of(filter_.field, values)]) if values else _NOTHING


_UNFLAGGED = qm.IsEmptyCondition(is_empty=qm.PayloadField(key="flags"))


def _with(filter_: qm.Filter | None, *conditions: Any) -> qm.Filter | None:
    parts = [c for c in (filter_, *conditions) if c is not None]
    return qm.Filter(must=parts) if parts else None


@dataclass(frozen=True)
class Collections:
    """The names of one knowledge base's collections."""

    chunks: str
    documents: str
    prefix: str


class _OneCallAtATime:
    """A local-mode client whose calls never overlap: local mode is plain Python dictionaries and
    SQLite, not made for a server's threads reading while an ingest writes."""

    def __init__(self, client: QdrantClient) -> None:
        self._client, self._lock = client, threading.RLock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attribute(*args, **kwargs)

        return call


def connect(settings: QdrantSettings, local_path: Path | None) -> QdrantClient:
    """A client for the server at ``settings.url``, else local mode in ``local_path`` (one per
    folder and process: local mode locks its folder; its calls are serialised)."""
    if settings.url:
        return QdrantClient(url=settings.url, api_key=settings.api_key or os.environ.get("QDRANT_API_KEY"))
    if local_path is None:
        return _OneCallAtATime(QdrantClient(location=":memory:"))  # type: ignore[return-value]
    key = str(local_path.resolve())
    with _CLIENTS_LOCK:
        if key not in _CLIENTS:
            local_path.mkdir(parents=True, exist_ok=True)
            _CLIENTS[key] = _OneCallAtATime(QdrantClient(path=key))  # type: ignore[assignment]
        return _CLIENTS[key]


class QdrantStore:
    """Chunks and documents in two Qdrant collections (see the module docstring for the mapping).

    >>> store = QdrantStore(QdrantSettings(), "chunks", 384, local_path=Path(".infuse/kb/qdrant"))  # doctest: +SKIP
    """

    def __init__(
        self,
        settings: QdrantSettings,
        chunks_table: str,
        dimension: int,
        *,
        local_path: Path | None = None,
    ) -> None:
        self.settings = settings
        self.dimension = dimension
        self.chunks_name = chunks_table
        prefix = settings.collection
        self._client = connect(settings, local_path)
        self._c = Collections(f"{prefix}_{chunks_table}", f"{prefix}_documents", prefix)
        self._read_only = False
        self._create_collections()

    def _create_collections(self) -> None:
        client, s = self._client, self.settings
        if not client.collection_exists(self._c.chunks):
            client.create_collection(
                self._c.chunks,
                vectors_config={DENSE: qm.VectorParams(size=self.dimension, distance=qm.Distance.COSINE)},
                sparse_vectors_config={KEYWORDS: qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
                shard_number=s.shards,
                replication_factor=s.replicas,
                optimizers_config=qm.OptimizersConfigDiff(
                    deleted_threshold=s.vacuum_deleted_threshold, vacuum_min_vector_number=s.vacuum_min_vector_number
                ),
            )
            if s.url:  # local mode has no payload indexes (it scans)
                for name in _KEYWORD_FIELDS:
                    schema = qm.PayloadSchemaType.INTEGER if name == "page" else qm.PayloadSchemaType.KEYWORD
                    client.create_payload_index(self._c.chunks, name, field_schema=schema)
        if not client.collection_exists(self._c.documents):
            client.create_collection(
                self._c.documents, vectors_config={}, shard_number=s.shards, replication_factor=s.replicas
            )
            if s.url:
                client.create_payload_index(self._c.documents, "doc_id", field_schema=qm.PayloadSchemaType.KEYWORD)

    # --- writes --------------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self._read_only:
            raise RuntimeError("this store is a read-only snapshot")

    def _average_length(self) -> float | None:
        metadata = self._client.get_collection(self._c.chunks).config.metadata or {}
        value = metadata.get(AVERAGE_LENGTH)
        return float(value) if value is not None else None

    def _set_average_length(self, value: float) -> None:
        self._client.update_collection(self._c.chunks, metadata={AVERAGE_LENGTH: value})

    def _point(self, item: IndexedChunk, average: float) -> qm.PointStruct:
        vector = np.asarray(item.vector, dtype=np.float32)
        if vector.shape != (self.dimension,):
            raise ValueError(
                f"chunk {item.chunk.chunk_id}: vector of shape {vector.shape}, store expects ({self.dimension},)"
            )
        return qm.PointStruct(
            id=point_id(item.chunk.chunk_id),
            vector={DENSE: vector.tolist(), KEYWORDS: keyword_vector(item.tokens, average)},
            payload=_chunk_payload(item),
        )

    def replace_documents(self, documents: Sequence[DocumentRecord], chunks: Sequence[IndexedChunk]) -> None:
        """Upsert the new chunks, delete the documents' chunks that were not written, then record
        the documents (see the module docstring for what a concurrent reader may see)."""
        self._check_writable()
        if not documents:
            return
        average = self._average_length()
        if average is None and chunks:
            average = sum(len(c.tokens) for c in chunks) / len(chunks) or 1.0
            self._set_average_length(average)
        points = [self._point(c, average or 1.0) for c in chunks]
        for start in range(0, len(points), PAGE):
            self._client.upsert(self._c.chunks, points[start : start + PAGE], wait=True)
        doc_ids = [d.doc_id for d in documents]
        stale = qm.Filter(
            must=[qm.FieldCondition(key="doc_id", match=qm.MatchAny(any=doc_ids))],
            must_not=[qm.HasIdCondition(has_id=[p.id for p in points])] if points else [],
        )
        self._client.delete(self._c.chunks, qm.FilterSelector(filter=stale), wait=True)
        # Documents are recorded after their chunks: a crash in between makes the next ingest redo them.
        self._client.upsert(
            self._c.documents,
            [qm.PointStruct(id=point_id(d.doc_id), vector={}, payload=_document_payload(d)) for d in documents],
            wait=True,
        )

    def delete_documents(self, doc_ids: Sequence[str]) -> None:
        self._check_writable()
        for start in range(0, len(doc_ids), PAGE):
            selector = qm.FilterSelector(filter=_doc_filter(doc_ids[start : start + PAGE]))
            self._client.delete(self._c.chunks, selector, wait=True)
            self._client.delete(self._c.documents, selector, wait=True)

    def set_access(self, doc_ids: Sequence[str], access: Sequence[str]) -> None:
        self._check_writable()
        column = list(access_column(access))
        if not doc_ids:
            return
        for name in (self._c.chunks, self._c.documents):
            self._client.set_payload(name, {ACCESS_FIELD: column}, points=_doc_filter(list(doc_ids)), wait=True)

    def reconcile_access(self) -> int:
        self._check_writable()
        by_chunks = {
            p["doc_id"]: tuple(p[ACCESS_FIELD]) for p in self._scroll(self._c.chunks, ["doc_id", ACCESS_FIELD])
        }
        stale: dict[tuple[str, ...], list[str]] = {}
        for p in self._scroll(self._c.documents, ["doc_id", ACCESS_FIELD]):
            column = by_chunks.get(p["doc_id"])
            if column is not None and column != tuple(p.get(ACCESS_FIELD) or ()):
                stale.setdefault(column, []).append(p["doc_id"])
        for column, ids in stale.items():
            self._client.set_payload(
                self._c.documents, {ACCESS_FIELD: list(column)}, points=_doc_filter(ids), wait=True
            )
        return sum(len(ids) for ids in stale.values())

    def optimize(self) -> None:
        """Rewrite the keyword weights when the live average keyword count moved by more than
        ``length_drift`` from the one they were written with (then scores are exact BM25)."""
        self._check_writable()
        lengths = [p["n_keywords"] for p in self._scroll(self._c.chunks, ["n_keywords"])]
        if not lengths:
            return
        live, stored = sum(lengths) / len(lengths), self._average_length()
        if stored is not None and abs(live - stored) <= self.settings.length_drift * stored:
            return
        self._set_average_length(live)
        batch: list[qm.PointVectors] = []
        for record in self._records(self._c.chunks, ["tokens"]):
            tokens = (record.payload or {})["tokens"]
            batch.append(qm.PointVectors(id=record.id, vector={KEYWORDS: keyword_vector(tokens, live)}))
            if len(batch) == PAGE:
                self._client.update_vectors(self._c.chunks, batch, wait=True)
                batch = []
        if batch:
            self._client.update_vectors(self._c.chunks, batch, wait=True)

    def index_states(self) -> list[IndexState]:
        """The dense vectors' HNSW index as the engine reports it. Qdrant builds it per segment once
        a segment passes its indexing threshold and searches smaller segments by scanning; local
        mode keeps no index at all (kind None: every search scans). The keyword (sparse) vectors
        are always in an inverted index, so they are not listed."""
        info = self._client.get_collection(self._c.chunks)
        points = info.points_count or 0
        indexed = min(info.indexed_vectors_count or 0, points)
        return [IndexState("vector", "HNSW" if indexed else None, indexed, points - indexed)]

    def drop_other_collections(self) -> list[str]:
        self._check_writable()
        start = f"{self._c.prefix}_{CHUNK_TABLE_PREFIX}"
        others = [
            c.name
            for c in self._client.get_collections().collections
            if c.name.startswith(start) and c.name != self._c.chunks
        ]
        for name in others:
            self._client.delete_collection(name)
        return [name.removeprefix(f"{self._c.prefix}_") for name in others]

    def drop(self) -> None:
        self._check_writable()
        self._client.delete_collection(self._c.chunks)

    # --- reads ---------------------------------------------------------------------------------

    def snapshot(self) -> QdrantStore:
        """A read-only view of the *live* collections: Qdrant has no point-in-time reads."""
        view = object.__new__(QdrantStore)
        view.__dict__.update(self.__dict__)
        view._read_only = True
        return view

    def _records(
        self,
        collection: str,
        payload: list[str] | bool,
        filter_: qm.Filter | None = None,
        *,
        vectors: list[str] | bool = False,
    ) -> Iterator[Any]:
        offset = None
        while True:
            records, offset = self._client.scroll(
                collection, scroll_filter=filter_, limit=PAGE, offset=offset, with_payload=payload, with_vectors=vectors
            )
            yield from records
            if offset is None:
                return

    def _scroll(
        self, collection: str, payload: list[str] | bool, filter_: qm.Filter | None = None
    ) -> Iterator[dict[str, Any]]:
        for record in self._records(collection, payload, filter_):
            yield record.payload or {}

    def _dense_request(self, vector: np.ndarray, k: int, filter_: qm.Filter | None) -> qm.QueryRequest:
        return qm.QueryRequest(
            query=np.asarray(vector, dtype=np.float32).tolist(),
            using=DENSE,
            filter=filter_,
            limit=k + TIE_MARGIN,
            params=qm.SearchParams(exact=True) if self.settings.exact and self.settings.url else None,
            with_payload=True,
        )

    def _where(self, filters: Filter | None, exclude_flagged: bool) -> qm.Filter | None:
        return _with(to_qdrant(filters), _UNFLAGGED if exclude_flagged else None)

    def _scored(self, points: Sequence[Any], k: int) -> list[ScoredChunk]:
        return best_first([ScoredChunk(chunk_from_payload(p.payload or {}), float(p.score)) for p in points], k)

    def ranked_lists(
        self,
        vector: np.ndarray | None,
        tokens: Sequence[str] | None,
        k: int,
        filters: Filter | None = None,
        *,
        exclude_flagged: bool = False,
    ) -> tuple[list[ScoredChunk], list[ScoredChunk]]:
        """The dense and keyword lists in one batch request (a caller's scoped keyword list is
        scored by infuse, see :meth:`lexical_search`)."""
        where = self._where(filters, exclude_flagged)
        terms = _terms(tokens or ())
        scoped = names_field(filters, ACCESS_FIELD)
        requests = []
        if vector is not None:
            requests.append(self._dense_request(vector, k, where))
        if terms and not scoped:
            requests.append(
                qm.QueryRequest(
                    query=query_vector(terms), using=KEYWORDS, filter=where, limit=k + TIE_MARGIN, with_payload=True
                )
            )
        answers = (
            [self._scored(r.points, k) for r in self._client.query_batch_points(self._c.chunks, requests)]
            if requests
            else []
        )
        dense = answers.pop(0) if vector is not None else []
        lexical = answers.pop(0) if answers else (self._scoped_lexical(terms, k, where) if terms and scoped else [])
        return dense, lexical

    def dense_search(
        self, vector: np.ndarray, k: int, filters: Filter | None = None, *, exclude_flagged: bool = False
    ) -> list[ScoredChunk]:
        return self.ranked_lists(vector, None, k, filters, exclude_flagged=exclude_flagged)[0]

    def lexical_search(
        self, tokens: Sequence[str], k: int, filters: Filter | None = None, *, exclude_flagged: bool = False
    ) -> list[ScoredChunk]:
        return self.ranked_lists(None, tokens, k, filters, exclude_flagged=exclude_flagged)[1]

    def _scoped_lexical(self, terms: list[str], k: int, where: qm.Filter | None) -> list[ScoredChunk]:
        """BM25 over the chunks passing ``where`` only (one caller's view): Qdrant's IDF counts
        every point of the shard, so a term's weight would reveal chunks the caller cannot read.
        The scope's size and average length, and the matching chunks, are read by paging."""
        lengths = [p["n_keywords"] for p in self._scroll(self._c.chunks, ["n_keywords"], where)]
        if not lengths:
            return []
        has_term = qm.FieldCondition(key="tokens", match=qm.MatchAny(any=terms))
        found = list(self._scroll(self._c.chunks, True, _with(where, has_term)))
        if not found:
            return []
        counts = [Counter(p["tokens"]) for p in found]
        tf = np.array([[c[t] for t in terms] for c in counts], dtype=np.float64)
        stats = TermStatistics(len(lengths), {t: int(n) for t, n in zip(terms, (tf > 0).sum(axis=0))})
        idf = np.array([stats.idf(t) for t in terms])
        scores = bm25(
            tf, np.array([p["n_keywords"] for p in found], dtype=np.float64), idf, sum(lengths) / len(lengths)
        )
        hits = [ScoredChunk(chunk_from_payload(p), float(s)) for p, s in zip(found, scores) if s > 0]
        return best_first(hits, k)

    def flagged_chunks(self, limit: int | None = None) -> list[Chunk]:
        flagged = qm.Filter(must_not=[_UNFLAGGED])
        chunks = sorted(
            (chunk_from_payload(p) for p in self._scroll(self._c.chunks, True, flagged)),
            key=lambda c: (c.source_path, c.index, c.chunk_id),
        )
        return chunks[:limit]

    def count_flagged_chunks(self) -> int:
        return self._count(qm.Filter(must_not=[_UNFLAGGED]))

    def _count(self, filter_: qm.Filter | None) -> int:
        return int(self._client.count(self._c.chunks, count_filter=filter_, exact=True).count)

    def count_chunks(self, filters: Filter | None = None) -> int:
        return self._count(to_qdrant(filters))

    def count_documents(self) -> int:
        return int(self._client.count(self._c.documents, exact=True).count)

    def chunk_counts_by_language(self) -> dict[str, int]:
        counts = {lang.value: self._count(to_qdrant(Eq("lang", lang.value))) for lang in Language}
        return {lang: n for lang, n in counts.items() if n}

    def document_states(self) -> dict[str, DocumentState]:
        return {
            p["doc_id"]: DocumentState(p["content_hash"], p["pipeline"], p["source_path"], tuple(p[ACCESS_FIELD]))
            for p in self._scroll(
                self._c.documents, ["doc_id", "content_hash", "pipeline", "source_path", ACCESS_FIELD]
            )
        }

    def iter_documents(self) -> Iterator[DocumentRecord]:
        for payload in self._scroll(self._c.documents, True):
            yield _record(payload)

    def chunk_ids(self) -> list[str]:
        return [p["chunk_id"] for p in self._scroll(self._c.chunks, ["chunk_id"])]

    def iter_indexed(self, filters: Filter | None = None) -> Iterator[IndexedChunk]:
        for record in self._records(self._c.chunks, True, to_qdrant(filters), vectors=[DENSE]):
            payload, vectors = record.payload or {}, record.vector or {}
            yield IndexedChunk(
                chunk_from_payload(payload), tuple(payload["tokens"]), np.asarray(vectors[DENSE], dtype=np.float32)
            )

    def iter_chunks(self, filters: Filter | None = None) -> Iterator[Chunk]:
        chunks = [chunk_from_payload(p) for p in self._scroll(self._c.chunks, _CHUNK_FIELD_NAMES, to_qdrant(filters))]
        yield from sorted(chunks, key=lambda c: (c.source_path, c.doc_id, c.index))

    def metadata_keys(self) -> frozenset[str]:
        return frozenset(key for p in self._scroll(self._c.documents, ["metadata"]) for key in p.get("metadata") or {})

    def term_statistics(self, filters: Filter | None = None) -> TermStatistics:
        return TermStatistics.from_token_lists(
            p["tokens"] for p in self._scroll(self._c.chunks, ["tokens"], to_qdrant(filters))
        )


def _terms(tokens: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(t for t in tokens if t.strip()))


def _doc_filter(doc_ids: Sequence[str]) -> qm.Filter:
    return qm.Filter(must=[qm.FieldCondition(key="doc_id", match=qm.MatchAny(any=list(doc_ids)))])
