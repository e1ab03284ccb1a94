"""Conversations kept per user: what the web UI's chat shows again after a reload or on another device.

Why on the server and not in the browser: a colleague expects yesterday's answers on their phone,
and "nothing lost when something fails" includes a closed tab. The chat route records a turn once
its answer is complete (``conversation`` in a chat completion request, an infuse extension that
OpenAI clients never send): the question, the answer, the model that gave it and its citations and
sources, as the caller saw them (the caller's own retrieval, so nothing they may not read).

Layout: ``WS/conversations/<user key>/<id>.json``, one file per conversation, written atomically.
The user key is a hash of the user name (names may hold characters a file name may not), and an id
is checked against :data:`ID_PATTERN` before it touches a path. A user reads and deletes only their
own conversations: there is no call that takes someone else's name.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infuse.errors import InfuseError
from infuse.files import utc_now, write_json_atomic

CONVERSATIONS_DIR = "conversations"
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{6,64}$")
TITLE_CHARS = 80
MAX_MESSAGES = 400  # per conversation; the oldest are dropped past it (a chat is not an archive)


class ConversationError(InfuseError):
    http_status = 400


@dataclass(frozen=True)
class ConversationSummary:
    id: str
    title: str
    updated: str
    messages: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "updated": self.updated, "messages": self.messages}


def check_id(conversation_id: str) -> str:
    if not ID_PATTERN.match(conversation_id):
        raise ConversationError(
            f"conversation id {conversation_id[:80]!r} is not valid: use 6-64 letters, digits, '-' or '_'"
        )
    return conversation_id


class ConversationStore:
    """``WS/conversations``: each user's conversations (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()  # one writer at a time per process (appends read, then write)

    @classmethod
    def in_workspace(cls, workspace_path: Path) -> ConversationStore:
        return cls(Path(workspace_path) / CONVERSATIONS_DIR)

    def _folder(self, user: str) -> Path:
        return self.root / hashlib.sha256(user.encode("utf-8")).hexdigest()[:32]

    def _path(self, user: str, conversation_id: str) -> Path:
        return self._folder(user) / f"{check_id(conversation_id)}.json"

    def get(self, user: str, conversation_id: str) -> dict[str, Any] | None:
        """The conversation (``{"id", "title", "created", "updated", "messages"}``) or None."""
        try:
            data: dict[str, Any] = json.loads(self._path(user, conversation_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data

    def list(self, user: str, limit: int = 100) -> builtins.list[ConversationSummary]:
        """The user's conversations, the most recently updated first."""
        folder = self._folder(user)
        if not folder.is_dir():
            return []
        found = []
        for path in folder.glob("*.json"):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            found.append(ConversationSummary(data["id"], data["title"], data["updated"], len(data["messages"])))
        found.sort(key=lambda c: c.updated, reverse=True)
        return found[:limit]

    def append(self, user: str, conversation_id: str, messages: builtins.list[dict[str, Any]]) -> None:
        """Add ``messages`` (each ``{"role", "content", ...}``) to the conversation, creating it."""
        path = self._path(user, conversation_id)
        with self._lock:
            data = self.get(user, conversation_id)
            now = utc_now()
            if data is None:
                first = next((m["content"] for m in messages if m.get("role") == "user"), "")
                title = " ".join(first.split())[:TITLE_CHARS] or conversation_id
                data = {"id": conversation_id, "title": title, "created": now, "messages": []}
            data["messages"] = [*data["messages"], *({**m, "at": now} for m in messages)][-MAX_MESSAGES:]
            data["updated"] = now
            write_json_atomic(path, data)

    def delete(self, user: str, conversation_id: str) -> bool:
        path = self._path(user, conversation_id)
        with self._lock:
            existed = path.exists()
            path.unlink(missing_ok=True)
        return existed


__all__ = ["ConversationError", "ConversationStore", "ConversationSummary", "check_id"]
