"""The OpenAI-compatible routes: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``.

Two model ids are served: ``infuse-rag`` answers from the knowledge base (citations in an extra
``citations`` field that standard clients ignore), and the model's own name answers without
retrieval. ``/v1/completions`` scores and continues raw text; with ``echo`` and ``logprobs`` it
returns prompt log-probabilities, which infuse's own ``openai`` backend uses for multiple-choice
scoring.

Every route takes the caller from the auth dependency: ``infuse-rag`` answers from the caller's
own pipeline (:meth:`~infuse.server.context.ServerContext.pipeline_for`), so passages, citations
and streamed citations come only from what the caller may read; a model fine-tuned on documents
the caller may not read is refused (:meth:`~infuse.server.context.ServerContext.check_weights`).

The model answers one request at a time; the others wait in a bounded FIFO line
(:mod:`infuse.server.queue`; a full line is a 503 with ``Retry-After``). Generation runs one step
at a time in a worker thread, so it stops within a step when the client hangs up (a stream's
client, or a non-streaming client that leaves while waiting) or the server stops: the model is
then free for the next request instead of finishing an answer nobody reads.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import anyio
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from infuse.access import Caller
from infuse.errors import InfuseError
from infuse.models.base import ChatMessage, GenerationConfig, GenerationStream, LanguageModel
from infuse.rag import Citation, RagStream
from infuse.server.auth import note
from infuse.server.common import INTERNAL_ERROR, RAG_MODEL_ID, SHUTTING_DOWN, APIError, error_body, error_kind, sse
from infuse.server.context import ServerContext
from infuse.server.queue import POLL_SECONDS, ClientGone, ServerStopping, Turn
from infuse.server.schemas import ChatCompletionRequest, CompletionRequest

logger = logging.getLogger(__name__)
T = TypeVar("T")


class _Generation:
    """A started generation (a RAG answer or a plain one), stepped from worker threads."""

    def __init__(self, stream: RagStream | GenerationStream) -> None:
        self.stream = stream
        self._deltas: Iterator[str] = iter(stream)

    def step(self) -> str | None:
        """The next delta, or None at the end (runs one or more model steps: call it in a worker thread)."""
        return next(self._deltas, None)

    def close(self) -> None:
        """Stop generating and release the model's resources (never while a step runs)."""
        self.stream.close()
        close = getattr(self._deltas, "close", None)
        if close is not None:
            close()


class _TurnStreamingResponse(StreamingResponse):
    """A streamed answer that, however it ends (done, client gone, server stopping), closes its
    generation and only then passes the model to the next request in line."""

    def __init__(self, content: AsyncIterator[str], generation: _Generation, turn: Turn) -> None:
        super().__init__(content, media_type="text/event-stream")
        self._content = content
        self._generation = generation
        self._turn = turn

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                aclose = getattr(self._content, "aclose", None)
                if aclose is not None:
                    await aclose()
            self._generation.close()
            self._turn.release()


def openai_router(ctx: ServerContext) -> APIRouter:
    """The OpenAI-compatible routes over ``ctx`` (every one behind the auth dependency)."""
    gate = ctx.gate
    router = APIRouter(dependencies=[Depends(gate)], tags=["openai"])
    model = ctx.model
    queue = ctx.queue
    default_max_tokens = ctx.pipeline.generation.max_new_tokens

    def check_model(name: str) -> bool:
        """Whether the request asks for the RAG pipeline; unknown ids are a 404 like OpenAI's."""
        if name == RAG_MODEL_ID:
            return True
        if name == model.name:
            return False
        raise APIError(
            404, f"model {name!r} not found; available: {RAG_MODEL_ID}, {model.name}", "model_not_found", "model"
        )

    def generation_config(body: ChatCompletionRequest | CompletionRequest, default_max: int) -> GenerationConfig:
        return GenerationConfig(
            max_new_tokens=body.max_tokens if body.max_tokens is not None else default_max,
            temperature=body.temperature,
            top_p=body.top_p,
            stop=body.stop_list(),
            seed=body.seed,
        )

    async def start(request: Request, begin: Callable[[], T]) -> tuple[Turn, T]:
        """Wait for the model in line, then run ``begin`` (retrieval, prompt) in a worker thread."""
        turn = await queue.acquire(request.is_disconnected)
        try:
            return turn, await anyio.to_thread.run_sync(begin)
        except BaseException:
            turn.release()
            raise

    async def run_watched(request: Request, work: Callable[[], T], cancel: Callable[[], None]) -> T:
        """Run ``work`` in a worker thread; ``cancel`` it when the client hangs up or the server stops."""
        stopped_by: type[Exception] | None = None

        async def watch() -> None:
            nonlocal stopped_by
            while True:
                await anyio.sleep(POLL_SECONDS)
                if queue.stopping.is_set():
                    stopped_by = ServerStopping
                elif await request.is_disconnected():
                    stopped_by = ClientGone
                if stopped_by is not None:
                    cancel()
                    return

        failure: Exception | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(watch)
            try:
                result = await anyio.to_thread.run_sync(work)
            except Exception as exc:  # raised below, as itself (a task group would wrap it in a group)
                failure = exc
            group.cancel_scope.cancel()
        if failure is not None:
            raise failure
        if stopped_by is not None:
            raise stopped_by("the server is shutting down" if stopped_by is ServerStopping else "")
        return result

    async def stream_events(
        generation: _Generation, chunk: Callable[[str], dict[str, Any]], first: list[str], last: Callable[[], list[str]]
    ) -> AsyncIterator[str]:
        """SSE lines: ``first``, one chunk per delta (each model step in a worker thread), then ``last()``.
        A stopping server ends the stream with an error event; a client that hangs up cancels it."""
        for line in first:
            yield line
        while True:
            if queue.stopping.is_set():
                generation.stream.cancel()
                yield sse(SHUTTING_DOWN)
                yield sse("[DONE]")
                return
            try:
                delta = await anyio.to_thread.run_sync(generation.step)
            except InfuseError as exc:  # e.g. the model server behind the openai backend failed mid-answer
                yield sse(error_body(str(exc), "infuse_error", kind=error_kind(exc)))
                yield sse("[DONE]")
                return
            except Exception as exc:  # a bug: the traceback goes to the server's log, never to the client
                logger.error("unexpected error while streaming", exc_info=exc)
                yield sse(INTERNAL_ERROR)
                yield sse("[DONE]")
                return
            if delta is None:
                break
            yield sse(chunk(delta))
        for line in last():
            yield line

    def usage_dict(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    @router.get("/v1/models")
    def list_models() -> dict[str, Any]:
        created = int(time.time())
        return {
            "object": "list",
            "data": [
                {"id": RAG_MODEL_ID, "object": "model", "created": created, "owned_by": "infuse"},
                {"id": model.name, "object": "model", "created": created, "owned_by": "infuse"},
            ],
        }

    @router.post("/v1/chat/completions", response_model=None)
    async def chat_completions(
        body: ChatCompletionRequest, request: Request, caller: Caller = Depends(gate)
    ) -> dict[str, Any] | Response:
        use_rag = check_model(body.model)
        note(request, model=body.model, question=body.messages[-1].content)
        ctx.check_weights(caller)
        pipeline = ctx.pipeline_for(caller) if use_rag else ctx.pipeline
        config = generation_config(body, default_max_tokens)
        messages: list[ChatMessage] = [{"role": m.role, "content": m.content} for m in body.messages]
        # The client's system messages are kept as guidance below infuse's own rules (rag/prompts.py).
        guidance = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        history = [m for m in messages[:-1] if m["role"] != "system"]

        def begin() -> _Generation:
            if use_rag:
                rag = pipeline.stream(messages[-1]["content"], history=history, generation=config, guidance=guidance)
                # Audited as soon as they are retrieved: every passage put in the prompt (cited or not),
                # so a stream the client abandons is on record too.
                note(request, passages=[p.chunk.chunk_id for p in rag.answer.passages])
                return _Generation(rag)
            return _Generation(model.stream(messages, config))

        turn, generation = await start(request, begin)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        stream = generation.stream

        def sources() -> list[dict[str, Any]]:
            """Every passage the prompt held, numbered as the model saw them (cited or not)."""
            if not isinstance(stream, RagStream):
                return []
            return [Citation(n, p.chunk).to_dict() for n, p in enumerate(stream.answer.passages, start=1)]

        def outcome() -> tuple[str, tuple[int, int], list[dict[str, Any]]]:
            """Finish reason, usage and citations, once the generation has ended."""
            if isinstance(stream, RagStream):
                answer = stream.answer
                citations = [c.to_dict() for c in answer.citations]
                note(request, chunks=[c.chunk.chunk_id for c in answer.citations])
                return answer.finish_reason.value, (answer.prompt_tokens, answer.completion_tokens), citations
            assert stream.result is not None
            result = stream.result
            return result.finish_reason.value, (result.prompt_tokens, result.completion_tokens), []

        def keep(text: str, citations: list[dict[str, Any]], passages: list[dict[str, Any]]) -> None:
            """Record the finished turn in the caller's conversation (``conversation``, the web UI)."""
            if body.conversation is None or ctx.conversations is None:
                return
            answer: dict[str, Any] = {"role": "assistant", "content": text, "model": body.model}
            answer |= {"citations": citations, "sources": passages} if use_rag else {}
            ctx.conversations.append(caller.name, body.conversation, [dict(messages[-1]), answer])

        if not body.stream:
            try:
                text = await run_watched(request, lambda: "".join(iter(generation.step, None)), stream.cancel)
            finally:
                generation.close()
                turn.release()
            if isinstance(stream, RagStream):
                text = stream.answer.text
            finish, usage, citations = outcome()
            passages = sources()
            await anyio.to_thread.run_sync(keep, text, citations, passages)
            return {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": body.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
                "usage": usage_dict(*usage),
                "citations": citations,
                **({"sources": passages} if use_rag else {}),
            }

        base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": body.model}

        streamed: list[str] = []

        def delta_chunk(delta: str) -> dict[str, Any]:
            streamed.append(delta)
            return {**base, "choices": [{"index": 0, "delta": {"content": delta}, "finish_reason": None}]}

        def last() -> list[str]:
            finish, usage, citations = outcome()
            passages = sources()
            text = stream.answer.text if isinstance(stream, RagStream) else "".join(streamed)
            keep(text, citations, passages)
            end = {"index": 0, "delta": {}, "finish_reason": finish}
            lines = [
                sse({**base, "choices": [end], "citations": citations, **({"sources": passages} if use_rag else {})})
            ]
            if body.include_usage():
                lines.append(sse({**base, "choices": [], "usage": usage_dict(*usage)}))
            return [*lines, sse("[DONE]")]

        first = [
            sse(
                {
                    **base,
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
                }
            )
        ]
        return _TurnStreamingResponse(stream_events(generation, delta_chunk, first, last), generation, turn)

    @router.post("/v1/completions", response_model=None)
    async def completions(
        body: CompletionRequest, request: Request, caller: Caller = Depends(gate)
    ) -> dict[str, Any] | Response:
        note(request, model=body.model, question=body.prompt_text())
        if check_model(body.model):
            raise APIError(
                400,
                f"{RAG_MODEL_ID} answers chat requests; use /v1/chat/completions or model {model.name!r}",
                "wrong_endpoint",
                "model",
            )
        if body.stream and (body.logprobs is not None or body.echo):
            raise APIError(400, "logprobs and echo are not supported with stream=true", "unsupported", "stream")
        ctx.check_weights(caller)
        prompt = body.prompt_text()
        config = generation_config(body, 16)
        completion_id = f"cmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        base = {"id": completion_id, "object": "text_completion", "created": created, "model": body.model}

        if body.stream:
            turn, generation = await start(request, lambda: _Generation(model.stream(prompt, config)))
            plain = generation.stream
            assert isinstance(plain, GenerationStream)

            def text_chunk(delta: str) -> dict[str, Any]:
                return {**base, "choices": [{"index": 0, "text": delta, "logprobs": None, "finish_reason": None}]}

            def last() -> list[str]:
                assert plain.result is not None
                finish = plain.result.finish_reason.value
                end = {**base, "choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": finish}]}
                return [sse(end), sse("[DONE]")]

            return _TurnStreamingResponse(stream_events(generation, text_chunk, [], last), generation, turn)

        def begin() -> _Generation | None:
            return _Generation(model.stream(prompt, config)) if config.max_new_tokens > 0 else None

        turn, pending = await start(request, begin)

        def work() -> tuple[str, str, int, int, dict[str, Any] | None]:
            if pending is not None:
                result = pending.stream
                assert isinstance(result, GenerationStream)
                done = result.collect()
                text, finish, completion_tokens, prompt_tokens = (
                    done.text,
                    done.finish_reason.value,
                    done.completion_tokens,
                    done.prompt_tokens,
                )
            else:
                text, finish, completion_tokens = "", "length", 0
                prompt_tokens = model.count_tokens(prompt)
            logprobs = _logprobs(model, prompt, text, body) if body.logprobs is not None else None
            return text, finish, completion_tokens, prompt_tokens, logprobs

        try:
            cancel = pending.stream.cancel if pending is not None else (lambda: None)
            text, finish, completion_tokens, prompt_tokens, logprobs = await run_watched(request, work, cancel)
        finally:
            if pending is not None:
                pending.close()
            turn.release()
        return {
            **base,
            "choices": [
                {
                    "index": 0,
                    "text": (prompt + text) if body.echo else text,
                    "logprobs": logprobs,
                    "finish_reason": finish,
                }
            ],
            "usage": usage_dict(prompt_tokens, completion_tokens),
        }

    return router


def _logprobs(model: LanguageModel, prompt: str, completion: str, body: CompletionRequest) -> dict[str, Any]:
    """OpenAI's legacy logprobs object; offsets index the echoed text (prompt + completion)."""
    scorer = getattr(model, "token_logprobs", None)
    if scorer is None:
        raise APIError(400, f"model {model.name!r} cannot return log-probabilities", "unsupported", "logprobs")
    tokens = scorer(prompt + completion, top=max(1, body.logprobs or 1))
    if not body.echo:
        tokens = [t for t in tokens if t.offset >= len(prompt)]
    return {
        "tokens": [t.token for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [t.top or None for t in tokens],
        "text_offset": [t.offset for t in tokens],
    }
