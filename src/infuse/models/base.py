"""One interface for every model backend: generation (streaming or not), log-likelihoods, token counts.

Backends: :mod:`infuse.models.transformers_backend` (a local Hugging Face model, optionally with
PEFT adapters) and :mod:`infuse.models.openai_backend` (any OpenAI-compatible server).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol, TypedDict

from infuse.errors import InfuseError, UpstreamError


class ChatMessage(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


Prompt = str | Sequence[ChatMessage]


class FinishReason(StrEnum):
    STOP = "stop"  # end of sequence or a stop string
    LENGTH = "length"  # max_new_tokens reached
    CANCELLED = "cancelled"  # stopped by :meth:`GenerationStream.cancel` (a client hung up, the server stops)


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings. ``temperature`` 0 means greedy decoding."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class Generation:
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    seconds: float


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """Score ``continuation`` given ``context`` (as lm-evaluation-harness does)."""

    context: str
    continuation: str


@dataclass(frozen=True)
class Loglikelihood:
    logprob: float  # sum of the continuation tokens' log-probabilities
    is_greedy: bool  # every continuation token was the model's argmax
    n_tokens: int


class GenerationStream:
    """Text deltas as they are produced; ``result`` holds the whole generation once iterated.

    Generation happens as the stream is iterated. :meth:`cancel` (safe from any thread) stops it
    within one generation step: a backend checks ``cancelled`` before each step, and the stream
    itself stops after the current delta; the result then has ``finish_reason`` CANCELLED.
    :meth:`close` cancels and releases what the backend holds (e.g. an HTTP response).

    >>> stream = model.stream("Hello", GenerationConfig(max_new_tokens=8))  # doctest: +SKIP
    >>> for delta in stream: print(delta, end="")  # doctest: +SKIP
    >>> stream.result.completion_tokens  # doctest: +SKIP
    """

    def __init__(
        self,
        deltas: Iterator[str],
        finish: Callable[[str], Generation],
        cancelled: threading.Event | None = None,
    ) -> None:
        self._deltas = deltas
        self._finish = finish
        self._parts: list[str] = []
        self.cancelled = cancelled or threading.Event()
        self.result: Generation | None = None

    def __iter__(self) -> Iterator[str]:
        for delta in self._deltas:
            self._parts.append(delta)
            yield delta
            if self.cancelled.is_set():
                break
        if self.cancelled.is_set():
            self._close_deltas()
        self.result = self._finish("".join(self._parts))
        if self.cancelled.is_set():
            self.result.finish_reason = FinishReason.CANCELLED

    def cancel(self) -> None:
        """Stop generating at the next step; callable from another thread."""
        self.cancelled.set()

    def close(self) -> None:
        """Cancel and release the backend's resources now (call from the thread that iterates, or after it)."""
        self.cancel()
        self._close_deltas()

    def _close_deltas(self) -> None:
        close = getattr(self._deltas, "close", None)
        if close is not None:
            close()

    def collect(self) -> Generation:
        for _ in self:
            pass
        assert self.result is not None
        return self.result


class LanguageModel(Protocol):
    """What RAG, serving and evaluation need from a model."""

    name: str
    context_length: int | None  # tokens the model reads at most (None: unknown)

    def generate(self, prompt: Prompt, config: GenerationConfig = GenerationConfig()) -> Generation: ...

    def stream(self, prompt: Prompt, config: GenerationConfig = GenerationConfig()) -> GenerationStream: ...

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]: ...

    def count_tokens(self, text: str) -> int: ...


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest stop string; whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def template_messages(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    """The messages as plain dicts, the type a tokenizer's ``apply_chat_template`` takes."""
    return [{"role": message["role"], "content": message["content"]} for message in messages]


# A model without a chat template (a base model) continues the plain format past its own turn,
# writing the next turn itself: a role line, or the "Question:" / "質問:" label of the RAG prompt
# that it imitates (seen with Gemma 3 270M base). Generation from a plain chat prompt stops there.
PLAIN_TURN_STOPS = ("\nUser:", "\nSystem:", "\nAssistant:", "\nQuestion:", "\n質問:")


def plain_chat_prompt(messages: Sequence[ChatMessage]) -> str:
    """The prompt format for models without a chat template (stop strings: :data:`PLAIN_TURN_STOPS`)."""
    parts = []
    for message in messages:
        role = {"system": "System", "user": "User", "assistant": "Assistant"}[message["role"]]
        parts.append(f"{role}: {message['content']}")
    return "\n\n".join(parts) + "\n\nAssistant:"


class ModelError(InfuseError):
    """A model could not be loaded or called; the message says what to do."""


class ModelServerError(ModelError, UpstreamError):
    """The model server (openai backend) refused, failed or could not be reached: a 502 from infuse's server."""
