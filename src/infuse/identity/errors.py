"""Errors of users, groups, keys and sign-in: each says which name or value is at fault and what to do.

They are :class:`~infuse.errors.InfuseError` subclasses, so the CLI exits with their ``exit_code``
and the server answers their ``http_status`` without a case of its own: an unknown user is 404, a
name that exists or the last admin is a conflict (409), a bad key 401, too many failures 429.
"""

from __future__ import annotations

from collections.abc import Sequence

from infuse.errors import InfuseError


class IdentityError(InfuseError):
    """Something about users, groups, keys or sessions is wrong (bad input unless a subclass says otherwise)."""


class IdentityNotFoundError(IdentityError):
    """The workspace has no identity database yet (no user was ever added)."""

    http_status = 404


class IdentityDatabaseError(IdentityError):
    """The identity database cannot be used: written by a newer infuse, or not an identity database."""

    http_status = 500  # the server's own state, not the request


class UnknownUserError(IdentityError):
    http_status = 404


class UnknownGroupError(IdentityError):
    http_status = 404


class NameTakenError(IdentityError):
    http_status = 409


class LastAdminError(IdentityError):
    """The change would leave the workspace without an enabled admin."""

    http_status = 409


class AuthenticationError(IdentityError):
    """A key or session is missing, malformed, unknown, revoked, expired or belongs to a disabled user."""

    http_status = 401


class TooManyFailuresError(IdentityError):
    """A client address failed to authenticate too often; ``retry_after`` says when it may try again."""

    http_status = 429

    def __init__(self, address: str, retry_after: float) -> None:
        self.address = address
        self.retry_after = max(1, int(retry_after + 0.999))  # whole seconds, for a Retry-After header
        super().__init__(
            f"too many failed sign-ins from {address}; try again in {self.retry_after} s "
            "(limits: [auth] max_failures, failure_window, block_seconds)"
        )


def known_list(names: Sequence[str], what: str, most: int = 20) -> str:
    """``known users: alice, bob`` (at most ``most`` names, then how many more), or ``no users yet``."""
    if not names:
        return f"no {what} yet"
    shown = ", ".join(names[:most])
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return f"known {what}: {shown}{more}"
