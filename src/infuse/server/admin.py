"""Admin routes: ``/admin/...`` (users, groups, API keys, the audit log), for admins only (403 for members).

Why routes at all: the CLI (``infuse users|groups|audit``) needs a shell on the server's machine;
a team's admin (and the web UI) manages people over HTTP instead, with the same library calls.
User and group management is the identity store's (``infuse.identity``); these routes only
translate. A new API key is returned once, in the response that created it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Query

from infuse.access import Caller
from infuse.server.audit import read_records
from infuse.server.common import APIError
from infuse.server.context import ServerContext


def admin_router(ctx: ServerContext, audit_path: Path | None, identity: Any = None) -> APIRouter:
    gate = ctx.gate

    async def require_admin(caller: Caller = Depends(gate)) -> Caller:
        if not caller.admin:
            raise APIError(403, "this route is for admins", "admin_only", kind="permission_error")
        return caller

    router = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)], tags=["admin"])

    @router.get("/audit")
    async def audit(
        n: int = Query(100, ge=0, le=10_000, description="the newest N matching records"),
        user: str | None = None,
        since: str | None = Query(None, description="ISO time, e.g. 2026-12-02T17:00"),
        text: str | None = Query(None, description="in the question or route"),
    ) -> dict[str, Any]:
        if audit_path is None:
            raise APIError(404, "the audit log is off ([server] audit_log = \"off\")", "audit_off")
        records = await anyio.to_thread.run_sync(
            lambda: read_records(audit_path, user=user, since=since, text=text, last=n)
        )
        return {"object": "list", "data": records}

    return router
