"""The store interface that search and sync are written against.

A store keeps two collections: documents (identity, content hash, extracted text) and chunks
(text, offsets, keyword tokens, vector). It ranks, but it does not tokenise or fuse: tokens come
from :mod:`infuse.retrieval.lexical` and fusion from :mod:`infuse.retrieval.fusion`, so another
engine behind this interface returns the same results.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from infuse.documents.models import Document, FileType, Section
from infuse.retrieval.relevance import TermStatistics

FilterValue = str | int | float | bool
Filters = dict[str, FilterValue]

# Filter keys that are columns of every chunk; any other key filters on document metadata.
CHUNK_FILTER_COLUMNS = ("doc_id", "source_path", "lang", "file_type", "page")


@dataclass(frozen=True)
class DocumentRecord:
    doc_id: str
    source_path: str
    file_type: str
    title: str
    content_hash: str
    pipeline: str  # fingerprint of chunking settings: a change re-processes the document
    text: str
    metadata: dict[str, Any]
    n_chunks: int
    ingested_at: str
    sections: tuple[Section, ...] = ()
    hidden_text: tuple[str, ...] = ()  # text the source hid from readers (HTML), kept for re-screening

    def to_document(self) -> Document:
        """The loaded document again, so chunks can be rebuilt without the source file."""
        return Document(
            doc_id=self.doc_id,
            source_path=self.source_path,
            file_type=FileType(self.file_type),
            text=self.text,
            content_hash=self.content_hash,
            title=self.title,
            metadata=self.metadata,
            sections=self.sections,
            hidden_text=self.hidden_text,
        )


@dataclass(frozen=True)
class ChunkRecord:
    chunk_id: str
    doc_id: str
    source_path: str
    file_type: str
    chunk_index: int
    text: str
    start: int
    end: int
    page: int | None
    heading_path: tuple[str, ...]
    lang: str
    n_tokens: int
    tokens: list[str]
    metadata: dict[str, Any]
    content_hash: str
    vector: np.ndarray = field(repr=False)
    flags: tuple[str, ...] = ()  # prompt-injection screening (infuse.retrieval.injection); empty when clean


@dataclass(frozen=True)
class ScoredChunk:
    """A chunk as a ranked list returns it (no vector, no tokens)."""

    chunk_id: str
    doc_id: str
    source_path: str
    chunk_index: int
    text: str
    start: int
    end: int
    page: int | None
    heading_path: tuple[str, ...]
    lang: str
    metadata: dict[str, Any]
    content_hash: str
    score: float
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class FlaggedChunk:
    """A chunk that prompt-injection screening flagged (``infuse status`` lists them)."""

    chunk_id: str
    doc_id: str
    source_path: str
    chunk_index: int
    text: str
    heading_path: tuple[str, ...]
    flags: tuple[str, ...]


@dataclass(frozen=True)
class DocumentState:
    content_hash: str
    pipeline: str
    source_path: str


class KnowledgeStore(Protocol):
    """Storage backend. Implementations: :class:`infuse.retrieval.lancedb_store.LanceDBStore`."""

    def replace_documents(self, documents: Sequence[DocumentRecord], chunks: Sequence[ChunkRecord]) -> None:
        """Atomically make ``chunks`` the only chunks of ``documents``, then record the documents."""

    def delete_documents(self, doc_ids: Sequence[str]) -> None: ...

    def dense_search(
        self, vector: np.ndarray, k: int, filters: Filters | None = None, *, exclude_flagged: bool = False
    ) -> list[ScoredChunk]:
        """Top ``k`` by cosine; ``exclude_flagged`` leaves out chunks with any screening flag (quarantine)."""

    def lexical_search(
        self, tokens: Sequence[str], k: int, filters: Filters | None = None, *, exclude_flagged: bool = False
    ) -> list[ScoredChunk]: ...

    def flagged_chunks(self, limit: int | None = None) -> list[FlaggedChunk]:
        """Chunks with screening flags, by source path and position (at most ``limit``)."""

    def count_flagged_chunks(self) -> int: ...

    def count_chunks(self, filters: Filters | None = None) -> int: ...

    def count_documents(self) -> int: ...

    def chunk_counts_by_language(self) -> dict[str, int]: ...

    def document_states(self) -> dict[str, DocumentState]: ...

    def iter_documents(self) -> Iterator[DocumentRecord]: ...

    def chunk_ids(self) -> list[str]: ...

    def iter_chunks(self) -> Iterator[ScoredChunk]:
        """Every chunk (score 0), by source path and position: what training data is built from."""

    def term_statistics(self) -> TermStatistics:
        """Keyword document frequencies over the chunks (the RAG relevance gate weighs words by them)."""

    def snapshot(self) -> "KnowledgeStore":
        """A read-only view pinned to the current version: dense and lexical lists agree."""

    def optimize(self) -> None:
        """Bring indexes up to date after writes (cheap when nothing changed)."""
