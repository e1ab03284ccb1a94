"""User-facing errors: each message names the file, field or value at fault and says what to do."""

from __future__ import annotations


class InfuseError(Exception):
    """Base class for errors the CLI prints as a one-line message instead of a traceback."""


class ConfigError(InfuseError):
    """infuse.toml, an environment variable or a flag has a bad value."""


class LoadError(InfuseError):
    """A source file cannot be turned into a document (unreadable, binary, corrupt, empty...)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class EmbedderMismatchError(InfuseError):
    """The knowledge base was built with another embedder than the configured one."""


class WorkspaceBusyError(InfuseError):
    """Another process holds the workspace's write lock (an ingest or reindex is running)."""


class WorkspaceNotFoundError(InfuseError):
    """A read-only command was pointed at a folder that is not an infuse workspace."""
