"""The one entry point: a workspace folder holding config, knowledge base and state.

Layout::

    WS/infuse.toml            settings (written with defaults on creation)
    WS/kb/manifest.json       which embedder built the knowledge base, which chunk table is live
    WS/kb/lancedb/            the LanceDB tables (chunks, documents)
    WS/kb/last_sync.json      the last ingest's report (counts, failures, times)
    WS/write.lock             held by ingest/reindex; a second writer waits or fails clearly
    WS/jobs/ID.json           long jobs' progress and end (infuse.jobs), read by `status`

>>> ws = Workspace.open("my-ws", create=True)  # doctest: +SKIP
>>> ws.ingest(["docs/"])  # doctest: +SKIP
>>> ws.search("how do I reset my password?", k=5)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import threading
import time
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from infuse.access import AccessList, DefaultPolicy
from infuse.config import (
    CONFIG_FILE_NAME,
    InjectionPolicy,
    SearchMode,
    Settings,
    StoreBackend,
    default_config_toml,
    language_profile,
)
from infuse.documents.chunking import Chunker
from infuse.documents.loaders import RecordFields, normalise_path
from infuse.documents.models import Chunk, sha256_hex
from infuse.embedders import Embedder, EmbedderIdentity, make_embedder
from infuse.errors import ConfigError, EmbedderMismatchError, InfuseError, WorkspaceBusyError, WorkspaceNotFoundError
from infuse.files import read_json, utc_now, utc_stamp, write_json_atomic, write_text_atomic
from infuse.ingest.access_sources import AccessResolver, check_known
from infuse.ingest.sync import IngestReport, Syncer
from infuse.jobs import JobState, list_jobs
from infuse.language import Language
from infuse.models.base import GenerationConfig, LanguageModel
from infuse.progress import Progress
from infuse.rag.pipeline import RagPipeline
from infuse.retrieval.lexical import LanguageAwareTokenizer
from infuse.retrieval.rerank import CrossEncoderReranker
from infuse.retrieval.search import HybridSearcher, SearchHit
from infuse.screening.injection import InjectionDetector, snippet
from infuse.store.base import DocumentRecord, IndexState, KnowledgeStore
from infuse.store.factory import open_store, read_shared_manifest, store_location, write_shared_manifest
from infuse.store.filters import Eq, Filter, FilterLike, combine, validate
from infuse.store.migrate import MigrationReport
from infuse.store.terms import TermStatistics

DEFAULT_WORKSPACE = ".infuse"
MANIFEST_VERSION = 1
# Bump when tokenisation or chunking logic changes in a way that should re-process documents.
# 2: prompt-injection screening (chunk flags, hidden HTML text) must be computed for every chunk.
PIPELINE_VERSION = "2"
# How many flagged passages `status` lists (the total is always counted).
FLAGGED_LIST_LIMIT = 50
# How many of the newest job records `status` shows (running ones first).
JOBS_LIST_LIMIT = 5
# How many filters (distinct callers' access) keep their own term statistics (the oldest is dropped).
FILTERED_STATISTICS_CACHED = 256


@dataclass
class KnowledgeBaseManifest:
    embedder: EmbedderIdentity
    chunks_table: str
    created_at: str
    store: StoreBackend = StoreBackend.LANCEDB  # the engine holding the chunks (manifests before 0.2: LanceDB)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": MANIFEST_VERSION,
            "store": self.store.value,
            "embedder": self.embedder.to_dict(),
            "chunks_table": self.chunks_table,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: Path) -> KnowledgeBaseManifest:
        store = data.get("store", StoreBackend.LANCEDB.value)
        if store not in set(StoreBackend):
            known = ", ".join(b.value for b in StoreBackend)
            raise ConfigError(
                f"{source}: the knowledge base is kept in store {store!r}, which this version of infuse "
                f"does not support (it knows {known}); upgrade infuse or rebuild the knowledge base"
            )
        return cls(
            EmbedderIdentity.from_dict(data["embedder"]), data["chunks_table"], data["created_at"], StoreBackend(store)
        )


@dataclass
class WorkspaceStatus:
    workspace: str
    documents: int
    chunks: int
    chunks_by_language: dict[str, int]
    embedder: dict[str, Any] | None
    configured_embedder: str
    store: dict[str, Any]
    last_sync: dict[str, Any] | None
    ingest_running: bool
    # Prompt-injection screening: what search does with flagged chunks, how many there are, and the
    # first FLAGGED_LIST_LIMIT of them as {"chunk_id", "source_path", "flags", "snippet"}.
    injection_policy: str = InjectionPolicy.MARK.value
    flagged_chunks: int = 0
    flagged: list[dict[str, Any]] = field(default_factory=list)
    # Long jobs (infuse.jobs.Job.to_dict): the running ones, then the newest ended ones, at most
    # JOBS_LIST_LIMIT; state is running, finished, failed or interrupted (its process is gone).
    jobs: list[dict[str, Any]] = field(default_factory=list)
    # Who may read documents without an access list ([access] default_policy): admins | everyone.
    access_default_policy: str = "admins"
    # The store's search indexes (IndexState.to_dict): kind (None: not built, rows are scanned),
    # indexed and unindexed rows; and the chunk count at which a vector index is built.
    indexes: list[dict[str, Any]] = field(default_factory=list)
    vector_index_min_rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class DocumentNotFoundError(InfuseError):
    """No stored document has the id or source path asked for."""

    http_status = 404


@dataclass(frozen=True)
class DocumentSummary:
    """A stored document as `infuse documents list` shows it."""

    doc_id: str
    source_path: str
    file_type: str
    title: str
    lang: str | None  # the language of most of its chunks (None: no chunks)
    chunks: int
    access: tuple[str, ...]
    metadata: dict[str, Any]
    ingested_at: str
    flagged: int = 0  # chunks the injection screen flagged (counted when the listing reads chunks)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "access": list(self.access)}


@dataclass(frozen=True)
class DocumentView:
    """A stored document's extracted text and its chunks: every chunk's ``start``/``end`` (and so
    every citation's) index into ``text``, so a viewer can highlight a cited passage in it."""

    record: DocumentRecord
    chunks: tuple[Chunk, ...]

    @property
    def text(self) -> str:
        return self.record.document.text

    def to_dict(self) -> dict[str, Any]:
        document = self.record.document
        return {
            "doc_id": document.doc_id,
            "source_path": document.source_path,
            "file_type": document.file_type.value,
            "title": document.title,
            "text": document.text,
            "chunks": [c.to_json("chunk_id", "index", "start", "end", "page", "heading_path") for c in self.chunks],
        }


@dataclass(frozen=True)
class DocumentAccess:
    """Who may read one stored document, as `infuse access show|set` reports it.

    ``governed_by``: the ``.infuse-access`` file that decides the list at the next ingest of the
    document's file (None: none does; a record's own access field is not looked for).
    """

    doc_id: str
    source_path: str
    access: AccessList
    governed_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "source_path": self.source_path,
            "allow": list(self.access.allow),
            "deny": list(self.access.deny),
            "uses_default_policy": self.access.is_default,
            "governed_by": self.governed_by,
        }


@dataclass
class RemovalReport:
    """What `infuse documents rm` did: the documents removed, and the names that matched none."""

    removed: list[DocumentSummary]
    not_found: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"removed": [d.to_dict() for d in self.removed], "not_found": self.not_found}


class Workspace:
    """A project's state on disk, and the library API over it."""

    def __init__(self, path: Path, settings: Settings) -> None:
        self.path = path
        self.settings = settings
        self.kb_dir = path / "kb"
        self.manifest_path = self.kb_dir / "manifest.json"
        self.last_sync_path = self.kb_dir / "last_sync.json"
        self.lock_path = path / "write.lock"
        self.datasets_dir = path / "datasets"  # training sets (infuse.tuning.datasets)
        self.adapters_dir = path / "adapters"  # fine-tuning runs (infuse.tuning.registry)
        self.questions_dir = path / "questions"  # evaluation question sets (infuse.evaluation.questions)
        self.runs_dir = path / "runs"  # compare runs and reports (infuse.evaluation)
        # Files colleagues upload in the web UI: the one part of the workspace that ingest reads.
        self.uploads_dir = path / "uploads"
        self.tokenizer = LanguageAwareTokenizer()
        self._stores: dict[tuple[str, int], KnowledgeStore] = {}
        self._filtered_statistics: dict[tuple[str, Filter], tuple[TermStatistics, TermStatistics]] = {}
        self._statistics_lock = threading.Lock()
        # Pinned reads ([store] refresh_seconds): the manifest and a snapshot per chunk table, with when.
        self._pins_lock = threading.Lock()
        self._pinned_manifest: tuple[KnowledgeBaseManifest | None, float] | None = None
        self._pinned: dict[tuple[str, int], tuple[KnowledgeStore, float]] = {}

    @classmethod
    def open(
        cls, path: str | Path | None = None, *, create: bool = False, lang: Language | None = None, **overrides: Any
    ) -> Workspace:
        """Open (or with ``create=True`` create) the workspace at ``path``.

        ``path`` defaults to ``$INFUSE_WORKSPACE`` or ``./.infuse``; ``overrides`` are settings
        given as flags, e.g. ``search={"k": 10}``. ``lang`` is the corpus language a new
        workspace's settings are written for (embedder and fusion weights; default English);
        for an existing workspace it must match the embedder it was created with.
        """
        resolved = Path(path or os.environ.get("INFUSE_WORKSPACE") or DEFAULT_WORKSPACE).expanduser().resolve()
        if not (resolved / CONFIG_FILE_NAME).exists():
            if not create:
                raise WorkspaceNotFoundError(
                    f"no infuse workspace at {resolved}; create one with `infuse -w {resolved} ingest PATH`"
                )
            write_text_atomic(resolved / CONFIG_FILE_NAME, default_config_toml(lang or Language.EN))
        settings = Settings.load(resolved, **overrides)
        if lang is not None:
            profile = language_profile(lang)
            if (settings.embedder.backend, settings.embedder.model) != (
                profile.embedder_backend,
                profile.embedder_model,
            ):
                raise ConfigError(
                    f"the workspace {resolved} exists with embedder {settings.embedder.model!r}; --lang {lang.value} "
                    f"applies when a workspace is created (it would choose {profile.embedder_model!r}). To switch, set "
                    f'[embedder] backend = "{profile.embedder_backend.value}" and model = "{profile.embedder_model}" '
                    f"in {resolved / CONFIG_FILE_NAME} and run `infuse -w {resolved} reindex`, or drop --lang"
                )
        return cls(resolved, settings)

    # --- components ----------------------------------------------------------------------------

    @cached_property
    def embedder(self) -> Embedder:
        return make_embedder(self.settings.embedder)

    @cached_property
    def injection_detector(self) -> InjectionDetector:
        return InjectionDetector()

    @cached_property
    def reranker(self) -> CrossEncoderReranker | None:
        model = self.settings.search.reranker
        return CrossEncoderReranker(model, self.settings.embedder.device) if model else None

    def manifest(self) -> KnowledgeBaseManifest | None:
        """The knowledge base's manifest: in the workspace, or with a knowledge base at ``[store] uri``
        (read again after ``[store] refresh_seconds`` or :meth:`refresh_knowledge`)."""
        uri = self.settings.store.uri
        if not uri:
            data = read_json(self.manifest_path)
            return KnowledgeBaseManifest.from_dict(data, self.manifest_path) if data else None
        with self._pins_lock:
            pinned = self._pinned_manifest
        if pinned is not None and self._fresh(pinned[1]):
            return pinned[0]
        data = read_shared_manifest(self.settings.store)
        manifest = KnowledgeBaseManifest.from_dict(data, Path(uri)) if data else None
        with self._pins_lock:
            self._pinned_manifest = (manifest, time.monotonic())
        return manifest

    def _fresh(self, pinned_at: float) -> bool:
        refresh = self.settings.store.refresh_seconds
        return refresh > 0 and time.monotonic() - pinned_at < refresh

    def refresh_knowledge(self) -> None:
        """Readers move to the knowledge base's latest commit now (a replica told that an ingest
        finished), instead of when ``[store] refresh_seconds`` runs out."""
        with self._pins_lock:
            self._pinned_manifest = None
            self._pinned.clear()

    def store(self) -> KnowledgeStore | None:
        """A writable store on the live chunk table (None before the first ingest). Writers hold
        the workspace's write lock (:meth:`ingest`, :meth:`remove_documents` and :meth:`reindex` do)."""
        manifest = self.manifest()
        return self._store(manifest) if manifest else None

    def _store(self, manifest: KnowledgeBaseManifest) -> KnowledgeStore:
        configured = self.settings.store.backend
        if manifest.store is not configured:
            raise ConfigError(
                f"the knowledge base in {self.path} is kept in store {manifest.store.value!r} but store.backend is "
                f"{configured.value!r}; set store.backend back to {manifest.store.value!r}, or run "
                f"`infuse migrate --to {configured.value}` to copy the knowledge base into {configured.value!r}"
            )
        return open_store(
            manifest.store, self.kb_dir, manifest.chunks_table, manifest.embedder.dimension, self.settings.store
        )

    def _write_manifest(self, manifest: KnowledgeBaseManifest) -> None:
        if self.settings.store.uri:
            write_shared_manifest(self.settings.store, manifest.to_dict())
            self.refresh_knowledge()
        else:
            write_json_atomic(self.manifest_path, manifest.to_dict())

    def _snapshot(self, manifest: KnowledgeBaseManifest) -> KnowledgeStore:
        """A read-only view of the latest committed state; the connection is reused across calls.
        With ``[store] refresh_seconds`` the view is pinned: reads within that time share one
        version (a replica does not look for new commits at every request)."""
        key = (manifest.chunks_table, manifest.embedder.dimension)
        with self._pins_lock:
            pinned = self._pinned.get(key)
        if pinned is not None and self._fresh(pinned[1]):
            return pinned[0]
        if key not in self._stores:
            self._stores[key] = self._store(manifest)
        view = self._stores[key].snapshot()
        if self.settings.store.refresh_seconds > 0:
            with self._pins_lock:
                self._pinned[key] = (view, time.monotonic())
        return view

    def _checked_manifest(self) -> KnowledgeBaseManifest:
        """The manifest, after checking that the configured embedder is the one that built the KB."""
        manifest = self.manifest()
        identity = self.embedder.identity()
        if manifest is None:
            manifest = KnowledgeBaseManifest(identity, "chunks", utc_now(), self.settings.store.backend)
            self._write_manifest(manifest)
            return manifest
        problem = manifest.embedder.mismatch(identity)
        if problem:
            raise EmbedderMismatchError(
                f"the knowledge base in {self.path} was built with embedder {manifest.embedder.model!r} but "
                f"{identity.model!r} is configured ({problem}). Run `infuse -w {self.path} reindex` to rebuild "
                f"it with the configured embedder, or set embedder.model back to {manifest.embedder.model!r}."
            )
        return manifest

    def knowledge_snapshot(self) -> KnowledgeStore:
        """A read-only view of the knowledge base's latest commit (no embedder needed): what
        training and evaluation data are built from. An empty knowledge base is an error."""
        manifest = self.manifest()
        store = self._snapshot(manifest) if manifest else None
        if store is None or store.count_chunks() == 0:
            raise InfuseError(
                f"the knowledge base in {self.path} is empty; add documents with `infuse -w {self.path} ingest PATH`"
            )
        return store

    def term_statistics(self, filters: FilterLike = None) -> TermStatistics:
        """Keyword document frequencies of the latest commit (empty before the first ingest).

        With ``filters`` (what one caller may read) they are counted over the chunks that pass
        only, so the relevance gate's weights do not depend on (and so cannot reveal) documents
        the caller may not read. Counted once per filter and knowledge-base version, then reused
        (:data:`FILTERED_STATISTICS_CACHED` filters are kept).
        """
        manifest = self.manifest()
        if manifest is None:
            return TermStatistics(0)
        store = self._snapshot(manifest)
        everything = store.term_statistics()
        checked = self.validate_filters(filters)
        if checked is None:
            return everything
        # The store's statistics object changes exactly when its chunk table does (a new version:
        # an ingest, a removal, an access change), so it is the version the cache is keyed by;
        # holding it in the entry keeps that identity from being reused.
        key = (manifest.chunks_table, checked)
        with self._statistics_lock:
            cached = self._filtered_statistics.get(key)
        if cached is not None and cached[0] is everything:
            return cached[1]
        counted = store.term_statistics(checked)  # from the keyword tokens ingest stored
        with self._statistics_lock:
            if len(self._filtered_statistics) >= FILTERED_STATISTICS_CACHED:
                self._filtered_statistics.pop(next(iter(self._filtered_statistics)))
            self._filtered_statistics[key] = (everything, counted)
        return counted

    def pipeline_fingerprint(self) -> str:
        chunking = self.settings.chunking
        return sha256_hex(f"{PIPELINE_VERSION}|{chunking.size}|{chunking.overlap}|{self.settings.embedder.model}")[:16]

    def _chunker(self) -> Chunker:
        return Chunker(self.embedder.token_counter, self.settings.chunking.size, self.settings.chunking.overlap)

    def _syncer(self, store: KnowledgeStore | None, **options: Any) -> Syncer:
        """A syncer with this workspace's chunking, embedder, tokenizer and commit size."""
        return Syncer(
            store=store,
            chunker_factory=self._chunker,
            embedder=self.embedder,
            tokenizer=self.tokenizer,
            pipeline=self.pipeline_fingerprint(),
            commit_every=self.settings.ingest.commit_every,
            ingest=self.settings.ingest,
            **options,
        )

    def _write_lock(self) -> FileLock:
        return FileLock(str(self.lock_path), timeout=self.settings.ingest.lock_timeout)

    def _locked(self) -> FileLock:
        lock = self._write_lock()
        try:
            lock.acquire()
        except Timeout as exc:
            raise WorkspaceBusyError(
                f"another ingest or reindex is writing to {self.path} (lock {self.lock_path}); wait for it to "
                "finish, or retry with --wait SECONDS"
            ) from exc
        return lock

    # --- operations ----------------------------------------------------------------------------

    def ingest(
        self,
        paths: Sequence[str | Path],
        *,
        prune: bool = False,
        text_field: str = "text",
        id_field: str | None = None,
        progress: Progress | None = None,
        access: Sequence[str] = (),
        access_field: str = "access",
        known_principals: Collection[str] | None = None,
        exclude: Sequence[str] = (),
        follow_links: bool | None = None,
    ) -> IngestReport:
        """Add new files, replace changed ones, skip unchanged ones; ``prune`` drops vanished ones
        (only under ``paths``); ``exclude`` globs and ``follow_links`` as in :meth:`Syncer.sync`.

        ``access``: entries (``group:legal``, ``deny:user:eve``) for documents that neither their
        record's ``access_field`` nor a folder's ``.infuse-access`` file gives a list
        (:mod:`infuse.ingest.access_sources` has the precedence); checked against
        ``known_principals`` (the users and groups that exist) when given. An unchanged document
        whose list changed has its access column rewritten, not re-embedded.
        """
        resolver = AccessResolver.for_flag(access, known_principals)
        lock = self._locked()
        try:
            manifest = self.manifest()
            store: KnowledgeStore | None = self._store(manifest) if manifest else None
            if store is not None:
                store.reconcile_access()  # a crash inside an earlier set_access must not undo it

            def prepare_write() -> KnowledgeStore:
                return self._store(self._checked_manifest())

            syncer = self._syncer(store, prepare_write=prepare_write, exclude=self._own_state(), access=resolver)
            report = syncer.sync(
                [Path(p) for p in paths],
                prune=prune,
                fields=RecordFields(text_field, id_field, access_field),
                progress=progress,
                exclude=exclude,
                follow_links=follow_links,
            )
            write_json_atomic(self.last_sync_path, report.to_dict())
            self.refresh_knowledge()  # this process's readers see what it wrote
            return report
        finally:
            lock.release()

    def _own_state(self) -> list[Path]:
        """What ingest never reads: the workspace itself, but for its uploads folder."""
        if not self.uploads_dir.is_dir():
            return [self.path]
        return [p for p in self.path.iterdir() if p != self.uploads_dir]

    def remove_documents(self, doc_ids: Sequence[str]) -> int:
        """Delete documents and their chunks by id (e.g. ones a changed version replaces that
        lives at another path). Returns how many ids were asked for."""
        if not doc_ids:
            return 0
        lock = self._locked()
        try:
            manifest = self.manifest()
            if manifest is not None:
                self._store(manifest).delete_documents(list(doc_ids))
                self.refresh_knowledge()
            return len(doc_ids)
        finally:
            lock.release()

    def set_access(self, doc_ids: Sequence[str], access: AccessList) -> None:
        """Make ``access`` the list of these documents: only their access column is rewritten (no
        re-embedding), each document's chunks at once, under the write lock. It lasts until an
        ingest finds a source that speaks for the document (record field, folder file, --access)."""
        if not doc_ids:
            return
        lock = self._locked()
        try:
            manifest = self.manifest()
            if manifest is not None:
                store = self._store(manifest)
                store.reconcile_access()
                store.set_access(list(doc_ids), access.to_column())
                store.optimize()
                self.refresh_knowledge()
        finally:
            lock.release()

    def migrate(self, to: StoreBackend) -> MigrationReport:
        """Copy the knowledge base into store ``to`` (configured as ``store.backend``, with its
        settings) without embedding again, verify it, then switch the manifest to it; the old store's
        data is left in place (delete it once the new one serves). Holds the write lock."""
        from infuse.store.migrate import copy_store

        if self.settings.store.backend is not to:
            raise ConfigError(
                f"infuse migrate --to {to.value}: set store.backend = {to.value!r} in {self.path / CONFIG_FILE_NAME} first "
                f"(it is {self.settings.store.backend.value!r}), with the new store's settings"
            )
        lock = self._locked()
        try:
            manifest = self.manifest()
            if manifest is None:
                raise ConfigError(f"{self.path} has no knowledge base yet: ingest documents instead of migrating")
            if manifest.store is to:
                raise ConfigError(f"the knowledge base in {self.path} is already kept in store {to.value!r}")
            dimension = manifest.embedder.dimension
            source = open_store(manifest.store, self.kb_dir, manifest.chunks_table, dimension, self.settings.store)
            source.reconcile_access()
            target = open_store(to, self.kb_dir, manifest.chunks_table, dimension, self.settings.store)
            report = copy_store(source, target)
            self._write_manifest(dataclasses.replace(manifest, store=to))
            self._stores.clear()  # open views are on the old store
            return report
        finally:
            lock.release()

    def optimize(self) -> list[IndexState]:
        """Bring the knowledge base's indexes up to date now (what every ingest does at its end):
        unindexed rows join them, a vector index is built or retrained when due. Returns their state."""
        lock = self._locked()
        try:
            manifest = self.manifest()
            if manifest is None:
                return []
            store = self._store(manifest)
            store.optimize()
            return store.index_states()
        finally:
            lock.release()

    def documents_at(self, ref: str) -> list[str]:
        """The ids of the documents ``ref`` names: a document id, a source path (all its records),
        or a folder (every document below it); :class:`DocumentNotFoundError` when none."""
        store = self._read_snapshot()
        ids = self._matching_ids(store, ref) if store else []
        if store is not None and not ids:
            folder = normalise_path(Path(ref)).rstrip("/") + "/"
            ids = sorted(d for d, state in store.document_states().items() if state.source_path.startswith(folder))
        if not ids:
            raise DocumentNotFoundError(
                f"no document, file or folder {ref!r} in the knowledge base of {self.path}; "
                f"`infuse -w {self.path} documents list` shows the ids and source paths"
            )
        return ids

    def document_access(self, ref: str) -> list[DocumentAccess]:
        """Who may read each document ``ref`` names (see :meth:`documents_at`), by source path."""
        ids = set(self.documents_at(ref))
        store = self._read_snapshot()
        records = [r for r in store.iter_documents() if r.doc_id in ids] if store else []
        resolver = AccessResolver()
        found = []
        for record in sorted(records, key=lambda r: (r.document.source_path, r.doc_id)):
            governing = resolver.governing_file(record.document.source_path)
            found.append(
                DocumentAccess(
                    record.doc_id,
                    record.document.source_path,
                    AccessList.from_column(record.document.access),
                    governing.as_posix() if governing else None,
                )
            )
        return found

    def set_access_at(
        self, ref: str, entries: Sequence[str], known_principals: Collection[str] | None = None
    ) -> list[DocumentAccess]:
        """``infuse access set``: give every document ``ref`` names the list of ``entries`` (none:
        the default policy), checked against ``known_principals`` when given; returns the result."""
        access = check_known(AccessList.parse(entries), known_principals, "--access")
        self.set_access(self.documents_at(ref), access)
        return self.document_access(ref)

    def default_policy(self) -> DefaultPolicy:
        """Who may read documents without an access list (``[access] default_policy``)."""
        return DefaultPolicy(self.settings.access.default_policy)

    # --- documents -----------------------------------------------------------------------------

    def _read_snapshot(self) -> KnowledgeStore | None:
        manifest = self.manifest()
        return self._snapshot(manifest) if manifest else None

    def validate_filters(self, filters: FilterLike) -> Filter | None:
        """``filters`` checked against the filter schema and this knowledge base's metadata keys
        (:func:`infuse.store.filters.validate`): an unknown key or a wrong value is a ``FilterError``."""

        def metadata_keys() -> frozenset[str]:
            store = self._read_snapshot()
            return store.metadata_keys() if store else frozenset()

        return validate(filters, metadata_keys)

    def documents(self, filters: FilterLike = None) -> list[DocumentSummary]:
        """The stored documents (with ``filters``: those with a chunk that passes), by source path."""
        checked = self.validate_filters(filters)
        store = self._read_snapshot()
        if store is None:
            return []
        languages: dict[str, Counter[str]] = {}
        flagged: Counter[str] = Counter()
        for chunk in store.iter_chunks(checked):
            languages.setdefault(chunk.doc_id, Counter())[chunk.lang.value] += 1
            flagged[chunk.doc_id] += bool(chunk.flags)
        records = [r for r in store.iter_documents() if checked is None or r.doc_id in languages]
        records.sort(key=lambda r: (r.document.source_path, r.doc_id))
        return [self._summary(r, languages.get(r.doc_id), flagged[r.doc_id]) for r in records]

    @staticmethod
    def _summary(record: DocumentRecord, languages: Counter[str] | None, flagged: int = 0) -> DocumentSummary:
        document = record.document
        return DocumentSummary(
            doc_id=document.doc_id,
            source_path=document.source_path,
            file_type=document.file_type.value,
            title=document.title,
            lang=languages.most_common(1)[0][0] if languages else None,
            chunks=record.n_chunks,
            access=document.access,
            metadata=dict(document.metadata),
            ingested_at=record.ingested_at,
            flagged=flagged,
        )

    def _matching_ids(self, store: KnowledgeStore, ref: str) -> list[str]:
        """The documents ``ref`` names: the one with that id, else all from that source path
        (a relative path is taken from the current folder, as ingest does)."""
        states = store.document_states()
        if ref in states:
            return [ref]
        path = normalise_path(Path(ref))
        return sorted(doc_id for doc_id, state in states.items() if state.source_path == path)

    def document(self, ref: str, filters: FilterLike = None) -> DocumentView:
        """The document with id (or from source path) ``ref``: its extracted text and chunks.

        With ``filters`` (e.g. what one user may read) a document none of whose chunks pass is
        not found. A path holding several documents (JSONL records) is an error listing their ids.
        """
        store = self._read_snapshot()
        ids = self._matching_ids(store, ref) if store else []
        if len(ids) > 1:
            shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
            raise InfuseError(f"{ref} holds {len(ids)} documents (records); name one by id: {shown}")
        if store is not None and ids:
            chunks = tuple(store.iter_chunks(combine(Eq("doc_id", ids[0]), self.validate_filters(filters))))
            record = next((r for r in store.iter_documents() if r.doc_id == ids[0]), None)
            if record is not None and (chunks or filters is None):
                return DocumentView(record, chunks)
        raise DocumentNotFoundError(
            f"no document {ref!r} in the knowledge base of {self.path}; "
            f"`infuse -w {self.path} documents list` shows the ids and source paths"
        )

    def remove(self, refs: Sequence[str]) -> RemovalReport:
        """Remove documents by id or source path (all documents of that path); names that match
        no document are reported, not an error, so the others are still removed."""
        store = self._read_snapshot()
        found: dict[str, None] = {}
        not_found: list[str] = []
        for ref in refs:
            ids = self._matching_ids(store, ref) if store else []
            found.update(dict.fromkeys(ids))
            if not ids:
                not_found.append(ref)
        removed = [self._summary(r, None) for r in store.iter_documents() if r.doc_id in found] if store else []
        self.remove_documents(list(found))
        return RemovalReport(sorted(removed, key=lambda d: (d.source_path, d.doc_id)), not_found)

    # --- retrieval -----------------------------------------------------------------------------

    def retriever(self, filters: FilterLike = None, mode: SearchMode | None = None) -> WorkspaceRetriever:
        """A retriever over the latest commit at each call; ``filters`` narrow every search
        (e.g. to what one user may read); ``mode`` overrides ``[search] mode``."""
        return WorkspaceRetriever(self, filters, mode)

    def rag_pipeline(
        self,
        model: LanguageModel,
        generation: GenerationConfig | None = None,
        filters: FilterLike = None,
        mode: SearchMode | None = None,
    ) -> RagPipeline:
        """RAG over this knowledge base with the workspace's settings (``filters``, ``mode``: see :meth:`retriever`)."""
        model_settings = self.settings.model
        generation = generation or GenerationConfig(
            max_new_tokens=model_settings.max_new_tokens, temperature=model_settings.temperature
        )
        return RagPipeline(self.retriever(filters, mode), model, self.settings.rag, self.tokenizer, generation)

    def searcher(self, mode: SearchMode | None = None) -> HybridSearcher | None:
        """A searcher over a consistent snapshot of the knowledge base (None when it is empty)."""
        manifest = self.manifest()
        if manifest is None:
            return None
        mode = mode or self.settings.search.mode
        needs_embedder = mode is not SearchMode.LEXICAL
        if needs_embedder:
            manifest = self._checked_manifest()
        return HybridSearcher(
            self._snapshot(manifest),
            self.embedder if needs_embedder else None,
            self.tokenizer,
            self.settings.search,
            self.reranker,
            exclude_flagged=self.settings.ingest.injection is InjectionPolicy.QUARANTINE,
        )

    def search(
        self, query: str, k: int | None = None, mode: SearchMode | None = None, filters: FilterLike = None
    ) -> list[SearchHit]:
        return self.search_many([query], k, mode, filters)[0]

    def search_many(
        self, queries: Sequence[str], k: int | None = None, mode: SearchMode | None = None, filters: FilterLike = None
    ) -> list[list[SearchHit]]:
        mode = mode or self.settings.search.mode
        checked = self.validate_filters(filters)
        searcher = self.searcher(mode)
        if searcher is None:
            return [[] for _ in queries]
        return searcher.search_many(list(queries), k or self.settings.search.k, checked, mode)

    def status(self) -> WorkspaceStatus:
        manifest = self.manifest()
        store = self._snapshot(manifest) if manifest else None
        lock = FileLock(str(self.lock_path), timeout=0)
        try:
            lock.acquire()
            lock.release()
            running = False
        except Timeout:
            running = True
        return WorkspaceStatus(
            workspace=str(self.path),
            documents=store.count_documents() if store else 0,
            chunks=store.count_chunks() if store else 0,
            chunks_by_language=store.chunk_counts_by_language() if store else {},
            embedder=(
                {
                    "model": manifest.embedder.model,
                    "dimension": manifest.embedder.dimension,
                    "query_prefix": manifest.embedder.query_prefix,
                    "passage_prefix": manifest.embedder.passage_prefix,
                    "precision": manifest.embedder.precision.value,
                }
                if manifest
                else None
            ),
            configured_embedder=self.settings.embedder.model,
            store={
                "backend": self.settings.store.backend.value,
                "path": str(
                    store_location(
                        manifest.store if manifest else self.settings.store.backend, self.kb_dir, self.settings.store
                    )
                ),
                "chunks_table": manifest.chunks_table if manifest else None,
            },
            last_sync=read_json(self.last_sync_path),
            ingest_running=running,
            injection_policy=self.settings.ingest.injection.value,
            flagged_chunks=store.count_flagged_chunks() if store else 0,
            flagged=[self._flagged_entry(c) for c in store.flagged_chunks(FLAGGED_LIST_LIMIT)] if store else [],
            jobs=self._jobs(),
            access_default_policy=self.settings.access.default_policy,
            indexes=[state.to_dict() for state in store.index_states()] if store else [],
            vector_index_min_rows=self.settings.store.index.min_rows,
        )

    def _jobs(self) -> list[dict[str, Any]]:
        """Running jobs first, then the newest ended ones (at most JOBS_LIST_LIMIT in all)."""
        jobs = list_jobs(self.path)
        running = [job for job in jobs if job.state == JobState.RUNNING]
        ended = [job for job in jobs if job.state != JobState.RUNNING]
        return [job.to_dict() for job in (running + ended)[:JOBS_LIST_LIMIT]]

    def _flagged_entry(self, chunk: Chunk) -> dict[str, Any]:
        """A flagged chunk for `status`: where it is, why, and the text around the first match."""
        findings = self.injection_detector.scan(chunk.text)
        first = findings[0] if findings else None
        return {
            "chunk_id": chunk.chunk_id,
            "source_path": chunk.source_path,
            "flags": list(chunk.flags),
            "snippet": snippet(chunk.text, first.start, first.end) if first else snippet(chunk.text),
        }

    def reindex(self, progress: Progress | None = None) -> IngestReport:
        """Rebuild every chunk with the configured embedder and chunking, from the stored documents.

        The new chunks go to a fresh table; the manifest switches to it only when it is complete,
        so a crash leaves the old knowledge base in service.
        """
        lock = self._locked()
        try:
            old = self.manifest()
            if old is None:
                return IngestReport(started_at=utc_now(), finished_at=utc_now())
            old_store = self._store(old)
            old_store.drop_other_collections()  # tables of reindexes killed before they switched over
            old_store.reconcile_access()  # the new chunks take their lists from the document rows
            identity = self.embedder.identity()
            # the random tail keeps two reindexes in the same second from writing into one table
            table = f"chunks_{utc_stamp().replace('-', '_')}_{secrets.token_hex(4)}"
            new_manifest = KnowledgeBaseManifest(identity, table, old.created_at, old.store)
            new_store = self._store(new_manifest)
            syncer = self._syncer(new_store)
            report = syncer.resync_documents(list(old_store.iter_documents()), progress=progress)
            self._write_manifest(new_manifest)
            old_store.drop()
            return report
        finally:
            lock.release()


class WorkspaceRetriever:
    """Searches the workspace's latest commit at every call, so a long-running server sees what
    an ingest added since it started; ``filters`` are added to every search's own filters."""

    def __init__(self, workspace: Workspace, filters: FilterLike = None, mode: SearchMode | None = None) -> None:
        self.workspace = workspace
        self.filters = filters
        self.mode = mode

    def search(self, query: str, k: int, filters: FilterLike = None) -> list[SearchHit]:
        return self.workspace.search(query, k=k, mode=self.mode, filters=combine(self.filters, filters))

    def term_statistics(self) -> TermStatistics:
        """Over what this retriever's ``filters`` let through (everything without filters)."""
        return self.workspace.term_statistics(self.filters)
