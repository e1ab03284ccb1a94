"""Copy a knowledge base from one store to another (``infuse migrate --to qdrant|lancedb``).

Why: moving to a server engine must not mean embedding every chunk again. The copy reads each
chunk with its keyword tokens and vector (:meth:`~infuse.store.base.KnowledgeStore.iter_indexed`)
and writes them into the emptied target (it is not in service yet), document batch by document batch, with ``replace_documents``, so the target
holds exactly what the source holds. It is verified before anything switches: the same document
and chunk counts, the same chunk ids, the same counts by language. The source is not modified;
a killed copy is simply run again.

Note: Qdrant stores cosine vectors normalised, so a copy from Qdrant to LanceDB has unit vectors
(the same cosine scores).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from infuse.errors import InfuseError
from infuse.store.base import KnowledgeStore
from infuse.store.filters import AnyOf

BATCH_DOCUMENTS = 200


class MigrationError(InfuseError):
    """The copy does not match its source (counts or ids differ): the knowledge base was not switched."""

    http_status = 500


@dataclass(frozen=True)
class MigrationReport:
    documents: int
    chunks: int
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def copy_store(
    source: KnowledgeStore, target: KnowledgeStore, on_batch: Callable[[int], None] | None = None
) -> MigrationReport:
    """Copy every document and its chunks (vectors as stored) from ``source`` into ``target``,
    then verify; ``on_batch(n)`` is called after each batch of ``n`` documents."""
    clock = time.perf_counter()
    # The target is not in service yet: clear what an earlier (killed or older) copy left there,
    # chunks written before their document row included.
    left = set(target.document_states()) | {c.doc_id for c in target.iter_chunks()}
    target.delete_documents(sorted(left))
    records = list(source.iter_documents())
    for start in range(0, len(records), BATCH_DOCUMENTS):
        batch = records[start : start + BATCH_DOCUMENTS]
        chunks = list(source.iter_indexed(AnyOf("doc_id", [r.doc_id for r in batch])))
        target.replace_documents(batch, chunks)
        if on_batch is not None:
            on_batch(len(batch))
    target.optimize()
    verify(source, target)
    return MigrationReport(len(records), target.count_chunks(), round(time.perf_counter() - clock, 3))


def verify(source: KnowledgeStore, target: KnowledgeStore) -> None:
    """Raise :class:`MigrationError` unless both stores hold the same documents and chunks."""
    checks: dict[str, tuple[Any, Any]] = {
        "documents": (source.count_documents(), target.count_documents()),
        "chunks": (source.count_chunks(), target.count_chunks()),
        "chunks by language": (source.chunk_counts_by_language(), target.chunk_counts_by_language()),
        "document ids": (sorted(source.document_states()), sorted(target.document_states())),
        "chunk ids": (sorted(source.chunk_ids()), sorted(target.chunk_ids())),
    }
    for what, (expected, copied) in checks.items():
        if expected != copied:
            shown = (len(expected), len(copied)) if isinstance(expected, list) else (expected, copied)
            raise MigrationError(
                f"migration check failed: {what} differ (source {shown[0]}, copy {shown[1]}); the knowledge "
                "base still uses its old store. Run the migration again; if it fails again, report it."
            )
