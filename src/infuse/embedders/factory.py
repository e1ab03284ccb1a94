"""Makes the configured embedder (``[embedder] backend``): one line per backend.

>>> from infuse.config import EmbedderSettings, EmbedderBackend
>>> make_embedder(EmbedderSettings(backend=EmbedderBackend.HASHING, model="hashing-32")).dimension
32
"""

from __future__ import annotations

from collections.abc import Callable

from infuse.config import EmbedderBackend, EmbedderSettings
from infuse.embedders.base import Embedder


def _sentence_transformers(settings: EmbedderSettings) -> Embedder:
    from infuse.embedders.sentence_transformers import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(settings)


def _hashing(settings: EmbedderSettings) -> Embedder:
    from infuse.embedders.hashing import HashingEmbedder

    return HashingEmbedder(settings)


def _usem3(settings: EmbedderSettings) -> Embedder:
    from infuse.embedders.universal_sentence_encoder import UniversalSentenceEncoderEmbedder

    return UniversalSentenceEncoderEmbedder(settings)


BACKENDS: dict[EmbedderBackend, Callable[[EmbedderSettings], Embedder]] = {
    EmbedderBackend.SENTENCE_TRANSFORMERS: _sentence_transformers,
    EmbedderBackend.HASHING: _hashing,
    EmbedderBackend.USEM3: _usem3,
}


def make_embedder(settings: EmbedderSettings) -> Embedder:
    """The embedder ``settings`` describe; models load lazily, on first use."""
    return BACKENDS[settings.backend](settings)
