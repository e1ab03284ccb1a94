"""The server's app factory: FastAPI routers per area, one auth dependency, errors in one shape.

Areas (each its own router module): the OpenAI-compatible routes (:mod:`.openai_routes`:
``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``), search and status
(:mod:`.knowledge`), documents (:mod:`.documents`), sign-in sessions (:mod:`.auth`, with
``--auth``), admin (:mod:`.admin`), the web UI under ``/ui`` (:mod:`.web`) and health
(:mod:`.health`: ``/health`` and ``/ready``, the only routes without auth besides the UI's sign-in
page and its static files). Every other route depends on :class:`~infuse.server.auth.Gate`, which gives
it the :class:`~infuse.access.Caller`; the pipeline is built per request from that caller
(:class:`~infuse.server.context.ServerContext`), over one shared model.

The model answers one request at a time; the others wait in a bounded FIFO line
(:mod:`infuse.server.queue`). :func:`serve` stops running generations within a step on Ctrl-C or
SIGTERM. Every error is an OpenAI-style JSON object; bodies never carry tracebacks. Each request is
logged twice: a line in the access log (no questions, no keys) and a record in the audit log
(:mod:`infuse.server.audit`: who asked what, which chunks came back).

>>> app = create_app(workspace.rag_pipeline(model), settings=workspace.settings.server)  # doctest: +SKIP
>>> app = create_app(pipeline, authenticator=IdentityStore.open(ws.path), root=ws.path)  # doctest: +SKIP
>>> serve(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from infuse.access import DefaultPolicy
from infuse.config import ServerSettings
from infuse.errors import InfuseError
from infuse.identity import IdentityStore
from infuse.rag import RagPipeline
from infuse.server.admin import admin_router
from infuse.server.audit import AuditLog, AuditMiddleware, audit_path
from infuse.server.auth import Authenticator, Gate, Limiter, session_router
from infuse.server.background import JobLauncher
from infuse.server.common import INTERNAL_ERROR, RAG_MODEL_ID, SHUTTING_DOWN, APIError, error_body, error_kind
from infuse.server.context import ServerContext, TunedWeights
from infuse.server.conversations import ConversationStore
from infuse.server.documents import documents_router
from infuse.server.health import health_router
from infuse.server.knowledge import knowledge_router
from infuse.server.middleware import AccessLog, AccessLogSink, BodyLimit
from infuse.server.openai_routes import openai_router
from infuse.server.queue import ClientGone, ModelQueue, ServerBusy, ServerStopping
from infuse.server.web import (
    UPLOAD_ROUTE,
    SignInRequired,
    error_page,
    mount_static,
    sign_in_redirect,
    wants_page,
    web_router,
)

# nginx's code for "the client closed the request": only the access log sees it, the client has gone.
CLIENT_CLOSED_REQUEST = 499

logger = logging.getLogger(__name__)


def create_app(
    pipeline: RagPipeline,
    api_key: str | None = None,
    settings: ServerSettings | None = None,
    root: Path | None = None,
    *,
    authenticator: Authenticator | None = None,
    limiter: Limiter | None = None,
    policy: DefaultPolicy = DefaultPolicy.ADMINS,
    tuned: TunedWeights | None = None,
    allow_tuned_for_all: bool | None = None,
    identity: IdentityStore | None = None,
) -> FastAPI:
    """The API app over ``pipeline`` (its model is shared; its retriever is narrowed per caller).

    Without ``authenticator`` the server has one user, an admin (``api_key``: the bearer token it
    must send). With one (``serve --auth``), every route but health needs a key or a session, and
    ``limiter`` counts failed attempts. ``policy`` decides who reads documents without an access
    list; ``tuned`` lists the fine-tuning runs in the served weights (refused to callers who may not
    read their training documents unless ``allow_tuned_for_all``, default ``[server]
    allow_tuned_for_all``). ``identity`` (the identity store) backs the admin routes for users,
    groups and keys. ``settings`` ([server]) bound the line and the request size and choose the
    access and audit logs; relative log paths are inside ``root`` (default: the workspace folder).
    """
    settings = settings or ServerSettings()
    gate = Gate(authenticator, api_key, limiter)
    # One generation at a time: a local model is not safe to run from several threads at once.
    queue = ModelQueue(settings.max_waiting)
    ctx = ServerContext(
        pipeline,
        queue,
        gate,
        policy=policy,
        tuned=tuned,
        allow_tuned_for_all=settings.allow_tuned_for_all if allow_tuned_for_all is None else allow_tuned_for_all,
    )
    if ctx.workspace is not None:
        ctx.conversations = ConversationStore.in_workspace(ctx.workspace.path)
    if authenticator is not None and ctx.workspace is None:
        raise InfuseError("a server with --auth needs a workspace pipeline (its retriever filters per caller)")
    root = root or (ctx.workspace.path if ctx.workspace is not None else None)
    audit_file = audit_path(settings.audit_log, root) if root is not None else None
    audit = AuditLog(audit_file, settings.audit_max_bytes, settings.audit_keep) if audit_file is not None else None

    app = FastAPI(title="infuse", description="OpenAI-compatible API over an infuse knowledge base")
    app.state.queue = queue
    app.state.context = ctx
    app.state.audit_path = audit_file
    # The last added is the outermost: every request is logged, 401s and 413s included.
    app.add_middleware(
        BodyLimit, max_bytes=settings.max_request_bytes, uploads=(UPLOAD_ROUTE, settings.max_upload_bytes)
    )
    app.add_middleware(AuditMiddleware, log=audit)
    app.add_middleware(AccessLog, sink=AccessLogSink.from_setting(settings.access_log, root))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        param = None
        for error in exc.errors():
            location = ".".join(str(p) for p in error["loc"] if p != "body")
            param = param or location
            problems.append(f"{location or 'body'}: {error['msg']}")
        return JSONResponse(status_code=400, content=error_body("; ".join(problems), "invalid_request", param))

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
            content=error_body(message, codes.get(exc.status_code, "invalid_request")),
            headers=exc.headers,
        )

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> Response:
        if wants_page(request):
            return error_page(request, exc.status, exc.message)
        return JSONResponse(
            status_code=exc.status, content=error_body(exc.message, exc.code, exc.param, exc.kind), headers=exc.headers
        )

    @app.exception_handler(InfuseError)
    async def _infuse_error(request: Request, exc: InfuseError) -> Response:
        # Each error class carries its status (infuse.errors): bad input 400, busy workspace 409, model server 502...
        if wants_page(request):
            return error_page(request, exc.http_status, str(exc))
        return JSONResponse(
            status_code=exc.http_status, content=error_body(str(exc), "infuse_error", kind=error_kind(exc))
        )

    @app.exception_handler(ServerBusy)
    async def _busy(_: Request, exc: ServerBusy) -> JSONResponse:
        return JSONResponse(
            status_code=503,
            content=error_body(str(exc), "server_busy", kind="server_error"),
            headers={"Retry-After": str(exc.retry_after)},
        )

    @app.exception_handler(ServerStopping)
    async def _stopping(_: Request, exc: ServerStopping) -> JSONResponse:
        return JSONResponse(status_code=503, content=SHUTTING_DOWN, headers={"Retry-After": "5"})

    @app.exception_handler(SignInRequired)
    async def _sign_in(_: Request, exc: SignInRequired) -> Response:
        return sign_in_redirect(exc)

    @app.exception_handler(ClientGone)
    async def _gone(_: Request, exc: ClientGone) -> Response:
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # A bug: the traceback goes to the server's log, never to the client.
        logger.error("unexpected error", exc_info=exc)
        return JSONResponse(status_code=500, content=INTERNAL_ERROR)

    app.include_router(health_router(ctx))
    app.include_router(openai_router(ctx))
    app.include_router(knowledge_router(ctx))
    app.include_router(documents_router(ctx))
    if authenticator is not None:
        app.include_router(session_router(gate))
    app.include_router(admin_router(ctx, audit_file, identity))
    launcher = JobLauncher(ctx.workspace.path) if ctx.workspace is not None else None
    app.include_router(web_router(ctx, identity=identity, audit_file=audit_file, launcher=launcher))
    mount_static(app)
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


__all__ = ["RAG_MODEL_ID", "create_app", "make_server", "serve"]
