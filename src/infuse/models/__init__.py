"""Model backends behind one interface; :func:`load_model` builds one from settings."""

from __future__ import annotations

import os

from infuse.config import ModelBackendKind, ModelSettings
from infuse.models.base import (
    ChatMessage,
    FinishReason,
    Generation,
    GenerationConfig,
    GenerationStream,
    LanguageModel,
    Loglikelihood,
    LoglikelihoodRequest,
    ModelError,
    ModelServerError,
)

__all__ = [
    "ChatMessage",
    "FinishReason",
    "Generation",
    "GenerationConfig",
    "GenerationStream",
    "LanguageModel",
    "Loglikelihood",
    "LoglikelihoodRequest",
    "ModelError",
    "ModelServerError",
    "load_model",
]


def load_model(settings: ModelSettings) -> LanguageModel:
    """The configured model. Loading a local model takes seconds to minutes: load once, reuse.

    >>> model = load_model(ModelSettings(name="Qwen/Qwen2.5-0.5B-Instruct"))  # doctest: +SKIP
    """
    if not settings.name:
        raise ModelError("no model configured: pass --model ID_OR_FOLDER or set [model] name in infuse.toml")
    if settings.backend is ModelBackendKind.OPENAI:
        from infuse.models.openai_backend import OpenAICompatibleModel

        if not settings.base_url:
            raise ModelError("the openai backend needs a server: set [model] base_url, e.g. http://127.0.0.1:8000/v1")
        if settings.adapters:
            raise ModelError("adapters are applied by the server for the openai backend; remove [model] adapters")
        return OpenAICompatibleModel(
            settings.name,
            settings.base_url,
            api_key=settings.api_key or os.environ.get("OPENAI_API_KEY"),
            timeout=settings.timeout,
            max_retries=settings.max_retries,
        )
    from infuse.models.transformers_backend import TransformersModel

    return TransformersModel.load(settings.name, settings.adapters, device=settings.device, dtype=settings.dtype)
