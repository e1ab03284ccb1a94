"""Hybrid search: dense and keyword lists from the store, fused with weighted RRF, optionally reranked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from infuse.config import SearchMode, SearchSettings
from infuse.language import Language, detect_language
from infuse.retrieval.embed import Embedder
from infuse.retrieval.fusion import reciprocal_rank_fusion
from infuse.retrieval.lexical import Tokenizer
from infuse.retrieval.rerank import CrossEncoderReranker
from infuse.retrieval.store import Filters, KnowledgeStore, ScoredChunk


@dataclass
class SearchHit:
    """One search result. The JSON field names are a stable interface (see docs/search.md).

    ``score`` is what the ranking used: the rerank score when reranking, else the fused score in
    hybrid mode, else the dense (cosine) or lexical (BM25) score. The per-list scores and ranks
    are null when the chunk was not in that list.
    """

    rank: int
    chunk_id: str
    doc_id: str
    source_path: str
    text: str
    start: int
    end: int
    page: int | None
    heading_path: list[str]
    lang: str
    metadata: dict[str, Any]
    score: float
    fused_score: float | None = None
    dense_score: float | None = None
    dense_rank: int | None = None
    lexical_score: float | None = None
    lexical_rank: int | None = None
    rerank_score: float | None = None
    # Prompt-injection screening flags of the chunk (rule names, "hidden_html_text"); empty when clean.
    flags: list[str] = field(default_factory=list)
    content_hash: str = field(default="", repr=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("content_hash")
        return data


class HybridSearcher:
    """Runs one search mode over a store snapshot.

    >>> searcher = HybridSearcher(store, embedder, LanguageAwareTokenizer(), SearchSettings())  # doctest: +SKIP
    >>> searcher.search("how do I rotate the API key?", k=5)[0].source_path  # doctest: +SKIP
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

    def search(self, query: str, k: int, mode: SearchMode = SearchMode.HYBRID, filters: Filters | None = None) -> list[SearchHit]:
        return self.search_many([query], k, mode, filters)[0]

    def search_many(
        self, queries: Sequence[str], k: int, mode: SearchMode = SearchMode.HYBRID, filters: Filters | None = None
    ) -> list[list[SearchHit]]:
        """Search several queries; their embeddings are computed in one batch."""
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
            self._search_one(query, lang, vectors.get(i), k, mode, filters)
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
        self, query: str, lang: Language, vector: np.ndarray | None, k: int, mode: SearchMode, filters: Filters | None
    ) -> list[SearchHit]:
        depth = max(k, self.settings.candidates, self.settings.rerank_depth if self.reranker else 0)
        quarantine = self.exclude_flagged
        dense = self.store.dense_search(vector, depth, filters, exclude_flagged=quarantine) if vector is not None else []
        lexical = (
            self.store.lexical_search(self.tokenizer.tokenize(query), depth, filters, exclude_flagged=quarantine)
            if mode in (SearchMode.LEXICAL, SearchMode.HYBRID)
            else []
        )
        by_id: dict[str, ScoredChunk] = {c.chunk_id: c for c in [*lexical, *dense]}
        dense_rank = {c.chunk_id: (r, c.score) for r, c in enumerate(dense, start=1)}
        lexical_rank = {c.chunk_id: (r, c.score) for r, c in enumerate(lexical, start=1)}

        if mode is SearchMode.HYBRID:
            dense_weight, lexical_weight = self._weights(lang)
            fused = reciprocal_rank_fusion(
                [[c.chunk_id for c in dense], [c.chunk_id for c in lexical]],
                [dense_weight, lexical_weight],
                k=self.settings.rrf_k,
            )
            ordered = [(chunk_id, score, score) for chunk_id, score in fused]
        else:
            source = dense if mode is SearchMode.DENSE else lexical
            ordered = [(c.chunk_id, c.score, None) for c in source]

        rerank_scores: dict[str, float] = {}
        if self.reranker is not None and ordered:
            head = ordered[: self.settings.rerank_depth]
            scores = self.reranker.score(query, [by_id[chunk_id].text for chunk_id, _, _ in head])
            rerank_scores = {chunk_id: s for (chunk_id, _, _), s in zip(head, scores)}
            head = sorted(head, key=lambda item: -rerank_scores[item[0]])
            ordered = head + ordered[self.settings.rerank_depth :]

        hits = []
        for rank, (chunk_id, score, fused_score) in enumerate(ordered[:k], start=1):
            chunk = by_id[chunk_id]
            d_rank, d_score = dense_rank.get(chunk_id, (None, None))
            l_rank, l_score = lexical_rank.get(chunk_id, (None, None))
            hits.append(
                SearchHit(
                    rank=rank,
                    chunk_id=chunk_id,
                    doc_id=chunk.doc_id,
                    source_path=chunk.source_path,
                    text=chunk.text,
                    start=chunk.start,
                    end=chunk.end,
                    page=chunk.page,
                    heading_path=list(chunk.heading_path),
                    lang=chunk.lang,
                    metadata=chunk.metadata,
                    score=rerank_scores.get(chunk_id, score),
                    fused_score=fused_score,
                    dense_score=d_score,
                    dense_rank=d_rank,
                    lexical_score=l_score,
                    lexical_rank=l_rank,
                    rerank_score=rerank_scores.get(chunk_id),
                    flags=list(chunk.flags),
                    content_hash=chunk.content_hash,
                )
            )
        return hits
