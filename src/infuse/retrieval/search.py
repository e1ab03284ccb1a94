"""Hybrid search: dense and keyword lists from the store, fused per query language (weighted RRF
or relative-score fusion, :mod:`infuse.retrieval.fusion`), optionally reranked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from infuse.config import SearchMode, SearchSettings
from infuse.documents.models import Chunk
from infuse.embedders.base import Embedder
from infuse.language import Language, detect_language
from infuse.retrieval.fusion import fuse
from infuse.retrieval.lexical import Tokenizer
from infuse.retrieval.rerank import CrossEncoderReranker
from infuse.store.base import KnowledgeStore
from infuse.store.filters import Filter, FilterLike, as_filter
from infuse.store.terms import TermStatistics

# The chunk fields a hit's JSON shows (README "Search results"; tests/test_cli.py pins them).
HIT_CHUNK_FIELDS = (
    "chunk_id",
    "doc_id",
    "source_path",
    "text",
    "start",
    "end",
    "page",
    "heading_path",
    "lang",
    "metadata",
)


@dataclass
class SearchHit:
    """One search result: a chunk, where it ranked and why.

    ``score`` is what the ranking used: the rerank score when reranking, else the fused score in
    hybrid mode, else the dense (cosine) or lexical (BM25) score. The per-list scores and ranks
    are null when the chunk was not in that list. The JSON of :meth:`to_dict` is a stable
    interface (README "Search results"; ``tests/test_cli.py`` pins its field names).
    """

    rank: int
    chunk: Chunk
    score: float
    fused_score: float | None = None
    dense_score: float | None = None
    dense_rank: int | None = None
    lexical_score: float | None = None
    lexical_rank: int | None = None
    rerank_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            **self.chunk.to_json(*HIT_CHUNK_FIELDS),
            "score": self.score,
            "fused_score": self.fused_score,
            "dense_score": self.dense_score,
            "dense_rank": self.dense_rank,
            "lexical_score": self.lexical_score,
            "lexical_rank": self.lexical_rank,
            "rerank_score": self.rerank_score,
            # Prompt-injection screening flags of the chunk (rule names, "hidden_html_text"); empty when clean.
            **self.chunk.to_json("flags"),
        }


class Retriever(Protocol):
    """What RAG needs from retrieval: ranked passages for a question, and the keyword statistics
    its relevance gate weighs words by. A per-user retriever adds that user's access filter."""

    def search(self, query: str, k: int, filters: FilterLike = None) -> list[SearchHit]: ...

    def term_statistics(self) -> TermStatistics: ...


class HybridSearcher:
    """Runs one search mode over a store snapshot.

    >>> searcher = HybridSearcher(store, embedder, LanguageAwareTokenizer(), SearchSettings())  # doctest: +SKIP
    >>> searcher.search("how do I rotate the API key?", k=5)[0].chunk.source_path  # doctest: +SKIP
    """

    def __init__(
        self,
        store: KnowledgeStore,
        embedder: Embedder | None,
        tokenizer: Tokenizer,
        settings: SearchSettings,
        reranker: CrossEncoderReranker | None = None,
        exclude_flagged: bool = False,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.tokenizer = tokenizer
        self.settings = settings
        self.reranker = reranker
        self.exclude_flagged = exclude_flagged  # ingest.injection = "quarantine": flagged chunks are never returned

    def search(self, query: str, k: int, filters: FilterLike = None, mode: SearchMode | None = None) -> list[SearchHit]:
        return self.search_many([query], k, filters, mode)[0]

    def term_statistics(self) -> TermStatistics:
        return self.store.term_statistics()

    def search_many(
        self, queries: Sequence[str], k: int, filters: FilterLike = None, mode: SearchMode | None = None
    ) -> list[list[SearchHit]]:
        """Search several queries; their embeddings are computed in one batch. ``mode`` defaults
        to the settings' mode."""
        mode = mode or self.settings.mode
        typed = as_filter(filters)
        languages = [detect_language(q) for q in queries]
        needs_dense = [self._uses_dense(mode, lang) for lang in languages]
        vectors: dict[int, np.ndarray] = {}
        if any(needs_dense):
            if self.embedder is None:
                raise ValueError("dense search needs an embedder")
            indices = [i for i, needed in enumerate(needs_dense) if needed]
            for i, vector in zip(indices, self.embedder.embed_queries([queries[i] for i in indices])):
                vectors[i] = vector
        return [
            self._search_one(query, lang, vectors.get(i), k, mode, typed)
            for i, (query, lang) in enumerate(zip(queries, languages))
        ]

    def _uses_dense(self, mode: SearchMode, lang: Language) -> bool:
        if mode is SearchMode.DENSE:
            return True
        return mode is SearchMode.HYBRID and self._weights(lang)[0] > 0

    def _weights(self, lang: Language) -> tuple[float, float]:
        weights = self.settings.weights[lang]
        return weights.dense, weights.lexical

    def _search_one(
        self, query: str, lang: Language, vector: np.ndarray | None, k: int, mode: SearchMode, filters: Filter | None
    ) -> list[SearchHit]:
        depth = max(k, self.settings.candidates, self.settings.rerank_depth if self.reranker else 0)
        quarantine = self.exclude_flagged
        tokens = self.tokenizer.tokenize(query) if mode in (SearchMode.LEXICAL, SearchMode.HYBRID) else None
        dense, lexical = self.store.ranked_lists(vector, tokens, depth, filters, exclude_flagged=quarantine)
        by_id: dict[str, Chunk] = {s.chunk.chunk_id: s.chunk for s in [*lexical, *dense]}
        dense_rank = {s.chunk.chunk_id: (r, s.score) for r, s in enumerate(dense, start=1)}
        lexical_rank = {s.chunk.chunk_id: (r, s.score) for r, s in enumerate(lexical, start=1)}

        ordered: list[tuple[str, float, float | None]]  # (chunk id, score, fused score or None)
        if mode is SearchMode.HYBRID:
            fused = fuse(
                [(s.chunk.chunk_id, s.score) for s in dense],
                [(s.chunk.chunk_id, s.score) for s in lexical],
                self.settings.weights[lang],
                rrf_k=self.settings.rrf_k,
            )
            ordered = [(chunk_id, score, score) for chunk_id, score in fused]
        else:
            source = dense if mode is SearchMode.DENSE else lexical
            ordered = [(s.chunk.chunk_id, s.score, None) for s in source]

        rerank_scores: dict[str, float] = {}
        if self.reranker is not None and ordered:
            head = ordered[: self.settings.rerank_depth]
            scores = self.reranker.score(query, [by_id[chunk_id].text for chunk_id, _, _ in head])
            rerank_scores = {chunk_id: s for (chunk_id, _, _), s in zip(head, scores)}
            head = sorted(head, key=lambda item: -rerank_scores[item[0]])
            ordered = head + ordered[self.settings.rerank_depth :]

        hits = []
        for rank, (chunk_id, score, fused_score) in enumerate(ordered[:k], start=1):
            d_rank, d_score = dense_rank.get(chunk_id, (None, None))
            l_rank, l_score = lexical_rank.get(chunk_id, (None, None))
            hits.append(
                SearchHit(
                    rank=rank,
                    chunk=by_id[chunk_id],
                    score=rerank_scores.get(chunk_id, score),
                    fused_score=fused_score,
                    dense_score=d_score,
                    dense_rank=d_rank,
                    lexical_score=l_score,
                    lexical_rank=l_rank,
                    rerank_score=rerank_scores.get(chunk_id),
                )
            )
        return hits
