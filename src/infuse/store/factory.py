"""Opens the configured knowledge store (``[store] backend``): one line per backend.

A new engine is one module implementing :class:`~infuse.store.base.KnowledgeStore`, one entry in
:data:`BACKENDS` and one fixture in ``tests/test_store_contract.py``; search, sync and RAG do not
change.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from infuse.config import StoreBackend, StoreSettings
from infuse.store.base import KnowledgeStore


def _lancedb(kb_dir: Path, chunks_table: str, dimension: int, settings: StoreSettings) -> KnowledgeStore:
    from infuse.store.lancedb import LanceDBStore

    return LanceDBStore(kb_dir / "lancedb", chunks_table, dimension, index=settings.index)


# backend -> (open the store, where it keeps its data under the workspace's kb folder)
BACKENDS: dict[StoreBackend, tuple[Callable[[Path, str, int, StoreSettings], KnowledgeStore], str]] = {
    StoreBackend.LANCEDB: (_lancedb, "lancedb"),
}


def open_store(
    backend: StoreBackend, kb_dir: Path, chunks_table: str, dimension: int, settings: StoreSettings | None = None
) -> KnowledgeStore:
    """The store for a knowledge base in ``kb_dir`` (created when missing); ``settings``: the
    workspace's ``[store]`` section (indexes, location), defaults when omitted."""
    opener, _ = BACKENDS[backend]
    return opener(kb_dir, chunks_table, dimension, settings or StoreSettings())


def store_location(backend: StoreBackend, kb_dir: Path) -> Path:
    """Where ``backend`` keeps a knowledge base's data (what ``infuse status`` shows)."""
    return kb_dir / BACKENDS[backend][1]
