"""The audit log: one JSON line per request saying who asked what and which passages they were shown.

Why beside the access log (:mod:`infuse.server.middleware`): the access log is for operators and
keeps questions out; the audit log is for admins answering "who saw this passage?", so it keeps
the user, the question and the returned chunk ids, and is readable only through admin routes and
the local CLI (``infuse audit tail|search``). It lives in the workspace (``[server] audit_log``,
default ``logs/audit.jsonl``) and is rotated by size: past ``audit_max_bytes`` the file becomes
``audit.jsonl.1`` (older ones shift to ``.2``...; ``audit_keep`` are kept).

A record: ``{"time", "user", "route", "status", "question", "chunks", "passages", "model", "client"}``:
``chunks`` are the chunks returned to the client (hits, citations), ``passages`` every passage put
in a RAG prompt (cited or not; recorded as soon as retrieval is done, so an abandoned stream has them);
``user`` is null when the request was refused before anyone was recognised. The record is written
when the response has ended, so a streamed answer's citations are in it. Health and readiness
probes are not recorded.

>>> log = AuditLog(Path("WS/logs/audit.jsonl"), max_bytes=10_000_000, keep=5)  # doctest: +SKIP
>>> read_records(Path("WS/logs/audit.jsonl"), user="alice", text="backups")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infuse.errors import InfuseError

UNAUDITED_PATHS = frozenset({"/health", "/ready"})
STATIC_PREFIX = "/ui/static/"  # the web UI's stylesheet and scripts: no data, not worth a record
MAX_QUESTION_CHARS = 4000


def audit_path(setting: str, root: Path) -> Path | None:
    """The log file a ``[server] audit_log`` value names (relative: inside the workspace); None for ``off``."""
    if setting == "off":
        return None
    path = Path(setting).expanduser()
    return path if path.is_absolute() else root / path


class AuditLog:
    """Appends records (thread-safe), rotating the file past ``max_bytes``."""

    def __init__(self, path: Path, max_bytes: int = 10_000_000, keep: int = 5) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self._lock = threading.Lock()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            if self.path.exists() and self.path.stat().st_size + len(line.encode()) > self.max_bytes:
                self._rotate()
            # Every user's questions are in it: readable by the server's account only (rotation keeps the mode).
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(descriptor, "a", encoding="utf-8") as target:
                target.write(line)

    def _rotate(self) -> None:
        for index in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
        if self.keep > 0:
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()


def log_files(path: Path) -> list[Path]:
    """The log and its rotated files, oldest first."""
    rotated = sorted(
        (p for p in path.parent.glob(f"{path.name}.*") if p.name.rsplit(".", 1)[-1].isdigit()),
        key=lambda p: -int(p.name.rsplit(".", 1)[-1]),
    )
    return [*rotated, *([path] if path.exists() else [])]


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    """Every record, oldest first; a line that is not a JSON object (a torn write) is skipped."""
    for file in log_files(path):
        with file.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict):
                    yield record


def _since(value: str) -> str:
    """An ISO time (``2026-12-02``, ``2026-12-02T17:00``, with or without a zone) as comparable UTC text."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InfuseError(f"--since {value!r} is not an ISO date or time, e.g. 2026-12-02 or 2026-12-02T17:00") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _stamp(moment)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def read_records(
    path: Path, *, user: str | None = None, since: str | None = None, text: str | None = None, last: int | None = None
) -> list[dict[str, Any]]:
    """Records matching all of: ``user``, at or after ``since`` (ISO time), ``text`` in the question
    or route (case-insensitive); the ``last`` newest of them (all: None), oldest first."""
    start = _since(since) if since else None
    wanted = text.lower() if text else None
    kept: deque[dict[str, Any]] = deque(maxlen=last if last is not None and last > 0 else None)
    for record in iter_records(path):
        if user is not None and record.get("user") != user:
            continue
        if start is not None and str(record.get("time", "")) < start:
            continue
        if wanted is not None and wanted not in f"{record.get('question') or ''}\n{record.get('route', '')}".lower():
            continue
        kept.append(record)
    return list(kept) if last != 0 else []


class AuditMiddleware:
    """Writes one record per HTTP request when its response ends; routes add to it with
    :func:`infuse.server.auth.note` (user, question, chunks, model)."""

    def __init__(self, app: ASGIApp, log: AuditLog | None) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if self.log is None or scope["type"] != "http" or path in UNAUDITED_PATHS or path.startswith(STATIC_PREFIX):
            await self.app(scope, receive, send)
            return
        record: dict[str, Any] = {
            "time": _stamp(datetime.now(UTC)),
            "user": None,
            "route": f"{scope.get('method', '-')} {scope.get('path', '-')}",
            "status": None,
            "question": None,
            "chunks": [],
            "passages": [],
            "model": None,
        }
        scope.setdefault("state", {})["audit"] = record

        async def noted_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record["status"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, noted_send)
        finally:
            client = scope.get("client")
            record["client"] = client[0] if client else None
            if isinstance(record.get("question"), str):
                record["question"] = record["question"][:MAX_QUESTION_CHARS]
            self.log.write(record)
