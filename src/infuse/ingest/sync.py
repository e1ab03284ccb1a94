"""Incremental sync of files into a knowledge store.

A document's identity is its normalised source path (or its JSON id field); its content hash
(plus a fingerprint of the chunking settings) decides skip or replace. Files are read one at a
time; new and changed documents are chunked as they are read, then tokenised, embedded and
written in batches, each batch one atomic commit, so a kill at any moment loses at most the batch
in flight, which the next run redoes, and memory holds one file plus one batch (files larger than
``[ingest] max_file_mb`` fail with a message naming the limit, but for JSONL files, which are then
read one record at a time: memory holds one record plus one batch, whatever the corpus size).

Resuming: a killed ingest run again skips every document a committed batch recorded (same content
hash and pipeline), so a very long run continues where it stopped, re-reading but not
re-embedding what is done; the report's ``unchanged`` counts them.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infuse.access import AccessError
from infuse.config import IngestSettings
from infuse.documents.chunking import Chunker
from infuse.documents.discovery import discover
from infuse.documents.loaders import LoadLimits, RecordFields, stream_file
from infuse.documents.models import Chunk, Document, LoadWarning
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
    """What one ingest did with every file it met.

    Each file ends in exactly one of: ingested (``added``/``updated``/``unchanged`` count its
    documents), ``skipped`` (deliberately not read: hidden, excluded, unsupported suffix, a link
    leaving the corpus, a FIFO; listed in ``skipped_files`` with a reason) or failed (``failed``
    counts files or JSON records that could not be ingested, listed in ``errors``). ``warnings``
    are ingested files to check (e.g. an encoding that was guessed).
    """

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    pruned: int = 0
    failed: int = 0
    skipped: int = 0
    chunks_written: int = 0
    files_seen: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    skipped_files: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    started_at: str = ""
    finished_at: str = ""
    seconds: float = 0.0
    access_changed: int = 0  # unchanged documents whose access list was rewritten (no re-embedding)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def skipped_kinds(self) -> dict[str, int]:
        """How many entries were skipped per kind (``.xlsx``, ``hidden``, ``link leaving the corpus``...),
        most frequent first."""
        counts = Counter(entry["kind"] for entry in self.skipped_files)
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "pruned": self.pruned,
            "failed": self.failed,
            "skipped": self.skipped,
            "skipped_kinds": self.skipped_kinds(),
            "chunks_written": self.chunks_written,
            "files_seen": self.files_seen,
            "errors": self.errors,
            "skipped_files": self.skipped_files,
            "warnings": self.warnings,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "seconds": round(self.seconds, 3),
            "access_changed": self.access_changed,
        }


def _under(source: str, roots: Sequence[Path]) -> bool:
    return any(source == root.as_posix() or source.startswith(root.as_posix().rstrip("/") + "/") for root in roots)


@dataclass
class _Writer:
    """Chunks documents as they come and commits every ``commit_every`` chunks: what an ingest holds
    at once is one batch plus one file, whatever the size of the corpus."""

    syncer: Syncer
    report: IngestReport
    progress: Progress
    chunker: Chunker | None = None
    batch: list[tuple[Document, list[Chunk]]] = field(default_factory=list)
    batch_chunks: int = 0

    def add(self, document: Document) -> None:
        if self.chunker is None:
            self.chunker = self.syncer.chunker_factory()
        chunks = self.chunker.chunk(document)
        self.batch.append((document, chunks))
        self.batch_chunks += len(chunks)
        if self.batch_chunks >= self.syncer.commit_every:
            self.flush()

    def flush(self) -> None:
        if self.batch:
            store = self.syncer._writable_store()
            self.report.chunks_written += self.syncer._commit(store, self.batch)
            self.progress.note(f"{self.report.chunks_written} chunks written")
            self.batch, self.batch_chunks = [], 0


@dataclass
class Syncer:
    """Brings a store in line with a set of files.

    ``prepare_write`` is called once before the first write (the workspace checks the embedder
    against the knowledge base there), so an unchanged corpus never loads the embedding model.
    ``ingest`` holds the per-file limits, the exclude globs and whether links leaving the given
    folders are followed.

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
    ingest: IngestSettings = field(default_factory=IngestSettings)

    def sync(
        self,
        paths: Sequence[Path],
        *,
        prune: bool = False,
        fields: RecordFields = RecordFields(),
        progress: Progress | None = None,
        exclude: Sequence[str] = (),
        follow_links: bool | None = None,
    ) -> IngestReport:
        """Ingest ``paths``; ``exclude`` adds gitignore-like globs to ``[ingest] exclude``,
        ``follow_links`` (default ``[ingest] follow_links``) follows links leaving ``paths``.

        ``prune`` deletes stored documents whose file vanished, only at or below ``paths``, and
        never below a given folder that is empty (an unmounted share) or missing.
        """
        progress = or_null(progress)
        report = IngestReport(started_at=utc_now())
        clock = time.perf_counter()
        settings = self.ingest
        found = discover(
            paths,
            exclude=self.exclude,
            globs=[*settings.exclude, *exclude],
            follow_links=settings.follow_links if follow_links is None else follow_links,
        )
        errors, warnings = found.errors, []
        report.files_seen = len(found.files)
        states = self.store.document_states() if self.store is not None else {}
        limits = LoadLimits(settings.max_file_mb, settings.max_unzipped_mb, settings.max_zip_entries)

        writer = _Writer(self, report, progress)
        access_changes: dict[tuple[str, ...], list[str]] = {}
        first_source: dict[str, str] = {}
        loaded_sources: set[str] = set()
        progress.start("ingesting", len(found.files))
        for path in found.files:
            loaded: str | None = None
            for document in stream_file(path, fields, limits):
                if isinstance(document, LoadError):
                    errors.append(document)
                    continue
                if isinstance(document, LoadWarning):
                    warnings.append(document)
                    continue
                loaded = document.source_path
                if document.doc_id in first_source:
                    errors.append(
                        LoadError(
                            document.source_path,
                            f"duplicate document id {document.doc_id!r} (first seen in {first_source[document.doc_id]})",
                        )
                    )
                    continue
                first_source[document.doc_id] = document.source_path
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
                writer.add(document)
            # A JSONL file with some bad records still counts as loaded: its vanished records prune.
            if loaded is not None:
                loaded_sources.add(loaded)
            progress.advance()
        writer.flush()
        report.access_changed = self._set_access(access_changes)

        if prune:
            report.pruned = self._prune(states, set(first_source), loaded_sources, found.roots, warnings)
        if report.chunks_written or report.pruned or report.access_changed:
            self._writable_store().optimize()

        report.errors = [{"path": e.path, "error": e.reason} for e in errors]
        report.failed = len(errors)
        report.skipped_files = [s.to_dict() for s in found.skipped]
        report.skipped = len(found.skipped)
        report.warnings = [{"path": w.path, "warning": w.message} for w in warnings]
        report.finished_at = utc_now()
        report.seconds = time.perf_counter() - clock
        return report

    def _prune(
        self,
        states: dict[str, Any],
        seen: set[str],
        loaded_sources: set[str],
        roots: Sequence[Path],
        warnings: list[LoadWarning],
    ) -> int:
        """Delete stored documents at or below ``roots`` whose file vanished (or JSON record left
        a file that was read); a root folder that is empty prunes nothing (an unmounted share)."""
        empty = [root for root in roots if root.is_dir() and next(root.iterdir(), None) is None]
        scope = [root for root in roots if root not in empty]
        vanished = [
            doc_id
            for doc_id, state in states.items()
            if doc_id not in seen
            and _under(state.source_path, scope)
            and (state.source_path in loaded_sources or not os.path.exists(state.source_path))
        ]
        for root in empty:
            kept = sum(1 for state in states.values() if _under(state.source_path, [root]))
            if kept:
                warnings.append(
                    LoadWarning(
                        root.as_posix(),
                        f"folder is empty (an unmounted share?): its {kept} documents were not pruned; "
                        "remove them with `infuse documents rm` if they are really gone",
                    )
                )
        if vanished:
            self._writable_store().delete_documents(vanished)
        return len(vanished)

    def resync_documents(self, records: Sequence[DocumentRecord], progress: Progress | None = None) -> IngestReport:
        """Re-chunk and re-embed stored documents (``infuse reindex``); no source file is read."""
        progress = or_null(progress)
        report = IngestReport(started_at=utc_now(), updated=len(records))
        clock = time.perf_counter()
        if records:
            writer = _Writer(self, report, progress)
            progress.start("reindexing", len(records))
            for record in records:
                writer.add(record.document)
                progress.advance()
            writer.flush()
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

    def _commit(self, store: KnowledgeStore, batch: list[tuple[Document, list[Chunk]]]) -> int:
        texts = [chunk.embedding_input() for _, chunks in batch for chunk in chunks]
        vectors = self.embedder.embed_passages(texts)
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
