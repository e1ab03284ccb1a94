"""Keyword statistics of a knowledge base: how many chunks, and in how many each keyword occurs.

Stores count them from the keyword tokens they keep (once per committed version, then cached);
the RAG relevance gate weighs a question's keywords by them (:mod:`infuse.rag.relevance`).

>>> stats = TermStatistics.from_token_lists([["alda", "food"], ["food"]])
>>> stats.n_chunks, stats.document_frequency["food"]
(2, 2)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TermStatistics:
    """How many chunks the knowledge base holds, and in how many of them each keyword occurs."""

    n_chunks: int
    document_frequency: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_token_lists(cls, chunks: Iterable[Iterable[str]]) -> TermStatistics:
        counts: Counter[str] = Counter()
        n = 0
        for tokens in chunks:
            n += 1
            counts.update(set(tokens))
        return cls(n, dict(counts))

    def idf(self, term: str) -> float:
        """BM25's inverse document frequency; unknown terms count as occurring in one chunk."""
        df = max(self.document_frequency.get(term, 0), 1)
        return math.log(1 + (self.n_chunks - df + 0.5) / (df + 0.5))
