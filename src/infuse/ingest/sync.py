"""Incremental sync of files into a knowledge store.

A document's identity is its normalised source path (or its JSON id field); its content hash
(plus a fingerprint of the chunking settings) decides skip or replace. New and changed documents
are chunked, tokenised and embedded, then written in batches, each batch one atomic commit, so
a kill at any moment loses at most the batch in flight, which the next run redoes.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infuse.access import AccessError
from infuse.documents.chunking import Chunker
from infuse.documents.loaders import RecordFields, discover_files, load_file
from infuse.documents.models import Chunk, Document
from infuse.embedders.base import Embedder
from infuse.errors import LoadError
from infuse.files import utc_now
from infuse.ingest.access_sources import AccessResolver
from infuse.progress import Progress, or_null
from infuse.retrieval.lexical import Tokenizer
from infuse.screening.injection import HIDDEN_HTML_TEXT, InjectionDetector
from infuse.store.base import DocumentRecord, IndexedChunk, KnowledgeStore


@dataclass
class IngestReport:
    """What one ingest did. ``failed`` counts files (or JSON records) that could not be ingested."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    pruned: int = 0
    failed: int = 0
    chunks_written: int = 0
    files_seen: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    started_at: str = ""
    finished_at: str = ""
    seconds: float = 0.0
    access_changed: int = 0  # unchanged documents whose access list was rewritten (no re-embedding)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "pruned": self.pruned,
            "failed": self.failed,
            "chunks_written": self.chunks_written,
            "files_seen": self.files_seen,
            "errors": self.errors,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "seconds": round(self.seconds, 3),
            "access_changed": self.access_changed,
        }


@dataclass
class Syncer:
    """Brings a store in line with a set of files.

    ``prepare_write`` is called once before the first write (the workspace checks the embedder
    against the knowledge base there), so an unchanged corpus never loads the embedding model.

    >>> report = Syncer(store, chunker, embedder, tokenizer, pipeline="...").sync([Path("docs")])  # doctest: +SKIP
    """

    store: KnowledgeStore | None  # None: no knowledge base yet (nothing stored); prepare_write creates it
    chunker_factory: Callable[[], Chunker]
    embedder: Embedder
    tokenizer: Tokenizer
    pipeline: str
    commit_every: int = 256
    prepare_write: Callable[[], KnowledgeStore] | None = None
    exclude: Sequence[Path] = ()
    # Prompt-injection screening: every chunk gets the names of the rules its text (heading path
    # included) matches; every chunk of a document whose hidden HTML text reads as instructions to
    # a model also gets "hidden_html_text".
    detector: InjectionDetector = field(default_factory=InjectionDetector)
    # Which access list each document carries (record field > folder .infuse-access > --access > stored > default).
    access: AccessResolver = field(default_factory=AccessResolver)

    def sync(
        self,
        paths: Sequence[Path],
        *,
        prune: bool = False,
        fields: RecordFields = RecordFields(),
        progress: Progress | None = None,
    ) -> IngestReport:
        progress = or_null(progress)
        report = IngestReport(started_at=utc_now())
        clock = time.perf_counter()

        files, errors = discover_files(paths, exclude=self.exclude)
        report.files_seen = len(files)
        documents, loaded_sources = self._load(files, fields, errors, progress)
        states = self.store.document_states() if self.store is not None else {}

        pending: list[Document] = []
        access_changes: dict[tuple[str, ...], list[str]] = {}
        for document in documents:
            state = states.get(document.doc_id)
            try:
                document = self.access.resolve(document, state.access if state else ())
            except AccessError as exc:  # this document keeps what is stored (and is not pruned)
                errors.append(LoadError(document.source_path, str(exc)))
                continue
            if state is None:
                report.added += 1
            elif (state.content_hash, state.pipeline) != (document.content_hash, self.pipeline):
                report.updated += 1
            else:
                report.unchanged += 1
                if state.access != document.access:
                    access_changes.setdefault(document.access, []).append(document.doc_id)
                continue
            pending.append(document)
        report.access_changed = self._set_access(access_changes)

        if pending:
            self._write(pending, report, progress)
        if prune:
            seen = {d.doc_id for d in documents}
            vanished = [
                doc_id
                for doc_id, state in states.items()
                if doc_id not in seen and (state.source_path in loaded_sources or not os.path.exists(state.source_path))
            ]
            if vanished:
                self._writable_store().delete_documents(vanished)
                report.pruned = len(vanished)
        if pending or report.pruned or report.access_changed:
            self._writable_store().optimize()

        report.errors = [{"path": e.path, "error": e.reason} for e in errors]
        report.failed = len(errors)
        report.finished_at = utc_now()
        report.seconds = time.perf_counter() - clock
        return report

    def resync_documents(self, records: Sequence[DocumentRecord], progress: Progress | None = None) -> IngestReport:
        """Re-chunk and re-embed stored documents (``infuse reindex``); no source file is read."""
        report = IngestReport(started_at=utc_now(), updated=len(records))
        clock = time.perf_counter()
        if records:
            self._write([r.document for r in records], report, or_null(progress))
            self._writable_store().optimize()
        report.finished_at = utc_now()
        report.seconds = time.perf_counter() - clock
        return report

    def _set_access(self, changes: dict[tuple[str, ...], list[str]]) -> int:
        """Rewrite the access column of unchanged documents whose list changed: one atomic store
        write per distinct list, so no document is ever half-changed. Returns how many changed."""
        for column, doc_ids in changes.items():
            self._writable_store().set_access(doc_ids, column)
        return sum(len(doc_ids) for doc_ids in changes.values())

    def _writable_store(self) -> KnowledgeStore:
        if self.prepare_write is not None:
            self.store = self.prepare_write()
            self.prepare_write = None
        if self.store is None:
            raise ValueError("Syncer: there is no knowledge base to write to; pass store or prepare_write")
        return self.store

    def _load(
        self, files: list[Path], fields: RecordFields, errors: list[LoadError], progress: Progress
    ) -> tuple[list[Document], set[str]]:
        """Load every file; documents from files that loaded, and which sources loaded cleanly."""
        progress.start("reading", len(files))
        documents: list[Document] = []
        first_source: dict[str, str] = {}
        loaded_sources: set[str] = set()
        for path in files:
            result = load_file(path, fields)
            errors.extend(result.errors)
            for document in result.documents:
                if document.doc_id in first_source:
                    errors.append(
                        LoadError(
                            document.source_path,
                            f"duplicate document id {document.doc_id!r} (first seen in {first_source[document.doc_id]})",
                        )
                    )
                    continue
                first_source[document.doc_id] = document.source_path
                documents.append(document)
            # A JSONL file with some bad records still counts as loaded: its vanished records prune.
            if result.documents:
                loaded_sources.add(result.documents[0].source_path)
            progress.advance()
        return documents, loaded_sources

    def _write(self, pending: list[Document], report: IngestReport, progress: Progress) -> None:
        chunker = self.chunker_factory()
        progress.start("chunking", len(pending))
        chunked: list[tuple[Document, list[Chunk]]] = []
        for document in pending:
            chunked.append((document, chunker.chunk(document)))
            progress.advance()
        store = self._writable_store()
        progress.start("embedding", sum(len(chunks) for _, chunks in chunked))
        batch: list[tuple[Document, list[Chunk]]] = []
        for item in chunked:
            batch.append(item)
            if sum(len(chunks) for _, chunks in batch) >= self.commit_every:
                report.chunks_written += self._commit(store, batch, progress)
                batch = []
        if batch:
            report.chunks_written += self._commit(store, batch, progress)

    def _commit(self, store: KnowledgeStore, batch: list[tuple[Document, list[Chunk]]], progress: Progress) -> int:
        texts = [chunk.embedding_input() for _, chunks in batch for chunk in chunks]
        vectors = self.embedder.embed_passages(texts, on_batch=progress.advance)
        now = utc_now()
        records: list[IndexedChunk] = []
        documents: list[DocumentRecord] = []
        position = 0
        for document, chunks in batch:
            hidden = [HIDDEN_HTML_TEXT] if any(self.detector.scan_hidden(t) for t in document.hidden_text) else []
            for chunk in chunks:
                flags = tuple(sorted({*self.detector.flags(texts[position]), *hidden}))
                tokens = tuple(self.tokenizer.tokenize(texts[position]))
                records.append(IndexedChunk(dataclasses.replace(chunk, flags=flags), tokens, vectors[position]))
                position += 1
            documents.append(DocumentRecord(document, pipeline=self.pipeline, n_chunks=len(chunks), ingested_at=now))
        store.replace_documents(documents, records)
        return len(records)
