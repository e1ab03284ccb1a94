"""OpenAI-compatible API over infuse: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``.

Two model ids are served: ``infuse-rag`` answers from the knowledge base (citations in an extra
``citations`` field that standard clients ignore), and the model's own name answers without
retrieval. ``/v1/completions`` scores and continues raw text; with ``echo`` and ``logprobs`` it
returns prompt log-probabilities, which infuse's own ``openai`` backend uses for multiple-choice
scoring.

The model answers one request at a time; the others wait in a bounded FIFO line
(:mod:`infuse.server.queue`; a full line is a 503 with ``Retry-After``). Generation runs one step
at a time in a worker thread, so it stops within a step when the client hangs up (a stream's
client, or a non-streaming client that leaves while waiting) or the server stops (:func:`serve`):
the model is then free for the next request instead of finishing an answer nobody reads.
Every error is an OpenAI-style JSON object; bodies never carry tracebacks.

>>> app = create_app(workspace.rag_pipeline(model), settings=workspace.settings.server)  # doctest: +SKIP
>>> serve(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from infuse.config import ServerSettings
from infuse.errors import InfuseError
from infuse.models.base import ChatMessage, GenerationConfig, GenerationStream, LanguageModel
from infuse.rag import RagPipeline, RagStream
from infuse.server.middleware import AccessLog, AccessLogSink, ApiKeyAuth, BodyLimit
from infuse.server.queue import POLL_SECONDS, ClientGone, ModelQueue, ServerBusy, ServerStopping, Turn
from infuse.server.schemas import ChatCompletionRequest, CompletionRequest

RAG_MODEL_ID = "infuse-rag"
# nginx's code for "the client closed the request": only the access log sees it, the client has gone.
CLIENT_CLOSED_REQUEST = 499

logger = logging.getLogger(__name__)
T = TypeVar("T")


class APIError(Exception):
    def __init__(self, status: int, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


def _error_body(
    message: str, code: str, param: str | None = None, kind: str = "invalid_request_error"
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


SHUTTING_DOWN = _error_body(
    "the server is shutting down; generation was stopped (retry against a running server)",
    "server_shutting_down",
    kind="server_error",
)


INTERNAL_ERROR = _error_body("internal error; see the server log", "internal_error", kind="server_error")


def _error_kind(exc: InfuseError) -> str:
    return "server_error" if exc.http_status >= 500 else "invalid_request_error"


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


def create_app(
    pipeline: RagPipeline,
    api_key: str | None = None,
    settings: ServerSettings | None = None,
    root: Path | None = None,
) -> FastAPI:
    """The API app; with ``api_key`` every /v1 request needs ``Authorization: Bearer <api_key>``.

    ``settings`` ([server]) bound the line of waiting requests and the request size and choose the
    access log; a relative access-log path is inside ``root`` (the workspace folder).
    """
    settings = settings or ServerSettings()
    model = pipeline.model
    # One generation at a time: a local model is not safe to run from several threads at once.
    queue = ModelQueue(settings.max_waiting)
    app = FastAPI(title="infuse", description="OpenAI-compatible API over an infuse knowledge base")
    app.state.queue = queue
    # The last added is the outermost: every request is logged, 401s and 413s included.
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(ApiKeyAuth, api_key=api_key)
    app.add_middleware(AccessLog, sink=AccessLogSink.from_setting(settings.access_log, root))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        param = None
        for error in exc.errors():
            location = ".".join(str(p) for p in error["loc"] if p != "body")
            param = param or location
            problems.append(f"{location or 'body'}: {error['msg']}")
        return JSONResponse(status_code=400, content=_error_body("; ".join(problems), "invalid_request", param))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Unknown routes (404), wrong methods (405), unparsable bodies (400).
        codes = {404: "not_found", 405: "method_not_allowed"}
        message = str(exc.detail)
        if exc.status_code == 400 and message == "There was an error parsing the body":
            message = "the request body could not be parsed: send one JSON object, in UTF-8, not nested too deeply"
        elif exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}; see /docs for the API"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path} (allowed: {exc.headers and exc.headers.get('Allow')})"
        return JSONResponse(
            status_code=exc.status_code,
            content=_error_body(message, codes.get(exc.status_code, "invalid_request")),
            headers=exc.headers,
        )

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content=_error_body(exc.message, exc.code, exc.param))

    @app.exception_handler(InfuseError)
    async def _infuse_error(_: Request, exc: InfuseError) -> JSONResponse:
        # Each error class carries its status (infuse.errors): bad input 400, busy workspace 409, model server 502...
        return JSONResponse(
            status_code=exc.http_status, content=_error_body(str(exc), "infuse_error", kind=_error_kind(exc))
        )

    @app.exception_handler(ServerBusy)
    async def _busy(_: Request, exc: ServerBusy) -> JSONResponse:
        return JSONResponse(
            status_code=503,
            content=_error_body(str(exc), "server_busy", kind="server_error"),
            headers={"Retry-After": str(exc.retry_after)},
        )

    @app.exception_handler(ServerStopping)
    async def _stopping(_: Request, exc: ServerStopping) -> JSONResponse:
        return JSONResponse(status_code=503, content=SHUTTING_DOWN, headers={"Retry-After": "5"})

    @app.exception_handler(ClientGone)
    async def _gone(_: Request, exc: ClientGone) -> Response:
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # A bug: the traceback goes to the server's log, never to the client.
        logger.error("unexpected error", exc_info=exc)
        return JSONResponse(status_code=500, content=INTERNAL_ERROR)

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
                yield _sse(SHUTTING_DOWN)
                yield _sse("[DONE]")
                return
            try:
                delta = await anyio.to_thread.run_sync(generation.step)
            except InfuseError as exc:  # e.g. the model server behind the openai backend failed mid-answer
                yield _sse(_error_body(str(exc), "infuse_error", kind=_error_kind(exc)))
                yield _sse("[DONE]")
                return
            except Exception as exc:  # a bug: the traceback goes to the server's log, never to the client
                logger.error("unexpected error while streaming", exc_info=exc)
                yield _sse(INTERNAL_ERROR)
                yield _sse("[DONE]")
                return
            if delta is None:
                break
            yield _sse(chunk(delta))
        for line in last():
            yield line

    def usage_dict(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    @app.get("/v1/models")
    def list_models() -> dict[str, Any]:
        created = int(time.time())
        return {
            "object": "list",
            "data": [
                {"id": RAG_MODEL_ID, "object": "model", "created": created, "owned_by": "infuse"},
                {"id": model.name, "object": "model", "created": created, "owned_by": "infuse"},
            ],
        }

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "stopping" if queue.stopping.is_set() else "ok",
            "model": model.name,
            "queue": {"busy": queue.busy, "waiting": queue.waiting, "max_waiting": queue.max_waiting},
        }

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> dict[str, Any] | Response:
        use_rag = check_model(body.model)
        config = generation_config(body, pipeline.generation.max_new_tokens)
        messages: list[ChatMessage] = [{"role": m.role, "content": m.content} for m in body.messages]
        # The client's system messages are kept as guidance below infuse's own rules (rag/prompts.py).
        guidance = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        history = [m for m in messages[:-1] if m["role"] != "system"]

        def begin() -> _Generation:
            if use_rag:
                return _Generation(
                    pipeline.stream(messages[-1]["content"], history=history, generation=config, guidance=guidance)
                )
            return _Generation(model.stream(messages, config))

        turn, generation = await start(request, begin)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        stream = generation.stream

        def outcome() -> tuple[str, tuple[int, int], list[dict[str, Any]]]:
            """Finish reason, usage and citations, once the generation has ended."""
            if isinstance(stream, RagStream):
                answer = stream.answer
                citations = [c.to_dict() for c in answer.citations]
                return answer.finish_reason.value, (answer.prompt_tokens, answer.completion_tokens), citations
            assert stream.result is not None
            result = stream.result
            return result.finish_reason.value, (result.prompt_tokens, result.completion_tokens), []

        if not body.stream:
            try:
                text = await run_watched(request, lambda: "".join(iter(generation.step, None)), stream.cancel)
            finally:
                generation.close()
                turn.release()
            if isinstance(stream, RagStream):
                text = stream.answer.text
            finish, usage, citations = outcome()
            return {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": body.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
                "usage": usage_dict(*usage),
                "citations": citations,
            }

        base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": body.model}

        def delta_chunk(delta: str) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": {"content": delta}, "finish_reason": None}]}

        def last() -> list[str]:
            finish, usage, citations = outcome()
            lines = [
                _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}], "citations": citations})
            ]
            if body.include_usage():
                lines.append(_sse({**base, "choices": [], "usage": usage_dict(*usage)}))
            return [*lines, _sse("[DONE]")]

        first = [
            _sse(
                {
                    **base,
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
                }
            )
        ]
        return _TurnStreamingResponse(stream_events(generation, delta_chunk, first, last), generation, turn)

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest, request: Request) -> dict[str, Any] | Response:
        if check_model(body.model):
            raise APIError(
                400,
                f"{RAG_MODEL_ID} answers chat requests; use /v1/chat/completions or model {model.name!r}",
                "wrong_endpoint",
                "model",
            )
        if body.stream and (body.logprobs is not None or body.echo):
            raise APIError(400, "logprobs and echo are not supported with stream=true", "unsupported", "stream")
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
                return [_sse(end), _sse("[DONE]")]

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

    from infuse.server.documents import documents_router

    app.include_router(documents_router(pipeline))
    return app


class _StoppingServer(uvicorn.Server):
    """uvicorn, but Ctrl-C / SIGTERM first tells the app: running generations stop at their next
    step and waiting requests get 503, so the server stops in about a step instead of waiting for
    every answer (uvicorn waits for open responses; ``shutdown_timeout`` bounds that)."""

    def __init__(self, config: uvicorn.Config, queue: ModelQueue) -> None:
        super().__init__(config)
        self.queue = queue

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.queue.stopping.set()
        super().handle_exit(sig, frame)


def make_server(
    app: FastAPI, host: str = "127.0.0.1", port: int = 8000, shutdown_timeout: float = 10.0
) -> uvicorn.Server:
    """A uvicorn server for an app from :func:`create_app` (``.run()`` it, or ``handle_exit`` to stop it)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,  # infuse writes its own (server/middleware.py)
        timeout_graceful_shutdown=max(1, round(shutdown_timeout)),
    )
    return _StoppingServer(config, app.state.queue)


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, shutdown_timeout: float = 10.0) -> None:
    """Serve until Ctrl-C or SIGTERM (see :class:`_StoppingServer`)."""
    make_server(app, host, port, shutdown_timeout).run()


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
