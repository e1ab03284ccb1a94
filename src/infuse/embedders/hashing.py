"""A model-free embedder: words and character trigrams hashed into a fixed-size vector.

Why: unit tests of ingest, search and RAG should not need a neural model (loading MiniLM costs
seconds), and a smoke run on a machine without any model should still work end to end. Retrieval
quality is that of keyword overlap; never choose it for real use.

Tokens counted for chunking are words and single CJK characters (:class:`WordCounter`), so chunk
sizes are comparable to a subword tokenizer's within a small factor.

>>> from infuse.config import EmbedderSettings, EmbedderBackend
>>> e = HashingEmbedder(EmbedderSettings(backend=EmbedderBackend.HASHING, model="hashing-64"))
>>> v = e.embed_queries(["backups are kept for 30 days"])
>>> v.shape, round(float((v[0] ** 2).sum()), 3)
((1, 64), 1.0)
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

from infuse.config import EmbedderSettings
from infuse.embedders.base import PrefixedEmbedder, ProgressCallback, encode_in_batches
from infuse.errors import ConfigError

_WORD = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]|\w+", re.UNICODE)
DEFAULT_DIMENSION = 256


class WordCounter:
    """A :class:`~infuse.documents.chunking.TokenCounter` over words and single CJK characters."""

    def count(self, texts: list[str]) -> list[int]:
        return [len(_WORD.findall(text)) for text in texts]

    def split(self, text: str, max_tokens: int) -> list[tuple[int, int]]:
        spans = [m.span() for m in _WORD.finditer(text)]
        windows = [spans[i : i + max_tokens] for i in range(0, len(spans), max_tokens)]
        return [(w[0][0], w[-1][1]) for w in windows] or [(0, len(text))]


class HashingEmbedder(PrefixedEmbedder):
    """``embedder.model`` names the size: ``hashing`` (256 dimensions) or ``hashing-N``."""

    def __init__(self, settings: EmbedderSettings) -> None:
        self.settings = settings
        match = re.fullmatch(r"hashing(?:-(\d+))?", settings.model)
        if match is None:
            raise ConfigError(
                f"embedder.model {settings.model!r} is not a hashing embedder name; with embedder.backend = "
                '"hashing" use "hashing" or "hashing-N" (N dimensions, e.g. "hashing-128")'
            )
        self._dimension = int(match.group(1) or DEFAULT_DIMENSION)
        self.token_counter = WordCounter()

    @property
    def dimension(self) -> int:
        return self._dimension

    def _features(self, text: str) -> list[str]:
        words = [w.lower() for w in _WORD.findall(text)]
        trigrams = [w[i : i + 3] for w in words if len(w) > 3 for i in range(len(w) - 2)]
        return words + trigrams

    def feature_counts(self, text: str) -> np.ndarray:
        """The signed feature counts behind a passage's vector, before normalisation. Features are
        words and their trigrams, so the counts of texts joined by spaces are the sum of theirs
        (``benchmarks/scale.py`` builds a million chunk vectors from its sentences' counts)."""
        vector = np.zeros(self.dimension, dtype=np.float32)
        for feature in self._features(text):
            digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % self.dimension
            vector[bucket] += 1.0 if digest[4] & 1 else -1.0
        return vector

    def _vector(self, text: str) -> np.ndarray:
        vector = self.feature_counts(text)
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector

    def _encode(self, texts: list[str], prefix: str, on_batch: ProgressCallback | None = None) -> np.ndarray:
        def encode(batch: list[str]) -> np.ndarray:
            return np.stack([self._vector(prefix + t) for t in batch]) if batch else np.zeros((0, self.dimension))

        return encode_in_batches(texts, self.settings.batch_size, self.dimension, encode, on_batch)
