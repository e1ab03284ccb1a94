"""Any OpenAI-compatible server as a model: vLLM, llama.cpp server, Ollama, LM Studio, infuse serve.

Uses the official ``openai`` SDK, which brings timeouts and retries with exponential backoff;
connection, authentication and unknown-model failures become one-line :class:`ModelError`s.
``loglikelihood`` needs prompt log-probabilities (``/v1/completions`` with ``echo`` and
``logprobs``); a server that cannot return them gets a message saying so.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Required, TypedDict

from infuse.models.base import (
    ChatMessage,
    FinishReason,
    Generation,
    GenerationConfig,
    GenerationStream,
    Loglikelihood,
    LoglikelihoodRequest,
    ModelError,
    ModelServerError,
    Prompt,
)

if TYPE_CHECKING:
    from openai.types import CompletionUsage
    from openai.types.chat import ChatCompletionMessageParam

# Used only when the server cannot count tokens for us: about 4 characters per token in English,
# about 1 per character in Japanese.
_CHARS_PER_TOKEN = 4


class _Sampling(TypedDict, total=False):
    """The request fields generation and streaming share, for both endpoints."""

    model: Required[str]
    max_tokens: int
    temperature: float
    top_p: float
    stop: list[str]
    seed: int


@dataclass(frozen=True)
class _StreamChunk:
    """One streamed chunk of either endpoint: usage (last chunk only) and (text delta, finish reason) per choice."""

    usage: CompletionUsage | None
    choices: list[tuple[str, str | None]]


class OpenAICompatibleModel:
    """A model behind an OpenAI-compatible HTTP API.

    >>> model = OpenAICompatibleModel("Qwen/Qwen2.5-7B-Instruct", base_url="http://127.0.0.1:8000/v1")  # doctest: +SKIP
    >>> model.generate([{"role": "user", "content": "Hi"}]).text  # doctest: +SKIP
    """

    def __init__(
        self, model: str, base_url: str, api_key: str | None = None, timeout: float = 120.0, max_retries: int = 3
    ) -> None:
        from openai import OpenAI

        self.name = model
        self.context_length: int | None = None  # not reported by the API; prompts are sent as they are
        self.base_url = base_url.rstrip("/")
        self.client = OpenAI(
            base_url=self.base_url, api_key=api_key or "not-needed", timeout=timeout, max_retries=max_retries
        )

    @contextmanager
    def _errors(self) -> Iterator[None]:
        import openai

        try:
            yield
        except openai.AuthenticationError as exc:
            raise ModelServerError(
                f"{self.base_url} rejected the API key (401); set model.api_key or OPENAI_API_KEY"
            ) from exc
        except openai.NotFoundError as exc:
            raise ModelServerError(
                f"model {self.name!r} not found on {self.base_url}{self._available()}: {_message(exc)}"
            ) from exc
        except openai.APITimeoutError as exc:
            raise ModelServerError(
                f"{self.base_url} did not answer in time; raise the timeout or check the server"
            ) from exc
        except openai.APIConnectionError as exc:
            raise ModelServerError(
                f"cannot connect to {self.base_url}: is the server running? ({exc.__cause__ or exc})"
            ) from exc
        except openai.APIStatusError as exc:
            raise ModelServerError(f"{self.base_url} answered {exc.status_code}: {_message(exc)}") from exc

    def _available(self) -> str:
        try:
            names = [m.id for m in self.client.models.list().data]
        except Exception:
            return ""
        return f" (it serves: {', '.join(names)})" if names else ""

    # --- generation ----------------------------------------------------------------------------

    def _sampling(self, config: GenerationConfig) -> _Sampling:
        sampling: _Sampling = {
            "model": self.name,
            "max_tokens": config.max_new_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p,
        }
        if config.stop:
            sampling["stop"] = list(config.stop)
        if config.seed is not None:
            sampling["seed"] = config.seed
        return sampling

    def generate(self, prompt: Prompt, config: GenerationConfig = GenerationConfig()) -> Generation:
        started = time.perf_counter()
        sampling = self._sampling(config)
        finish_reason: str | None
        with self._errors():
            if isinstance(prompt, str):
                completion = self.client.completions.create(prompt=prompt, stream=False, **sampling)
                text, finish_reason, usage = (
                    completion.choices[0].text,
                    completion.choices[0].finish_reason,
                    completion.usage,
                )
            else:
                chat = self.client.chat.completions.create(messages=_chat_messages(prompt), stream=False, **sampling)
                message = chat.choices[0].message
                text, finish_reason, usage = message.content or "", chat.choices[0].finish_reason, chat.usage
        return Generation(
            text=text,
            finish_reason=FinishReason.LENGTH if finish_reason == "length" else FinishReason.STOP,
            prompt_tokens=usage.prompt_tokens if usage else self._estimate(prompt),
            completion_tokens=usage.completion_tokens if usage else self.count_tokens(text),
            seconds=time.perf_counter() - started,
        )

    def stream(self, prompt: Prompt, config: GenerationConfig = GenerationConfig()) -> GenerationStream:
        started = time.perf_counter()
        sampling = self._sampling(config)
        chunks: Iterator[_StreamChunk]
        with self._errors():
            if isinstance(prompt, str):
                completions = self.client.completions.create(
                    prompt=prompt, stream=True, stream_options={"include_usage": True}, **sampling
                )
                close_response: Callable[[], None] = completions.close
                chunks = (
                    _StreamChunk(c.usage, [(choice.text, choice.finish_reason) for choice in c.choices])
                    for c in completions
                )
            else:
                chat = self.client.chat.completions.create(
                    messages=_chat_messages(prompt), stream=True, stream_options={"include_usage": True}, **sampling
                )
                close_response = chat.close
                chunks = (
                    _StreamChunk(c.usage, [(choice.delta.content or "", choice.finish_reason) for choice in c.choices])
                    for c in chat
                )
        finish = FinishReason.STOP
        usage: CompletionUsage | None = None
        cancelled = threading.Event()

        def deltas() -> Iterator[str]:
            nonlocal finish, usage
            try:
                with self._errors():
                    for chunk in chunks:
                        if cancelled.is_set():
                            return
                        if chunk.usage is not None:
                            usage = chunk.usage
                        for delta, finish_reason in chunk.choices:
                            if finish_reason == "length":
                                finish = FinishReason.LENGTH
                            if delta:
                                yield delta
            finally:
                # Closing the HTTP response tells the model server that nobody reads on: it stops generating.
                close_response()

        def result(text: str) -> Generation:
            return Generation(
                text,
                finish,
                usage.prompt_tokens if usage else self._estimate(prompt),
                usage.completion_tokens if usage else self.count_tokens(text),
                time.perf_counter() - started,
            )

        return GenerationStream(deltas(), result, cancelled)

    # --- scoring -------------------------------------------------------------------------------

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        return [self._score(r) for r in requests]

    def _score(self, request: LoglikelihoodRequest) -> Loglikelihood:
        context, continuation = request.context, request.continuation
        spaces = len(context) - len(context.rstrip())
        if spaces:  # as lm-evaluation-harness: trailing spaces belong to the continuation
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        with self._errors():
            response = self.client.completions.create(
                model=self.name, prompt=context + continuation, max_tokens=1, temperature=0.0, echo=True, logprobs=1
            )
        logprobs = response.choices[0].logprobs
        if logprobs is None or not logprobs.token_logprobs or logprobs.text_offset is None or logprobs.tokens is None:
            raise ModelError(
                f"{self.base_url} did not return prompt log-probabilities; loglikelihood needs a server that supports "
                "/v1/completions with echo=true and logprobs (e.g. vLLM or `infuse serve`)"
            )
        end = len(context) + len(continuation)
        total, greedy, count = 0.0, True, 0
        tops: Sequence[dict[str, float] | None] = logprobs.top_logprobs or [None] * len(logprobs.tokens)
        for token, logprob, offset, top in zip(logprobs.tokens, logprobs.token_logprobs, logprobs.text_offset, tops):
            if offset < len(context) or offset >= end:
                continue
            if logprob is None:
                raise ModelError(f"{self.base_url} returned no log-probability for the continuation token {token!r}")
            total += logprob
            count += 1
            if top:
                greedy = greedy and max(top.values()) <= logprob + 1e-6
        return Loglikelihood(total, greedy, count)

    def count_tokens(self, text: str) -> int:
        """An estimate: OpenAI-compatible servers have no standard tokenize endpoint."""
        japanese = sum(1 for ch in text if ord(ch) > 0x3000)
        return japanese + math.ceil((len(text) - japanese) / _CHARS_PER_TOKEN)

    def _estimate(self, prompt: Prompt) -> int:
        text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
        return self.count_tokens(text)


def _chat_messages(prompt: Sequence[ChatMessage]) -> list[ChatCompletionMessageParam]:
    """The SDK's message types, one per role, from ours."""
    messages: list[ChatCompletionMessageParam] = []
    for message in prompt:
        if message["role"] == "system":
            messages.append({"role": "system", "content": message["content"]})
        elif message["role"] == "user":
            messages.append({"role": "user", "content": message["content"]})
        else:
            messages.append({"role": "assistant", "content": message["content"]})
    return messages


def _message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(exc)
