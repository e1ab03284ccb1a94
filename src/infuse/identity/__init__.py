"""Identity: who may use a workspace's server. Users, groups, API keys, sign-in sessions, failed-auth limits.

Stored in ``WS/identity.db`` (SQLite, :mod:`~infuse.identity.store`); keys are kept only as
argon2 hashes (:mod:`~infuse.identity.keys`); a signed-in user is an :class:`infuse.access.Caller`,
the one thing the store's access prefilter and the server need. This package knows nothing about
HTTP: the server turns a header or cookie into :meth:`IdentityStore.authenticate_key` or
:meth:`IdentityStore.session_caller`, and a failure into the :class:`FailedAuthLimiter`.
"""

from infuse.identity.errors import (
    AuthenticationError,
    IdentityDatabaseError,
    IdentityError,
    IdentityNotFoundError,
    LastAdminError,
    NameTakenError,
    TooManyFailuresError,
    UnknownGroupError,
    UnknownUserError,
)
from infuse.identity.limiter import FailedAuthLimiter
from infuse.identity.store import DB_NAME, GroupInfo, IdentityStore, Session, UserInfo

__all__ = [
    "DB_NAME",
    "AuthenticationError",
    "FailedAuthLimiter",
    "GroupInfo",
    "IdentityDatabaseError",
    "IdentityError",
    "IdentityNotFoundError",
    "IdentityStore",
    "LastAdminError",
    "NameTakenError",
    "Session",
    "TooManyFailuresError",
    "UnknownGroupError",
    "UnknownUserError",
    "UserInfo",
]
