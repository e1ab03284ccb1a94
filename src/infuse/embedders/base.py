"""What ingest and search need from an embedder, whatever library computes the vectors.

An :class:`Embedder` turns passages and queries into L2-normalised float32 vectors (so cosine is
a dot product), counts tokens for chunking, and names itself with an :class:`EmbedderIdentity`
that the knowledge base records: searching a knowledge base with a different embedder is refused
(the identity's probe vector tells weights apart whatever the model was called).

A new backend is one module with a class that satisfies the protocol, plus one line in
:mod:`infuse.embedders.factory`; ``tests/test_embedders.py`` runs the same cases on each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import numpy as np

from infuse.config import EmbedderSettings
from infuse.documents.chunking import TokenCounter

ProgressCallback = Callable[[int], None]
PROBE_TEXT = "infuse embedder fingerprint: the quick brown fox jumps over the lazy dog."


class EmbedderPrecision(StrEnum):
    """The numbers the vectors were computed with. int8 (ONNX ``quantize = true``) vectors are
    close to fp32's (cosine ~0.99, so the probe alone may not tell them apart) but not equal:
    a knowledge base built with one is not searched with the other."""

    FP32 = "fp32"  # PyTorch and fp32 ONNX give the same vectors (cosine > 0.9999)
    INT8 = "int8"


@dataclass(frozen=True)
class EmbedderIdentity:
    """What a knowledge base records about the embedder that built it.

    ``probe`` is the embedding of a fixed sentence: two embedders are the same when their probes
    agree, whatever the model was called (a Hub id here, a local copy there). ``precision`` is
    fp32 in manifests written before it existed: they were all built with fp32 vectors.
    """

    model: str
    dimension: int
    query_prefix: str
    passage_prefix: str
    probe: list[float] = field(repr=False)
    precision: EmbedderPrecision = EmbedderPrecision.FP32

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "precision": self.precision.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbedderIdentity:
        return cls(**{**data, "precision": EmbedderPrecision(data.get("precision", EmbedderPrecision.FP32))})

    def mismatch(self, other: EmbedderIdentity) -> str | None:
        """Why ``other`` cannot search a knowledge base built by ``self``; None when it can."""
        if self.dimension != other.dimension:
            return f"dimension {other.dimension} != {self.dimension}"
        if (self.query_prefix, self.passage_prefix) != (other.query_prefix, other.passage_prefix):
            return "query/passage prefixes differ"
        if self.precision is not other.precision:
            quantize = "true" if self.precision is EmbedderPrecision.INT8 else "false"
            return (
                f"{other.precision.value} vectors configured, the knowledge base holds {self.precision.value} "
                f"ones: embedder.quantize = {quantize} built it"
            )
        similarity = float(np.dot(np.asarray(self.probe), np.asarray(other.probe)))
        if similarity < 0.99:
            return f"different weights (probe similarity {similarity:.3f})"
        return None


class Embedder(Protocol):
    """Vectors for passages and queries; implementations in this package, made by the factory."""

    settings: EmbedderSettings

    @property
    def dimension(self) -> int: ...

    @property
    def token_counter(self) -> TokenCounter:
        """The tokenizer chunk sizes are measured in (loading it must not load the weights)."""
        ...

    def identity(self) -> EmbedderIdentity: ...

    def embed_passages(self, texts: list[str], on_batch: ProgressCallback | None = None) -> np.ndarray:
        """One normalised row per text, in order; ``on_batch(n)`` after each batch of ``n``."""
        ...

    def embed_queries(self, texts: list[str]) -> np.ndarray: ...


class PrefixedEmbedder:
    """What every backend shares: passages and queries get their configured prefixes, the identity
    is computed once from the probe text. A backend sets ``settings`` and ``dimension`` and
    implements ``_encode(texts, prefix, on_batch)``."""

    settings: EmbedderSettings
    _identity: EmbedderIdentity | None = None

    @property
    def dimension(self) -> int:
        raise NotImplementedError

    @property
    def precision(self) -> EmbedderPrecision:
        return EmbedderPrecision.FP32

    def _encode(self, texts: list[str], prefix: str, on_batch: ProgressCallback | None = None) -> np.ndarray:
        raise NotImplementedError

    def identity(self) -> EmbedderIdentity:
        if self._identity is None:
            self._identity = probe_identity(
                self.settings, self.dimension, lambda texts: self._encode(texts, ""), self.precision
            )
        return self._identity

    def embed_passages(self, texts: list[str], on_batch: ProgressCallback | None = None) -> np.ndarray:
        return self._encode(texts, self.settings.passage_prefix, on_batch)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, self.settings.query_prefix)


def probe_identity(
    settings: EmbedderSettings,
    dimension: int,
    encode: Callable[[list[str]], np.ndarray],
    precision: EmbedderPrecision = EmbedderPrecision.FP32,
) -> EmbedderIdentity:
    """The identity of an embedder: its settings and its (unprefixed) vector for the probe text."""
    probe = encode([PROBE_TEXT])[0]
    return EmbedderIdentity(
        model=settings.model,
        dimension=dimension,
        query_prefix=settings.query_prefix,
        passage_prefix=settings.passage_prefix,
        probe=[round(float(x), 6) for x in probe],
        precision=precision,
    )


def encode_in_batches(
    texts: Sequence[str],
    batch_size: int,
    dimension: int,
    encode: Callable[[list[str]], np.ndarray],
    on_batch: ProgressCallback | None = None,
) -> np.ndarray:
    """``encode`` over batches of similar length (less padding), results in the input order."""
    out = np.zeros((len(texts), dimension), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    for start in range(0, len(order), batch_size):
        ids = order[start : start + batch_size]
        out[ids] = np.asarray(encode([texts[i] for i in ids]), dtype=np.float32)
        if on_batch is not None:
            on_batch(len(ids))
    return out
