"""Embedders behind one protocol (:class:`~infuse.embedders.base.Embedder`), made by the factory."""

from infuse.embedders.base import Embedder, EmbedderIdentity, ProgressCallback
from infuse.embedders.factory import make_embedder

__all__ = ["Embedder", "EmbedderIdentity", "ProgressCallback", "make_embedder"]
