"""An in-memory :class:`~infuse.store.base.KnowledgeStore`: plain Python, no files.

Why it exists: search, sync and RAG logic get millisecond unit tests against it, and the store
contract suite runs against it next to LanceDB, so the suite itself is checked on a second engine
(a case that only LanceDB passes is a LanceDB quirk, not the contract). Exact cosine search,
BM25 (k1 1.2, b 0.75) over the stored tokens, filters through :func:`infuse.store.filters.matches`.
Not a workspace backend: nothing persists.

>>> store = InMemoryStore(dimension=3)
>>> store.count_chunks()
0
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from infuse.documents.models import Chunk
from infuse.store.base import (
    DocumentRecord,
    DocumentState,
    IndexedChunk,
    IndexState,
    ScoredChunk,
    access_column,
    best_first,
    bm25,
    ranked_lists_separately,
)
from infuse.store.filters import ACCESS_FIELD, Filter, matches, names_field
from infuse.store.terms import TermStatistics


def _fields(chunk: Chunk) -> dict[str, Any]:
    fields = {f.name: getattr(chunk, f.name) for f in dataclasses.fields(chunk)}
    fields["lang"], fields["file_type"] = chunk.lang.value, chunk.file_type.value
    return fields


class InMemoryStore:
    """Documents and chunks in dicts; a snapshot is a frozen copy."""

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self._chunks: dict[str, IndexedChunk] = {}
        self._documents: dict[str, DocumentRecord] = {}
        self._read_only = False

    # --- writes --------------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self._read_only:
            raise RuntimeError("this store is a read-only snapshot")

    def replace_documents(self, documents: Sequence[DocumentRecord], chunks: Sequence[IndexedChunk]) -> None:
        self._check_writable()
        for item in chunks:
            shape = np.asarray(item.vector).shape
            if shape != (self.dimension,):
                raise ValueError(
                    f"chunk {item.chunk.chunk_id}: vector of shape {shape}, store expects ({self.dimension},)"
                )
        doc_ids = {d.doc_id for d in documents}
        kept = {cid: c for cid, c in self._chunks.items() if c.chunk.doc_id not in doc_ids}
        for item in chunks:
            vector = np.asarray(item.vector, dtype=np.float32)
            kept[item.chunk.chunk_id] = IndexedChunk(item.chunk, tuple(item.tokens), vector)
        self._chunks = kept
        self._documents = {**self._documents, **{d.doc_id: d for d in documents}}

    def delete_documents(self, doc_ids: Sequence[str]) -> None:
        self._check_writable()
        gone = set(doc_ids)
        self._chunks = {cid: c for cid, c in self._chunks.items() if c.chunk.doc_id not in gone}
        self._documents = {did: d for did, d in self._documents.items() if did not in gone}

    def reconcile_access(self) -> int:
        self._check_writable()
        return 0  # set_access replaces both dictionaries in one step: they never differ

    def set_access(self, doc_ids: Sequence[str], access: Sequence[str]) -> None:
        self._check_writable()
        column = access_column(access)
        ids = set(doc_ids)
        self._chunks = {
            cid: dataclasses.replace(c, chunk=dataclasses.replace(c.chunk, access=column))
            if c.chunk.doc_id in ids
            else c
            for cid, c in self._chunks.items()
        }
        self._documents = {
            did: dataclasses.replace(d, document=dataclasses.replace(d.document, access=column)) if did in ids else d
            for did, d in self._documents.items()
        }

    def optimize(self) -> None:
        self._check_writable()

    def index_states(self) -> list[IndexState]:
        return []  # every search scans every chunk, exactly

    def drop_other_collections(self) -> list[str]:
        self._check_writable()
        return []  # one collection per in-memory store

    def drop(self) -> None:
        self._check_writable()
        self._chunks = {}

    # --- reads ---------------------------------------------------------------------------------

    def snapshot(self) -> InMemoryStore:
        view = InMemoryStore(self.dimension)
        view._chunks, view._documents, view._read_only = dict(self._chunks), dict(self._documents), True
        return view

    def _candidates(self, filters: Filter | None, exclude_flagged: bool) -> list[IndexedChunk]:
        return [
            c
            for c in self._chunks.values()
            if matches(filters, _fields(c.chunk)) and not (exclude_flagged and c.chunk.flags)
        ]

    ranked_lists = ranked_lists_separately  # the snapshot pins both lists to one version

    def dense_search(
        self, vector: np.ndarray, k: int, filters: Filter | None = None, *, exclude_flagged: bool = False
    ) -> list[ScoredChunk]:
        query = np.asarray(vector, dtype=np.float32)
        query_norm = float(np.linalg.norm(query)) or 1.0
        scored = []
        for item in self._candidates(filters, exclude_flagged):
            norm = float(np.linalg.norm(item.vector)) or 1.0
            scored.append(ScoredChunk(item.chunk, float(np.dot(query, item.vector)) / (query_norm * norm)))
        return best_first(scored, k)

    def lexical_search(
        self, tokens: Sequence[str], k: int, filters: Filter | None = None, *, exclude_flagged: bool = False
    ) -> list[ScoredChunk]:
        terms = list(dict.fromkeys(t for t in tokens if t.strip()))
        candidates = self._candidates(filters, exclude_flagged)
        # One caller's view (a filter on access) is scored as if it were the whole knowledge base.
        scope = candidates if names_field(filters, ACCESS_FIELD) else list(self._chunks.values())
        if not terms or not scope:
            return []
        stats = TermStatistics.from_token_lists(c.tokens for c in scope)
        average = sum(len(c.tokens) for c in scope) / len(scope)
        counts = [Counter(item.tokens) for item in candidates]
        tf = np.array([[c[t] for t in terms] for c in counts], dtype=np.float64).reshape(len(candidates), len(terms))
        lengths = np.array([len(item.tokens) for item in candidates], dtype=np.float64)
        idf = np.array([stats.idf(t) for t in terms])
        scores = bm25(tf, lengths, idf, average)
        scored = [ScoredChunk(item.chunk, float(score)) for item, score in zip(candidates, scores) if score > 0]
        return best_first(scored, k)

    def flagged_chunks(self, limit: int | None = None) -> list[Chunk]:
        flagged = sorted(
            (c.chunk for c in self._chunks.values() if c.chunk.flags),
            key=lambda c: (c.source_path, c.index, c.chunk_id),
        )
        return flagged[:limit]

    def count_flagged_chunks(self) -> int:
        return sum(1 for c in self._chunks.values() if c.chunk.flags)

    def count_chunks(self, filters: Filter | None = None) -> int:
        return len(self._candidates(filters, exclude_flagged=False))

    def count_documents(self) -> int:
        return len(self._documents)

    def chunk_counts_by_language(self) -> dict[str, int]:
        return dict(Counter(c.chunk.lang.value for c in self._chunks.values()))

    def document_states(self) -> dict[str, DocumentState]:
        return {
            d.doc_id: DocumentState(d.document.content_hash, d.pipeline, d.document.source_path, d.document.access)
            for d in self._documents.values()
        }

    def iter_documents(self) -> Iterator[DocumentRecord]:
        yield from list(self._documents.values())

    def chunk_ids(self) -> list[str]:
        return list(self._chunks)

    def iter_indexed(self, filters: Filter | None = None) -> Iterator[IndexedChunk]:
        yield from (c for c in list(self._chunks.values()) if matches(filters, _fields(c.chunk)))

    def iter_chunks(self, filters: Filter | None = None) -> Iterator[Chunk]:
        chunks = (c.chunk for c in self._candidates(filters, exclude_flagged=False))
        yield from sorted(chunks, key=lambda c: (c.source_path, c.doc_id, c.index))

    def metadata_keys(self) -> frozenset[str]:
        return frozenset(key for d in self._documents.values() for key in d.document.metadata)

    def term_statistics(self, filters: Filter | None = None) -> TermStatistics:
        return TermStatistics.from_token_lists(
            c.tokens for c in self._chunks.values() if filters is None or matches(filters, _fields(c.chunk))
        )
