"""Document routes: ``GET /v1/documents`` and ``GET /v1/documents/{doc_id}``.

Why: a citation (``citations`` in a chat completion) carries ``doc_id``, ``start`` and ``end``;
for HTML, PDF and DOCX those offsets index the text infuse extracted, not the file, so a client
that wants to highlight a cited passage fetches that text here. The routes sit under ``/v1`` and
so need the same API key as the others; they show only what the pipeline's retriever may search
(its filters, e.g. a user's access list, apply: a document none of whose chunks pass is a 404).
Errors are the app's OpenAI-style errors (an unknown document 404, a bad ``filter`` 400).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from infuse.rag import RagPipeline
from infuse.store.filters import combine, parse_filter_items
from infuse.workspace import WorkspaceRetriever


def documents_router(pipeline: RagPipeline) -> APIRouter:
    """The document routes over the workspace the ``pipeline``'s retriever searches (none when it
    searches something else: a bare searcher, or a stand-in pipeline without a retriever in tests)."""
    router = APIRouter()
    retriever = getattr(pipeline, "retriever", None)
    if not isinstance(retriever, WorkspaceRetriever):
        return router
    workspace, visible = retriever.workspace, retriever.filters

    @router.get("/v1/documents")
    def list_documents(
        filter_: Annotated[list[str] | None, Query(alias="filter", description="KEY=VALUE, repeatable")] = None,
    ) -> dict[str, Any]:
        filters = combine(visible, parse_filter_items(filter_ or []))
        return {"object": "list", "data": [d.to_dict() for d in workspace.documents(filters)]}

    @router.get("/v1/documents/{doc_id:path}")
    def get_document(doc_id: str) -> dict[str, Any]:
        return {"object": "document", **workspace.document(doc_id, visible).to_dict()}

    return router
