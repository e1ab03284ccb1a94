"""Search and status over the knowledge base, as the caller may see it: ``POST /v1/search``, ``GET /v1/status``.

Why beside the chat routes: a client that wants passages, not an answer (a web UI's search box, an
agent's tool), needs no model and should not wait in the model's line. ``/v1/search`` answers in
the JSON of ``infuse search --json`` (``{"query", "hits": [SearchHit.to_dict()...]}``), searched
through the caller's access filter (a prefilter on both the dense and the keyword list, so ``k``
hits come back whenever ``k`` readable ones exist). ``/v1/status`` counts only what the caller may
read and says which default policy applies; an admin also gets the workspace's full status.
"""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from infuse.access import Caller
from infuse.config import SearchMode
from infuse.server.auth import note
from infuse.server.context import ServerContext
from infuse.store.filters import FilterValue, combine


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(..., min_length=1, max_length=8000)
    k: int | None = Field(None, ge=1, le=100, description="hits to return (default: [search] k)")
    mode: SearchMode | None = Field(None, description="hybrid, dense or lexical (default: [search] mode)")
    filters: dict[str, FilterValue] | None = Field(None, description="KEY: VALUE, all must hold (as --filter)")


def knowledge_router(ctx: ServerContext) -> APIRouter:
    router = APIRouter(dependencies=[Depends(ctx.gate)], tags=["knowledge"])
    workspace = ctx.workspace
    if workspace is None:
        return router

    @router.post("/v1/search")
    async def search(body: SearchRequest, request: Request, caller: Caller = Depends(ctx.gate)) -> dict[str, Any]:
        note(request, question=body.query)

        def find() -> list[Any]:
            filters = combine(ctx.visible(caller), ctx.request_filters(caller, body.filters))
            return workspace.search(body.query, body.k, body.mode, filters)

        hits = await anyio.to_thread.run_sync(find)
        note(request, chunks=[hit.chunk.chunk_id for hit in hits])
        return {"query": body.query, "hits": [hit.to_dict() for hit in hits]}

    @router.get("/v1/status")
    async def status(caller: Caller = Depends(ctx.gate)) -> dict[str, Any]:
        visible = ctx.visible(caller)
        documents = await anyio.to_thread.run_sync(workspace.documents, visible)
        tuned = ctx.tuned
        answer: dict[str, Any] = {
            "user": caller.name,
            "admin": caller.admin,
            "groups": list(caller.groups),
            "auth": ctx.gate.multi_user,
            "default_policy": ctx.policy.value,
            "documents": len(documents),
            "chunks": sum(d.chunks for d in documents),
            "model": ctx.model.name,
            "tuned": None
            if tuned is None
            else {
                "runs": list(tuned.runs),
                "served_to_you": ctx.allow_tuned_for_all or tuned.readable_by(caller, ctx.policy),
                "allow_tuned_for_all": ctx.allow_tuned_for_all,
            },
        }
        if caller.admin:
            answer["workspace"] = (await anyio.to_thread.run_sync(workspace.status)).to_dict()
        return answer

    return router
