"""Optional cross-encoder reranking of the fused candidates (sentence-transformers CrossEncoder)."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from infuse.devices import default_device
from infuse.embedders.sentence_transformers import resolve_model_path
from infuse.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder


class CrossEncoderReranker:
    """Scores (query, passage) pairs jointly; slower than embeddings, sharper at the top.

    >>> reranker = CrossEncoderReranker("cross-encoder/ms-marco-MiniLM-L-6-v2")  # doctest: +SKIP
    >>> reranker.score("what is lancedb", ["LanceDB is an embedded vector database."])  # doctest: +SKIP
    """

    def __init__(self, model: str, device: str | None = None) -> None:
        self.model_name = model
        self.device = device

    @cached_property
    def _model(self) -> CrossEncoder:
        from sentence_transformers import CrossEncoder

        try:
            model: CrossEncoder = CrossEncoder(
                resolve_model_path(self.model_name), device=self.device or default_device()
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load reranker {self.model_name!r} (search.reranker): {exc}") from exc
        return model

    def score(self, query: str, passages: list[str]) -> list[float]:
        if not passages:
            return []
        scores = self._model.predict([(query, p) for p in passages], show_progress_bar=False)
        return [float(s) for s in scores]
