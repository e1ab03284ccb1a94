"""Knowledge stores: the records, the protocol, typed filters, the factory and the engines."""

from infuse.store.base import DocumentRecord, DocumentState, IndexedChunk, KnowledgeStore, ScoredChunk
from infuse.store.filters import AllOf, AnyOf, Eq, Filter, FilterLike, as_filter
from infuse.store.terms import TermStatistics

__all__ = [
    "AllOf",
    "AnyOf",
    "DocumentRecord",
    "DocumentState",
    "Eq",
    "Filter",
    "FilterLike",
    "IndexedChunk",
    "KnowledgeStore",
    "ScoredChunk",
    "TermStatistics",
    "as_filter",
]
