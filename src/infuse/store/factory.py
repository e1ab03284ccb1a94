"""Opens the configured knowledge store (``[store] backend``): one line per backend.

A new engine is one module implementing :class:`~infuse.store.base.KnowledgeStore`, one entry in
:data:`BACKENDS` and one fixture in ``tests/test_store_contract.py``; search, sync and RAG do not
change.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from infuse.config import StoreBackend, StoreSettings
from infuse.store.base import KnowledgeStore


def _lancedb(kb_dir: Path, chunks_table: str, dimension: int, settings: StoreSettings) -> KnowledgeStore:
    from infuse.store.lancedb import LanceDBStore

    location = settings.uri or kb_dir / "lancedb"
    return LanceDBStore(
        location, chunks_table, dimension, index=settings.index, storage_options=settings.s3.storage_options()
    )


def _qdrant(kb_dir: Path, chunks_table: str, dimension: int, settings: StoreSettings) -> KnowledgeStore:
    from infuse.store.qdrant import QdrantStore

    return QdrantStore(settings.qdrant, chunks_table, dimension, local_path=kb_dir / "qdrant")


# backend -> (open the store, where it keeps its data under the workspace's kb folder)
BACKENDS: dict[StoreBackend, tuple[Callable[[Path, str, int, StoreSettings], KnowledgeStore], str]] = {
    StoreBackend.LANCEDB: (_lancedb, "lancedb"),
    StoreBackend.QDRANT: (_qdrant, "qdrant"),  # local mode; a server when [store.qdrant] url is set
}


def open_store(
    backend: StoreBackend, kb_dir: Path, chunks_table: str, dimension: int, settings: StoreSettings | None = None
) -> KnowledgeStore:
    """The store for a knowledge base in ``kb_dir`` (created when missing); ``settings``: the
    workspace's ``[store]`` section (indexes, location), defaults when omitted."""
    opener, _ = BACKENDS[backend]
    return opener(kb_dir, chunks_table, dimension, settings or StoreSettings(backend=backend))


def store_location(backend: StoreBackend, kb_dir: Path, settings: StoreSettings | None = None) -> Path | str:
    """Where ``backend`` keeps a knowledge base's data (what ``infuse status`` shows): LanceDB's
    ``[store] uri`` when set (object storage), a Qdrant server's ``[store.qdrant] url`` when set,
    else a folder under the workspace's kb folder."""
    if settings is not None:
        remote = settings.uri if backend is StoreBackend.LANCEDB else settings.qdrant.url
        if remote:
            return remote
    return kb_dir / BACKENDS[backend][1]


def read_shared_manifest(settings: StoreSettings) -> dict[str, Any] | None:
    """The knowledge-base manifest kept with a knowledge base at ``[store] uri`` (so replicas and
    ingest workers on other machines share it); None before the first ingest."""
    from infuse.store.lancedb import read_manifest_record

    assert settings.uri, "read_shared_manifest: [store] uri is not set"
    return read_manifest_record(settings.uri, settings.s3.storage_options())


def write_shared_manifest(settings: StoreSettings, record: dict[str, Any]) -> None:
    from infuse.store.lancedb import write_manifest_record

    assert settings.uri, "write_shared_manifest: [store] uri is not set"
    write_manifest_record(settings.uri, record, settings.s3.storage_options())
