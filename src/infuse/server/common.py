"""Pieces every router shares: the OpenAI-style error object, the API error exception, SSE lines.

Why a module of its own: the routers (openai-compatible, search, documents, admin, auth) and the
app factory all answer errors in one shape (``{"error": {"message", "type", "param", "code"}}``),
and the factory imports the routers, so the shared shape cannot live in the factory's module.
"""

from __future__ import annotations

import json
from typing import Any

from infuse.errors import InfuseError

RAG_MODEL_ID = "infuse-rag"


class APIError(Exception):
    """An error answered as an OpenAI-style object with ``status`` (and optional headers)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        param: str | None = None,
        *,
        kind: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.kind, self.headers = kind, headers


def error_body(
    message: str, code: str, param: str | None = None, kind: str = "invalid_request_error"
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def sse(data: dict[str, Any] | str) -> str:
    """One server-sent event line."""
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


def error_kind(exc: InfuseError) -> str:
    return "server_error" if exc.http_status >= 500 else "invalid_request_error"


SHUTTING_DOWN = error_body(
    "the server is shutting down; generation was stopped (retry against a running server)",
    "server_shutting_down",
    kind="server_error",
)
INTERNAL_ERROR = error_body("internal error; see the server log", "internal_error", kind="server_error")
