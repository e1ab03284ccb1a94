"""Where models run: CUDA, then Apple MPS, then CPU (one rule for embedders, rerankers and LLMs)."""

from __future__ import annotations


def default_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"
