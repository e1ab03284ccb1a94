"""``/health`` and ``/ready``: the only routes without auth, for load balancers and orchestrators.

``/health`` says the process answers (and how long the model's line is); ``/ready`` says it can
serve: not stopping, and the knowledge base readable (503 otherwise). Neither names a document,
a user or a count of documents.
"""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from infuse.server.context import ServerContext

UNAUTHENTICATED_PATHS = frozenset({"/health", "/ready"})


def health_router(ctx: ServerContext) -> APIRouter:
    router = APIRouter(tags=["health"])
    queue = ctx.queue

    @router.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "stopping" if queue.stopping.is_set() else "ok",
            "model": ctx.model.name,
            "queue": {"busy": queue.busy, "waiting": queue.waiting, "max_waiting": queue.max_waiting},
        }

    @router.get("/ready", response_model=None)
    async def ready() -> dict[str, Any] | JSONResponse:
        if queue.stopping.is_set():
            return JSONResponse(status_code=503, content={"status": "stopping"})
        workspace = ctx.workspace
        if workspace is not None:
            try:
                await anyio.to_thread.run_sync(workspace.manifest)
            except Exception as exc:  # any failure to read the knowledge base means "not ready"
                return JSONResponse(status_code=503, content={"status": "unavailable", "reason": type(exc).__name__})
        return {"status": "ready"}

    return router
