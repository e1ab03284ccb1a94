"""Document routes: ``GET /v1/documents`` and ``GET /v1/documents/{doc_id}``.

Why: a citation (``citations`` in a chat completion) carries ``doc_id``, ``start`` and ``end``;
for HTML, PDF and DOCX those offsets index the text infuse extracted, not the file, so a client
that wants to highlight a cited passage fetches that text here. The routes take the caller from
the auth dependency and show only what the caller may read (the base pipeline's filters and the
caller's access list): a document none of whose chunks the caller may read is a 404 worded exactly
like one that does not exist, so the answer does not reveal that it exists.
Errors are the app's OpenAI-style errors (an unknown document 404, a bad ``filter`` 400).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query

from infuse.access import Caller
from infuse.documents.loaders import normalise_path
from infuse.errors import InfuseError, LoadError
from infuse.server.context import ServerContext
from infuse.store.filters import Filter, combine, parse_filter_items
from infuse.workspace import DocumentNotFoundError, DocumentSummary, DocumentView, Workspace


def _visible_document(workspace: Workspace, ref: str, visible: Filter) -> DocumentView:
    """The document ``ref`` (an id or a source path) names among those ``visible`` lets through.

    Resolved among the visible documents only: a path holding several records lists only the
    readable ones' ids, and an unreadable document is "not found" in the same words as a missing one.
    """
    try:
        path: str | None = normalise_path(Path(ref))
    except LoadError:  # "~nosuchuser", a NUL byte: no document can have that path
        path = None
    ids = [d.doc_id for d in workspace.documents(visible) if d.doc_id == ref or d.source_path == path]
    if len(ids) > 1:
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        raise InfuseError(f"{ref} holds {len(ids)} documents (records); name one by id: {shown}")
    if not ids:
        raise DocumentNotFoundError(
            f"no document {ref!r}; GET /v1/documents lists the ids and source paths you may read"
        )
    return workspace.document(ids[0], visible)


def documents_router(ctx: ServerContext) -> APIRouter:
    """The document routes over the workspace the base pipeline's retriever searches (none when it
    searches something else: a stand-in pipeline without a workspace in tests)."""
    router = APIRouter(dependencies=[Depends(ctx.gate)], tags=["documents"])
    workspace = ctx.workspace
    if workspace is None:
        return router

    @router.get("/v1/documents")
    async def list_documents(
        filter_: Annotated[list[str] | None, Query(alias="filter", description="KEY=VALUE, repeatable")] = None,
        caller: Caller = Depends(ctx.gate),
    ) -> dict[str, Any]:
        def listed() -> list[DocumentSummary]:
            asked = ctx.request_filters(caller, parse_filter_items(filter_ or []) or None)
            return workspace.documents(combine(ctx.visible(caller), asked))

        summaries = await anyio.to_thread.run_sync(listed)
        data = [d.to_dict() for d in summaries]
        if not caller.admin:  # who else may read a document (names, groups, denials) is the admins' business
            for row in data:
                row.pop("access", None)
        return {"object": "list", "data": data}

    @router.get("/v1/documents/{doc_id:path}")
    async def get_document(doc_id: str, caller: Caller = Depends(ctx.gate)) -> dict[str, Any]:
        visible = ctx.visible(caller)
        if visible is None:
            view = await anyio.to_thread.run_sync(workspace.document, doc_id)
        else:
            view = await anyio.to_thread.run_sync(_visible_document, workspace, doc_id, visible)
        return {"object": "document", **view.to_dict()}

    return router
