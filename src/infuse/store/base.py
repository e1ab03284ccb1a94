"""The store interface that search, sync and the contract suite are written against.

A store keeps two collections: documents (identity, content hash, extracted text) and chunks
(:class:`~infuse.documents.models.Chunk` plus keyword tokens and a vector). It ranks, but it does
not tokenise or fuse: tokens come from :mod:`infuse.retrieval.lexical` and fusion from
:mod:`infuse.retrieval.fusion`, so another engine behind this interface returns the same results.

Invariants every implementation keeps (``tests/store_contract.py`` checks them for each engine):

- ``set_access`` rewrites the access list of whole documents (their chunks and document rows)
  without touching text or vectors, the chunks in one atomic step: a document is never
  half-changed.
- ``replace_documents`` is atomic per call: a reader sees all of a document's new chunks and none
  of its old ones, or the state before; a document's chunks are exactly those of its last write.
- Reads on a :meth:`KnowledgeStore.snapshot` do not move when others write.
- Filters (:mod:`infuse.store.filters`) mean what :func:`infuse.store.filters.matches` says.
- Flagged chunks (prompt-injection screening) are left out only when ``exclude_flagged`` is set.
- A keyword search whose filter names ``access`` (one caller's view) scores BM25 with the
  statistics of the chunks passing the filter (:func:`bm25`), so neither its scores nor its order
  depend on chunks the caller may not read: they cannot reveal that such chunks exist.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from infuse.documents.models import Chunk, Document
from infuse.store.filters import Filter
from infuse.store.terms import TermStatistics

BM25_K1, BM25_B = 1.2, 0.75
TIE_DECIMALS = 5
TIE_MARGIN = 8  # see best_first


@dataclass(frozen=True)
class DocumentRecord:
    """A stored document: the loaded document and how and when it was ingested."""

    document: Document
    pipeline: str  # fingerprint of chunking settings: a change re-processes the document
    n_chunks: int
    ingested_at: str

    @property
    def doc_id(self) -> str:
        return self.document.doc_id


@dataclass(frozen=True)
class IndexedChunk:
    """A chunk as a store writes it: the chunk, its keyword tokens and its vector."""

    chunk: Chunk
    tokens: tuple[str, ...]
    vector: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class ScoredChunk:
    """A chunk in a ranked list, with the score that list gave it (cosine or BM25)."""

    chunk: Chunk
    score: float


@dataclass(frozen=True)
class DocumentState:
    content_hash: str
    pipeline: str
    source_path: str
    access: tuple[str, ...] = ()  # the stored access column (infuse.access); empty before access lists


@dataclass(frozen=True)
class IndexState:
    """One search index of a store, as ``infuse status`` shows it: ``kind`` is the engine's name for
    it (``IVF_PQ``, ``FTS``...) or ``None`` while none is built (searches scan every row, exactly);
    ``unindexed_rows`` are rows written since the index was last brought up to date (searched by
    scanning them; :meth:`KnowledgeStore.optimize` adds them)."""

    column: str  # what it indexes: "vector" or "tokens"
    kind: str | None
    indexed_rows: int
    unindexed_rows: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def bm25(tf: np.ndarray, lengths: np.ndarray, idf: np.ndarray, average_length: float) -> np.ndarray:
    """BM25 scores (k1 1.2, b 0.75) of chunks for a query: ``tf[i, j]`` is how often query term ``j``
    occurs in chunk ``i``, ``lengths[i]`` chunk ``i``'s keyword count, ``idf[j]`` term ``j``'s
    :meth:`TermStatistics.idf` and ``average_length`` the mean keyword count, over the chunks searched."""
    norm = BM25_K1 * (1 - BM25_B + BM25_B * lengths / (average_length or 1))
    scores: np.ndarray = (idf * tf * (BM25_K1 + 1) / (tf + norm[:, None])).sum(axis=1)
    return scores


def best_first(hits: Sequence[ScoredChunk], k: int | None = None) -> list[ScoredChunk]:
    """The first ``k`` of a ranked list in the order every store returns: by score, ties by chunk
    id, so two engines that score alike also order ties alike. Scores that agree to
    :data:`TIE_DECIMALS` decimals are ties: engines compute in float32 in different orders (a
    cosine of 0 comes back as 1e-8 from one and -1e-9 from another). Engines fetch
    :data:`TIE_MARGIN` more than ``k``, so a tie across the cut is broken the same way too."""
    return sorted(hits, key=lambda s: (-round(s.score, TIE_DECIMALS), s.chunk.chunk_id))[:k]


def ranked_lists_separately(
    store: KnowledgeStore,
    vector: np.ndarray | None,
    tokens: Sequence[str] | None,
    k: int,
    filters: Filter | None = None,
    *,
    exclude_flagged: bool = False,
) -> tuple[list[ScoredChunk], list[ScoredChunk]]:
    """:meth:`KnowledgeStore.ranked_lists` for a store whose snapshot already pins both lists to one
    version: one dense and one keyword search."""
    dense = store.dense_search(vector, k, filters, exclude_flagged=exclude_flagged) if vector is not None else []
    lexical = store.lexical_search(tokens, k, filters, exclude_flagged=exclude_flagged) if tokens else []
    return dense, lexical


def access_column(access: Sequence[str]) -> tuple[str, ...]:
    """``access`` checked as a stored column for :meth:`KnowledgeStore.set_access`: strings, never
    empty (a document without a list stores :data:`infuse.access.DEFAULT`)."""
    column = tuple(access)
    if not column or not all(isinstance(entry, str) for entry in column):
        raise ValueError(f"set_access: {access!r} is not a stored access column (AccessList.to_column())")
    return column


class KnowledgeStore(Protocol):
    """Storage backend. Implementations: :class:`infuse.store.lancedb.LanceDBStore`,
    :class:`infuse.store.qdrant.QdrantStore`, :class:`infuse.store.memory.InMemoryStore` (tests); made by :func:`infuse.store.factory.open_store`."""

    def replace_documents(self, documents: Sequence[DocumentRecord], chunks: Sequence[IndexedChunk]) -> None:
        """Atomically make ``chunks`` the only chunks of ``documents``, then record the documents."""

    def delete_documents(self, doc_ids: Sequence[str]) -> None: ...

    def set_access(self, doc_ids: Sequence[str], access: Sequence[str]) -> None:
        """Make ``access`` (a non-empty stored access column, :meth:`infuse.access.AccessList.to_column`)
        the access list of every chunk of ``doc_ids`` in one atomic step, then of their document
        rows; text, tokens and vectors are not rewritten. Unknown ids are ignored."""

    def reconcile_access(self) -> int:
        """Give every document row the access list its chunks carry, where the two differ (a crash
        between :meth:`set_access`'s two commits); returns how many rows were rewritten. The chunks
        are what search filters on, so they decide; writers call this first, so neither a re-ingest
        (which keeps the stored list) nor a reindex (which rebuilds chunks from the document rows)
        can bring back a list that was replaced."""

    def dense_search(
        self, vector: np.ndarray, k: int, filters: Filter | None = None, *, exclude_flagged: bool = False
    ) -> list[ScoredChunk]:
        """Top ``k`` by cosine; ``exclude_flagged`` leaves out chunks with any screening flag (quarantine)."""

    def lexical_search(
        self, tokens: Sequence[str], k: int, filters: Filter | None = None, *, exclude_flagged: bool = False
    ) -> list[ScoredChunk]:
        """Top ``k`` by BM25 over the stored keyword tokens."""

    def ranked_lists(
        self,
        vector: np.ndarray | None,
        tokens: Sequence[str] | None,
        k: int,
        filters: Filter | None = None,
        *,
        exclude_flagged: bool = False,
    ) -> tuple[list[ScoredChunk], list[ScoredChunk]]:
        """The dense list (``vector`` None: empty) and the keyword list (``tokens`` None or empty:
        empty) of one search, computed together (what hybrid search fuses)."""

    def flagged_chunks(self, limit: int | None = None) -> list[Chunk]:
        """Chunks with screening flags, by source path and position (at most ``limit``)."""

    def count_flagged_chunks(self) -> int: ...

    def count_chunks(self, filters: Filter | None = None) -> int: ...

    def count_documents(self) -> int: ...

    def chunk_counts_by_language(self) -> dict[str, int]: ...

    def document_states(self) -> dict[str, DocumentState]: ...

    def iter_documents(self) -> Iterator[DocumentRecord]: ...

    def chunk_ids(self) -> list[str]: ...

    def iter_indexed(self, filters: Filter | None = None) -> Iterator[IndexedChunk]:
        """Every chunk (passing ``filters``) with its keyword tokens and vector, in no set order: what
        :mod:`infuse.store.migrate` copies into another store without embedding again."""

    def iter_chunks(self, filters: Filter | None = None) -> Iterator[Chunk]:
        """Every chunk (passing ``filters``), by source path, document and position: what training
        data is built from, and what ``infuse documents`` lists and shows."""

    def metadata_keys(self) -> frozenset[str]:
        """The document metadata keys present in the knowledge base (what a filter may name besides
        the fixed keys of :data:`infuse.store.filters.FILTER_FIELDS`)."""

    def term_statistics(self, filters: Filter | None = None) -> TermStatistics:
        """Keyword document frequencies over the chunks (the RAG relevance gate weighs words by them),
        from the keyword tokens stored at ingest; ``filters``: over the chunks passing them only (one
        caller's view, so a restricted chunk does not change a word's weight)."""

    def snapshot(self) -> KnowledgeStore:
        """A read-only view pinned to the current version: dense and lexical lists agree."""

    def optimize(self) -> None:
        """Bring indexes up to date after writes (cheap when nothing changed): new rows join the
        keyword and vector indexes, a vector index is built once the store is large enough for
        one (and retrained when it has outgrown it)."""

    def index_states(self) -> list[IndexState]:
        """The store's search indexes and how many rows each leaves to scanning (empty: the engine
        keeps no indexes and always scans)."""

    def drop_other_collections(self) -> list[str]:
        """Delete chunk collections other than this one (left by a reindex that was killed before it
        switched over); returns their names."""

    def drop(self) -> None:
        """Delete the chunk collection (a reindex replaces it with a new one)."""
