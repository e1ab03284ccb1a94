"""Makes the configured embedder (``[embedder] backend``): one line per backend.

>>> from infuse.config import EmbedderSettings, EmbedderBackend
>>> make_embedder(EmbedderSettings(backend=EmbedderBackend.HASHING, model="hashing-32")).dimension
32
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from infuse.config import EmbedderBackend, EmbedderRuntime, EmbedderSettings
from infuse.embedders.base import Embedder


def _sentence_transformers(settings: EmbedderSettings) -> Embedder:
    """ONNX Runtime when asked, or by default when it is installed, the device is the CPU and the
    model is a local folder (the bundled MiniLM is); PyTorch otherwise."""
    from infuse.embedders import onnx_runtime
    from infuse.embedders.sentence_transformers import SentenceTransformerEmbedder, resolve_model_path

    path = resolve_model_path(settings.model)
    if settings.runtime is EmbedderRuntime.ONNX:
        return onnx_runtime.OnnxSentenceTransformerEmbedder(settings, path)
    if settings.runtime is EmbedderRuntime.AUTO and onnx_runtime.available() and Path(path).is_dir():
        from infuse.devices import default_device

        if (settings.device or default_device()) == "cpu":
            return onnx_runtime.OnnxSentenceTransformerEmbedder(settings, path)
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
