"""OpenAI-compatible API over infuse: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``.

Two model ids are served: ``infuse-rag`` answers from the knowledge base (citations in an extra
``citations`` field that standard clients ignore), and the model's own name answers without
retrieval. ``/v1/completions`` scores and continues raw text; with ``echo`` and ``logprobs`` it
returns prompt log-probabilities, which infuse's own ``openai`` backend uses for multiple-choice
scoring.

>>> app = create_app(workspace.rag_pipeline(model))  # doctest: +SKIP
>>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse

from infuse.errors import InfuseError
from infuse.models.base import ChatMessage, GenerationConfig, GenerationStream, LanguageModel
from infuse.rag import RagPipeline, RagStream
from infuse.server.schemas import ChatCompletionRequest, CompletionRequest

RAG_MODEL_ID = "infuse-rag"


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


def create_app(pipeline: RagPipeline, api_key: str | None = None) -> FastAPI:
    """The API app; with ``api_key`` every /v1 request needs ``Authorization: Bearer <api_key>``."""
    model = pipeline.model
    # One generation at a time: a local model is not safe to run from several threads at once.
    model_lock = threading.Lock()
    app = FastAPI(title="infuse", description="OpenAI-compatible API over an infuse knowledge base")

    @app.middleware("http")
    async def _authenticate(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if api_key and request.url.path.startswith("/v1"):
            if request.headers.get("authorization", "") != f"Bearer {api_key}":
                return JSONResponse(
                    status_code=401,
                    content=_error_body(
                        "invalid or missing API key (Authorization: Bearer ...)",
                        "invalid_api_key",
                        kind="authentication_error",
                    ),
                )
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        param = None
        for error in exc.errors():
            location = ".".join(str(p) for p in error["loc"] if p != "body")
            param = param or location
            problems.append(f"{location or 'body'}: {error['msg']}")
        return JSONResponse(status_code=400, content=_error_body("; ".join(problems), "invalid_request", param))

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content=_error_body(exc.message, exc.code, exc.param))

    @app.exception_handler(InfuseError)
    async def _infuse_error(_: Request, exc: InfuseError) -> JSONResponse:
        # Each error class carries its status (infuse.errors): bad input 400, busy workspace 409, model server 502...
        kind = "server_error" if exc.http_status >= 500 else "invalid_request_error"
        return JSONResponse(status_code=exc.http_status, content=_error_body(str(exc), "infuse_error", kind=kind))

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
        return {"status": "ok", "model": model.name}

    @app.post("/v1/chat/completions", response_model=None)
    def chat_completions(body: ChatCompletionRequest) -> dict[str, Any] | StreamingResponse:
        use_rag = check_model(body.model)
        config = generation_config(body, pipeline.generation.max_new_tokens)
        question = body.messages[-1].content
        history: list[ChatMessage] = [
            {"role": m.role, "content": m.content} for m in body.messages[:-1] if m.role != "system"
        ]
        with model_lock:
            rag = pipeline.stream(question, history=history, generation=config) if use_rag else None
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())

        def citations(stream: RagStream | None) -> list[dict[str, Any]]:
            return [c.to_dict() for c in stream.answer.citations] if stream else []

        if not body.stream:
            with model_lock:
                if rag is not None:
                    answer = rag.collect()
                    text, usage = answer.text, (answer.prompt_tokens, answer.completion_tokens)
                    finish = "stop"
                else:
                    generation = model.generate([{"role": m.role, "content": m.content} for m in body.messages], config)
                    text, usage, finish = (
                        generation.text,
                        (generation.prompt_tokens, generation.completion_tokens),
                        generation.finish_reason.value,
                    )
            return {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": body.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
                "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
                "citations": citations(rag),
            }

        def events() -> Iterator[str]:
            base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": body.model}
            with model_lock:
                if rag is not None:
                    deltas: Iterator[str] = iter(rag)
                    plain: GenerationStream | None = None
                else:
                    plain = model.stream([{"role": m.role, "content": m.content} for m in body.messages], config)
                    deltas = iter(plain)
                yield _sse(
                    {
                        **base,
                        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
                    }
                )
                for delta in deltas:
                    yield _sse({**base, "choices": [{"index": 0, "delta": {"content": delta}, "finish_reason": None}]})
            if rag is not None:
                usage = (rag.answer.prompt_tokens, rag.answer.completion_tokens)
                finish = "stop"
            else:
                assert plain is not None and plain.result is not None
                usage = (plain.result.prompt_tokens, plain.result.completion_tokens)
                finish = plain.result.finish_reason.value
            yield _sse(
                {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}], "citations": citations(rag)}
            )
            if body.include_usage():
                yield _sse(
                    {
                        **base,
                        "choices": [],
                        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
                    }
                )
            yield _sse("[DONE]")

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/completions", response_model=None)
    def completions(body: CompletionRequest) -> dict[str, Any] | StreamingResponse:
        if check_model(body.model):
            raise APIError(
                400,
                f"{RAG_MODEL_ID} answers chat requests; use /v1/chat/completions or model {model.name!r}",
                "wrong_endpoint",
                "model",
            )
        prompt = body.prompt_text()
        config = generation_config(body, 16)
        completion_id = f"cmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if body.stream:
            if body.logprobs is not None or body.echo:
                raise APIError(400, "logprobs and echo are not supported with stream=true", "unsupported", "stream")

            def events() -> Iterator[str]:
                base = {"id": completion_id, "object": "text_completion", "created": created, "model": body.model}
                with model_lock:
                    stream = model.stream(prompt, config)
                    for delta in stream:
                        yield _sse(
                            {**base, "choices": [{"index": 0, "text": delta, "logprobs": None, "finish_reason": None}]}
                        )
                assert stream.result is not None
                yield _sse(
                    {
                        **base,
                        "choices": [
                            {
                                "index": 0,
                                "text": "",
                                "logprobs": None,
                                "finish_reason": stream.result.finish_reason.value,
                            }
                        ],
                    }
                )
                yield _sse("[DONE]")

            return StreamingResponse(events(), media_type="text/event-stream")

        with model_lock:
            if config.max_new_tokens > 0:
                generation = model.generate(prompt, config)
                text, finish, completion_tokens = (
                    generation.text,
                    generation.finish_reason.value,
                    generation.completion_tokens,
                )
                prompt_tokens = generation.prompt_tokens
            else:
                text, finish, completion_tokens = "", "length", 0
                prompt_tokens = model.count_tokens(prompt)
            logprobs = _logprobs(model, prompt, text, body) if body.logprobs is not None else None
        return {
            "id": completion_id,
            "object": "text_completion",
            "created": created,
            "model": body.model,
            "choices": [
                {
                    "index": 0,
                    "text": (prompt + text) if body.echo else text,
                    "logprobs": logprobs,
                    "finish_reason": finish,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    from infuse.server.documents import documents_router

    app.include_router(documents_router(pipeline))
    return app


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
