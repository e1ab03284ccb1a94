"""Admin routes: ``/admin/...`` (users, groups, API keys, the audit log, refreshing a replica), for admins only (403 for members).

Why routes at all: the CLI (``infuse users|groups|audit``) needs a shell on the server's machine;
a team's admin (and the web UI) manages people over HTTP instead, with the same library calls.
User and group management is the identity store's (``infuse.identity``); these routes only
translate. A new API key is returned once, in the response that created it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from infuse.access import Caller
from infuse.identity import IdentityStore
from infuse.server.audit import read_records
from infuse.server.common import APIError
from infuse.server.context import ServerContext

T = TypeVar("T")


class NewUser(BaseModel):
    name: str
    admin: bool = False
    groups: list[str] = Field(default_factory=list)


class NewGroup(BaseModel):
    name: str


def admin_router(ctx: ServerContext, audit_path: Path | None, identity: IdentityStore | None = None) -> APIRouter:
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
            raise APIError(404, 'the audit log is off ([server] audit_log = "off")', "audit_off")
        records = await anyio.to_thread.run_sync(
            lambda: read_records(audit_path, user=user, since=since, text=text, last=n)
        )
        return {"object": "list", "data": records}

    @router.post("/refresh")
    async def refresh() -> dict[str, Any]:
        """Read the knowledge base's latest commit now (a replica pinned by ``[store] refresh_seconds``,
        told by an ingest worker that it finished)."""
        workspace = ctx.workspace
        if workspace is None:
            raise APIError(
                404, "this server serves no workspace: there is no knowledge base to refresh", "no_workspace"
            )
        await anyio.to_thread.run_sync(workspace.refresh_knowledge)
        return {"object": "refresh", "documents": (await anyio.to_thread.run_sync(workspace.status)).documents}

    if identity is None:
        return router
    store = identity

    async def run(work: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(work)

    @router.get("/users")
    async def list_users() -> dict[str, Any]:
        return {"object": "list", "data": [u.to_dict() for u in await run(store.list_users)]}

    @router.post("/users")
    async def add_user(body: NewUser) -> dict[str, Any]:
        key = await run(lambda: store.add_user(body.name, admin=body.admin, groups=body.groups))
        return {"user": (await run(lambda: store.user(body.name))).to_dict(), "key": key}

    @router.delete("/users/{name}")
    async def remove_user(name: str) -> dict[str, Any]:
        await run(lambda: store.remove_user(name))
        return {"removed": name}

    @router.post("/users/{name}/keys")
    async def rotate_key(name: str) -> dict[str, Any]:
        """A new key for ``name``; their old keys stop working at once."""
        return {"user": name, "key": await run(lambda: store.rotate_key(name))}

    @router.delete("/users/{name}/keys")
    async def revoke_keys(name: str) -> dict[str, Any]:
        await run(lambda: store.revoke_keys(name))
        return {"revoked": name}

    @router.get("/groups")
    async def list_groups() -> dict[str, Any]:
        return {"object": "list", "data": [g.to_dict() for g in await run(store.list_groups)]}

    @router.post("/groups")
    async def add_group(body: NewGroup) -> dict[str, Any]:
        await run(lambda: store.add_group(body.name))
        return {"added": body.name}

    @router.delete("/groups/{name}")
    async def remove_group(name: str) -> dict[str, Any]:
        await run(lambda: store.remove_group(name))
        return {"removed": name}

    @router.put("/groups/{group}/members/{user}")
    async def add_member(group: str, user: str) -> dict[str, Any]:
        return {"group": group, "user": user, "added": await run(lambda: store.add_member(group, user))}

    @router.delete("/groups/{group}/members/{user}")
    async def remove_member(group: str, user: str) -> dict[str, Any]:
        return {"group": group, "user": user, "removed": await run(lambda: store.remove_member(group, user))}

    @router.get("/auth-failures")
    async def auth_failures(n: int = Query(100, ge=1, le=10_000)) -> dict[str, Any]:
        return {"object": "list", "data": await run(lambda: store.failures(n))}

    return router
