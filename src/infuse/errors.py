"""User-facing errors: each message names the file, field or value at fault and says what to do.

Each class carries how it is reported, so the CLI and the HTTP server map it the same way:
``exit_code`` (the CLI's exit status) and ``http_status`` (the server's response status). A
subclass that means something else (a busy workspace is not bad input) overrides them; a new
error picks the closest class instead of adding a case to the CLI or the server.

=====================================  =========  ===========
error                                  exit code  HTTP status
=====================================  =========  ===========
InfuseError (bad input, the default)   1          400
ConfigError, LoadError                 1          400
WorkspaceNotFoundError                 1          404
WorkspaceBusyError                     1          409
EmbedderMismatchError                  1          409
models.ModelServerError                1          502
=====================================  =========  ===========
"""

from __future__ import annotations

from typing import ClassVar


class InfuseError(Exception):
    """Base class for errors the CLI prints as a one-line message instead of a traceback."""

    exit_code: ClassVar[int] = 1  # the CLI exits with this status
    http_status: ClassVar[int] = 400  # the server answers with this status (bad input unless overridden)


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

    http_status = 409  # the request is fine; the knowledge base's state conflicts with it (reindex)


class WorkspaceBusyError(InfuseError):
    """Another process holds the workspace's write lock (an ingest or reindex is running)."""

    http_status = 409  # not the caller's fault: retry when the other writer is done


class WorkspaceNotFoundError(InfuseError):
    """A read-only command was pointed at a folder that is not an infuse workspace."""

    http_status = 404


class UpstreamError(InfuseError):
    """A server infuse relies on (e.g. an OpenAI-compatible model server) failed or cannot be reached."""

    http_status = 502  # infuse acts as a gateway here: the fault is behind it, not in the request
