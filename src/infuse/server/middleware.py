"""ASGI layers around the API: the access log and the request size limit (auth is a dependency: server/auth.py).

The access log is plain ASGI middleware, not an ``@app.middleware("http")`` function: a streamed
answer ends long after its headers were sent, and the log must time (and mark) the whole response,
including a stream the client abandoned. The size limit answers 413 in the API's own error format
(Starlette's limit answers in plain text). The log has one line per request (time, client, method,
path, status, duration, and ``incomplete`` when the response did not finish) and never headers,
query strings or bodies, so API keys and questions stay out of it.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infuse.server.common import error_body


class AccessLogSink:
    """Where access lines go: stderr, a file (appended, one flushed line per request), or nowhere."""

    def __init__(self, target: TextIO | None) -> None:
        self._target = target
        self._lock = threading.Lock()

    @classmethod
    def from_setting(cls, value: str, root: Path | None = None) -> AccessLogSink:
        """``stderr``, ``off``, or a file path (relative to ``root``, the workspace folder)."""
        if value == "off":
            return cls(None)
        if value == "stderr":
            return cls(sys.stderr)
        path = Path(value).expanduser()
        if not path.is_absolute() and root is not None:
            path = root / path
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(path.open("a", encoding="utf-8", buffering=1))

    def write(self, line: str) -> None:
        if self._target is None:
            return
        with self._lock:
            self._target.write(line + "\n")
            self._target.flush()


def _printable(text: str, limit: int = 200) -> str:
    """A path or method as it may appear in a log line: no control characters, no spaces, bounded."""
    cleaned = "".join(ch if ch.isprintable() and not ch.isspace() else f"\\x{ord(ch) & 0xFF:02x}" for ch in text)
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "..."


class AccessLog:
    """One line per HTTP request, written when the response has ended (or was abandoned)."""

    def __init__(self, app: ASGIApp, sink: AccessLogSink) -> None:
        self.app = app
        self.sink = sink

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = datetime.now(UTC)
        started = time.perf_counter()
        status: int | None = None
        complete = False

        async def logged_send(message: Message) -> None:
            nonlocal status, complete
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        try:
            await self.app(scope, receive, logged_send)
        finally:
            client = scope.get("client")
            where = f"{client[0]}:{client[1]}" if client else "-"
            line = (
                f"{started_at.isoformat(timespec='milliseconds').replace('+00:00', 'Z')} {where} "
                f"{_printable(str(scope.get('method', '-')), 16)} {_printable(str(scope.get('path', '-')))} "
                f"{status if status is not None else '-'} {(time.perf_counter() - started) * 1000:.0f}ms"
            )
            self.sink.write(line if complete else line + " incomplete")


def error_bytes(message: str, code: str, kind: str = "invalid_request_error") -> bytes:
    """The app's OpenAI-style error object (:func:`infuse.server.common.error_body`), as bytes for a
    response sent from middleware."""
    return json.dumps(error_body(message, code, kind=kind)).encode()


class BodyLimit:
    """Refuses request bodies over ``max_bytes`` with an OpenAI-style 413, before the app parses them.

    A declared ``Content-Length`` over the limit is refused at once; a chunked body is read here (as
    the app would read it anyway) and refused as soon as it passes the limit, not once buffered.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, uploads: tuple[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.uploads = uploads  # (path, limit): the one route that takes files ([server] max_upload_bytes)

    def _limit(self, scope: Scope) -> tuple[int, str]:
        if self.uploads is not None and scope.get("path") == self.uploads[0]:
            return self.uploads[1], "max_upload_bytes"
        return self.max_bytes, "max_request_bytes"

    async def _too_large(self, send: Send, limit: int, setting: str) -> None:
        body = error_bytes(
            f"the request body is larger than {limit} bytes ([server] {setting} in infuse.toml)",
            "request_too_large",
        )
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self._limit(scope)
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._too_large(send, limit, setting)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left before sending the whole body
                await self.app(scope, _replay(message, receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._too_large(send, limit, setting)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        whole: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay(whole, receive), send)


def _replay(first: Message, receive: Receive) -> Receive:
    """A ``receive`` that returns ``first``, then the connection's own messages (e.g. the disconnect)."""
    pending = [first]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
