"""The workspace's users, groups, API keys and sign-in sessions, in ``WS/identity.db``.

Why SQLite through the standard library: several processes share a workspace (the server, a CLI
adding a user while it runs), and SQLite gives them transactions and locking in one file with
nothing to install. WAL mode lets the server read while the CLI writes; every write is one
``BEGIN IMMEDIATE`` transaction, so two processes adding users at once both succeed.

Changes take effect at once, also for keys the server has already checked. argon2 verification
costs tens of milliseconds, so successful verifications are cached in the process, keyed by the
SHA-256 of the key; every change that could affect a signed-in caller (a key rotated or revoked, a
user removed, disabled or made admin, a membership changed) increments a revision counter in the
database in the same transaction, and :meth:`IdentityStore.authenticate_key` reads that counter
(one indexed read) on every call and empties its cache when it moved, whichever process made the
change. Sessions are read from the database on every request, so they follow changes too;
rotating or revoking a user's keys, disabling or removing the user also ends their sessions.

Who may administer is not decided here: :class:`~infuse.access.Caller` carries ``admin`` and the
server checks it. This module keeps one rule itself: the last enabled admin cannot be removed,
disabled or demoted, so a workspace that has an admin keeps one.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infuse.access import EVERYONE, Caller, check_name
from infuse.config import AuthSettings, Settings
from infuse.files import utc_now
from infuse.identity import keys as keys_
from infuse.identity import schema
from infuse.identity.errors import (
    AuthenticationError,
    IdentityNotFoundError,
    LastAdminError,
    NameTakenError,
    UnknownGroupError,
    UnknownUserError,
    known_list,
)

DB_NAME = "identity.db"
MAX_CACHED_KEYS = 10_000  # the key cache is emptied when it reaches this many entries
MAX_FAILURE_RECORDS = 10_000  # failed-auth records kept in the database (the newest)


@dataclass(frozen=True)
class UserInfo:
    """A user as ``users list`` shows it (no key material: ``keys`` is how many API keys work)."""

    name: str
    admin: bool
    groups: tuple[str, ...]
    keys: int
    created: str
    disabled: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "admin": self.admin,
            "groups": list(self.groups),
            "keys": self.keys,
            "created": self.created,
            "disabled": self.disabled,
        }


@dataclass(frozen=True)
class GroupInfo:
    name: str
    members: tuple[str, ...]
    created: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "members": list(self.members), "created": self.created}


@dataclass(frozen=True)
class Session:
    """A web sign-in: the session token (the cookie's value) and the CSRF token the page sends back.

    Both are shown only here; the database keeps their SHA-256 digests. ``expires`` is a Unix time.
    """

    token: str
    csrf: str
    user: str
    expires: float

    @property
    def max_age(self) -> int:
        """Seconds left, for the cookie's ``Max-Age``."""
        return max(0, int(self.expires - time.time()))


class IdentityStore:
    """Users, groups, memberships, API keys and sessions of one workspace (thread-safe; one per process is enough)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, settings: AuthSettings) -> None:
        self.path = path
        self.workspace = path.parent
        self.settings = settings
        self._conn = conn
        self._lock = threading.RLock()
        self._hasher = keys_.make_hasher(settings)
        self._dummy_hash: str | None = None
        self._cache: dict[str, Caller] = {}
        self._cache_revision = -1
        self.verifications = 0  # argon2 verifications done (cache misses that reached a key row)

    # --- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(cls, workspace_path: Path, create: bool = False, *, settings: AuthSettings | None = None) -> IdentityStore:
        """The identity database of the workspace at ``workspace_path`` (``create``: make it when missing).

        An older database is migrated; a newer one is refused. ``settings`` default to the
        workspace's ``[auth]`` settings (``infuse.toml``, ``INFUSE_AUTH__*``).
        """
        workspace_path = Path(workspace_path)
        path = workspace_path / DB_NAME
        if not path.exists():
            if not create:
                raise IdentityNotFoundError(
                    f"no users in {workspace_path} yet ({path} does not exist); add the first admin with "
                    f"`infuse -w {workspace_path} users add NAME --admin`"
                )
            workspace_path.mkdir(parents=True, exist_ok=True)
        conn = schema.connect(path)
        try:
            schema.migrate(conn, path)
        except BaseException:
            conn.close()
            raise
        return cls(path, conn, settings or Settings.load(workspace_path).auth)

    @staticmethod
    def exists(workspace_path: Path) -> bool:
        """Whether the workspace has an identity database (a user was ever added)."""
        return (Path(workspace_path) / DB_NAME).exists()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> IdentityStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- users -----------------------------------------------------------------------------------

    def add_user(self, name: str, *, admin: bool = False, groups: Iterable[str] = ()) -> str:
        """Add a user (in ``groups``, which must exist); returns their API key, which is not stored and shown once."""
        check_name(name, "user name")
        groups = list(dict.fromkeys(groups))
        for group in groups:
            check_name(group, "group name")
        key = keys_.new_key(self._hasher)  # hashed before the transaction: no lock held for tens of ms
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise NameTakenError(
                    f"user {name!r} exists in {self.path}; `infuse -w {self.workspace} users keys {name} --rotate` "
                    "gives them a new key"
                )
            group_ids = [self._group_id(conn, group) for group in groups]
            user_id = conn.execute(
                "INSERT INTO users (name, admin, created) VALUES (?, ?, ?)", (name, int(admin), utc_now())
            ).lastrowid
            conn.executemany(
                "INSERT INTO memberships (group_id, user_id) VALUES (?, ?)", [(g, user_id) for g in group_ids]
            )
            self._insert_key(conn, user_id, key)
        return key.key

    def remove_user(self, name: str) -> None:
        """Remove a user with their keys, sessions and memberships (refused for the last enabled admin)."""
        with self._write() as conn:
            user_id = self._user_id(conn, name)
            self._keep_an_admin(conn, user_id, f"remove {name!r}")
            conn.execute("DELETE FROM users WHERE id = ?", (user_id,))

    def list_users(self) -> list[UserInfo]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT u.id, u.name, u.admin, u.created, u.disabled, "
                "(SELECT count(*) FROM api_keys k WHERE k.user_id = u.id) FROM users u ORDER BY u.name"
            ).fetchall()
            groups = self._groups_by_user(self._conn)
        return [
            UserInfo(name, bool(admin), groups.get(uid, ()), n_keys, created, bool(disabled))
            for uid, name, admin, created, disabled, n_keys in rows
        ]

    def user(self, name: str) -> UserInfo:
        """One user (:class:`UnknownUserError` listing the known ones when there is none)."""
        with self._lock:
            self._user_id(self._conn, name)  # raises, naming the known users
        return next(info for info in self.list_users() if info.name == name)

    def rotate_key(self, name: str) -> str:
        """Replace the user's keys by a new one (returned, shown once); the old ones and their sessions stop at once."""
        key = keys_.new_key(self._hasher)
        with self._write() as conn:
            user_id = self._user_id(conn, name)
            self._drop_keys_and_sessions(conn, user_id)
            self._insert_key(conn, user_id, key)
        return key.key

    def revoke_keys(self, name: str) -> None:
        """Delete the user's keys and end their sessions; they cannot sign in until a key is rotated in."""
        with self._write() as conn:
            self._drop_keys_and_sessions(conn, self._user_id(conn, name))

    def set_admin(self, name: str, admin: bool) -> None:
        with self._write() as conn:
            user_id = self._user_id(conn, name)
            if not admin:
                self._keep_an_admin(conn, user_id, f"take admin from {name!r}")
            conn.execute("UPDATE users SET admin = ? WHERE id = ?", (int(admin), user_id))

    def set_disabled(self, name: str, disabled: bool) -> None:
        """Disable (keys and sessions refused, kept for later) or enable a user."""
        with self._write() as conn:
            user_id = self._user_id(conn, name)
            if disabled:
                self._keep_an_admin(conn, user_id, f"disable {name!r}")
                conn.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
            conn.execute("UPDATE users SET disabled = ? WHERE id = ?", (int(disabled), user_id))

    def caller(self, name: str) -> Caller:
        """The :class:`Caller` a user's requests carry (their groups and admin flag, read now)."""
        with self._lock:
            user_id = self._user_id(self._conn, name)
            admin = self._conn.execute("SELECT admin FROM users WHERE id = ?", (user_id,)).fetchone()[0]
            return self._caller(self._conn, user_id, name, admin)

    # --- groups ----------------------------------------------------------------------------------

    def add_group(self, name: str) -> None:
        check_name(name, "group name")
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM groups WHERE name = ?", (name,)).fetchone():
                raise NameTakenError(f"group {name!r} exists in {self.path}")
            conn.execute("INSERT INTO groups (name, created) VALUES (?, ?)", (name, utc_now()))

    def remove_group(self, name: str) -> None:
        """Remove a group and its memberships (access lists naming it then match nobody)."""
        with self._write() as conn:
            conn.execute("DELETE FROM groups WHERE id = ?", (self._group_id(conn, name),))

    def list_groups(self) -> list[GroupInfo]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT g.name, g.created, u.name FROM groups g LEFT JOIN memberships m ON m.group_id = g.id "
                "LEFT JOIN users u ON u.id = m.user_id ORDER BY g.name, u.name"
            ).fetchall()
        found: dict[str, tuple[str, list[str]]] = {}
        for group, created, user in rows:
            members = found.setdefault(group, (created, []))[1]
            if user is not None:
                members.append(user)
        return [GroupInfo(name, tuple(members), created) for name, (created, members) in found.items()]

    def add_member(self, group: str, user: str) -> bool:
        """Put ``user`` in ``group``; False when they already were."""
        with self._write() as conn:
            added = conn.execute(
                "INSERT OR IGNORE INTO memberships (group_id, user_id) VALUES (?, ?)",
                (self._group_id(conn, group), self._user_id(conn, user)),
            ).rowcount
        return bool(added)

    def remove_member(self, group: str, user: str) -> bool:
        """Take ``user`` out of ``group``; False when they were not in it."""
        with self._write() as conn:
            removed = conn.execute(
                "DELETE FROM memberships WHERE group_id = ? AND user_id = ?",
                (self._group_id(conn, group), self._user_id(conn, user)),
            ).rowcount
        return bool(removed)

    def members(self, group: str) -> list[str]:
        with self._lock:
            group_id = self._group_id(self._conn, group)
            rows = self._conn.execute(
                "SELECT u.name FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.group_id = ? ORDER BY u.name",
                (group_id,),
            ).fetchall()
        return [name for (name,) in rows]

    def known_principals(self) -> set[str]:
        """Every ``user:X`` and ``group:Y`` that exists, and ``everyone`` (what an access list may name)."""
        with self._lock:
            users = self._conn.execute("SELECT name FROM users").fetchall()
            groups = self._conn.execute("SELECT name FROM groups").fetchall()
        return {EVERYONE, *(f"user:{n}" for (n,) in users), *(f"group:{n}" for (n,) in groups)}

    # --- API keys ---------------------------------------------------------------------------------

    def authenticate_key(self, key: str) -> Caller | None:
        """The caller an API key belongs to, or None (malformed, unknown, rotated, revoked, disabled user).

        Warm (this key verified before and nothing changed since): one read of the revision
        counter and a dictionary lookup. Cold: one indexed read and one argon2 verification.
        """
        key_id = keys_.key_id_of(key)
        if key_id is None:
            return None
        cache_key = keys_.digest(key)  # the cache holds digests, never keys
        with self._lock:
            revision = self._revision(self._conn)
            if revision != self._cache_revision:
                self._cache.clear()
                self._cache_revision = revision
            cached = self._cache.get(cache_key)
            if cached is not None:
                return cached
            row = self._conn.execute(
                "SELECT k.hash, u.id, u.name, u.admin, u.disabled FROM api_keys k JOIN users u ON u.id = k.user_id "
                "WHERE k.key_id = ?",
                (key_id,),
            ).fetchone()
        if row is None:
            keys_.verify_key(self._hasher, self._dummy(), key)  # an unknown key id costs as long as a wrong secret
            return None
        stored_hash, user_id, name, admin, disabled = row
        self.verifications += 1
        if not keys_.verify_key(self._hasher, stored_hash, key) or disabled:
            return None
        with self._lock:
            caller = self._caller(self._conn, user_id, name, admin)
            if self._cache_revision == revision:  # a change since we read the row would make this entry stale
                if len(self._cache) >= MAX_CACHED_KEYS:
                    self._cache.clear()
                self._cache[cache_key] = caller
        if self._hasher.check_needs_rehash(stored_hash):  # [auth] key_hash_* changed since this key was made
            with self._write(bump=False) as conn:
                conn.execute("UPDATE api_keys SET hash = ? WHERE key_id = ?", (self._hasher.hash(key), key_id))
        return caller

    # --- sessions -----------------------------------------------------------------------------------

    def create_session(self, key: str) -> Session:
        """Sign in with an API key: a new session (token and CSRF token) that expires after ``[auth] session_hours``.

        The server sets the token as a cookie with ``HttpOnly``, ``Secure`` (when served over
        HTTPS), ``SameSite=Strict``, ``Path=/`` and ``Max-Age`` = :attr:`Session.max_age`, and gives
        the page the CSRF token to send back in a header on every state-changing request.
        """
        caller = self.authenticate_key(key)
        if caller is None:
            raise AuthenticationError("the API key is not valid (unknown, rotated or revoked, or its user is disabled)")
        token, csrf = keys_.new_token(), keys_.new_token()
        now = time.time()
        expires = now + self.settings.session_hours * 3600
        with self._write(bump=False) as conn:
            row = conn.execute("SELECT id FROM users WHERE name = ?", (caller.name,)).fetchone()
            if row is None:  # removed between the two statements
                raise AuthenticationError(f"user {caller.name!r} no longer exists")
            conn.execute("DELETE FROM sessions WHERE expires <= ?", (now,))
            conn.execute(
                "INSERT INTO sessions (token_hash, user_id, csrf_hash, created, expires) VALUES (?, ?, ?, ?, ?)",
                (keys_.digest(token), row[0], keys_.digest(csrf), now, expires),
            )
        return Session(token, csrf, caller.name, expires)

    def session_caller(self, token: str) -> Caller | None:
        """The caller of a live session (not expired, user enabled), read now; None otherwise."""
        with self._lock:
            row = self._conn.execute(
                "SELECT u.id, u.name, u.admin FROM sessions s JOIN users u ON u.id = s.user_id "
                "WHERE s.token_hash = ? AND s.expires > ? AND u.disabled = 0",
                (keys_.digest(token), time.time()),
            ).fetchone()
            return self._caller(self._conn, *row) if row else None

    def check_csrf(self, token: str, csrf: str) -> bool:
        """Whether ``csrf`` is the CSRF token of the live session ``token`` (constant-time comparison)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT s.csrf_hash FROM sessions s JOIN users u ON u.id = s.user_id "
                "WHERE s.token_hash = ? AND s.expires > ? AND u.disabled = 0",
                (keys_.digest(token), time.time()),
            ).fetchone()
        return keys_.same_digest(csrf, row[0]) if row else False

    def end_session(self, token: str) -> bool:
        """Sign out; False when there was no such session."""
        with self._write(bump=False) as conn:
            return bool(conn.execute("DELETE FROM sessions WHERE token_hash = ?", (keys_.digest(token),)).rowcount)

    # --- failed authentications ---------------------------------------------------------------------

    def record_failure(self, address: str, reason: str, key: str | None = None) -> None:
        """Keep a record of a failed authentication (the key's id only, never the key); the newest are kept."""
        key_id = keys_.key_id_of(key) if key else None
        with self._write(bump=False) as conn:
            conn.execute(
                "INSERT INTO auth_failures (time, address, key_id, reason) VALUES (?, ?, ?, ?)",
                (utc_now(), address[:200], key_id, reason[:200]),
            )
            conn.execute(
                "DELETE FROM auth_failures WHERE id <= (SELECT max(id) FROM auth_failures) - ?", (MAX_FAILURE_RECORDS,)
            )

    def failures(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest failed-authentication records, newest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT time, address, key_id, reason FROM auth_failures ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [{"time": t, "address": a, "key_id": k, "reason": r} for t, a, k, r in rows]

    # --- internals ------------------------------------------------------------------------------------

    @contextmanager
    def _write(self, bump: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``bump``: the change may affect signed-in callers (empties every key cache)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                if bump:
                    self._conn.execute("UPDATE revision SET value = value + 1 WHERE id = 1")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    @staticmethod
    def _revision(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT value FROM revision WHERE id = 1").fetchone()[0])

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = keys_.new_key(self._hasher).hash
        return self._dummy_hash

    def _user_id(self, conn: sqlite3.Connection, name: str) -> int:
        row = conn.execute("SELECT id FROM users WHERE name = ?", (name,)).fetchone()
        if row is None:
            known = [n for (n,) in conn.execute("SELECT name FROM users ORDER BY name")]
            raise UnknownUserError(f"no user {name!r} in {self.path}; {known_list(known, 'users')}")
        return int(row[0])

    def _group_id(self, conn: sqlite3.Connection, name: str) -> int:
        row = conn.execute("SELECT id FROM groups WHERE name = ?", (name,)).fetchone()
        if row is None:
            known = [n for (n,) in conn.execute("SELECT name FROM groups ORDER BY name")]
            raise UnknownGroupError(
                f"no group {name!r} in {self.path}; {known_list(known, 'groups')}. "
                f"Add it with `infuse -w {self.workspace} groups add {name}`"
            )
        return int(row[0])

    def _keep_an_admin(self, conn: sqlite3.Connection, user_id: int, change: str) -> None:
        """Refuse a change that takes away the last enabled admin."""
        admins = [i for (i,) in conn.execute("SELECT id FROM users WHERE admin = 1 AND disabled = 0")]
        if admins == [user_id]:
            raise LastAdminError(
                f"cannot {change}: they are the last admin of {self.workspace}; make another user admin first "
                f"(`infuse -w {self.workspace} users set NAME --admin`)"
            )

    def _drop_keys_and_sessions(self, conn: sqlite3.Connection, user_id: int) -> None:
        conn.execute("DELETE FROM api_keys WHERE user_id = ?", (user_id,))
        conn.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))

    @staticmethod
    def _insert_key(conn: sqlite3.Connection, user_id: int | None, key: keys_.NewKey) -> None:
        conn.execute(
            "INSERT INTO api_keys (key_id, user_id, hash, created) VALUES (?, ?, ?, ?)",
            (key.key_id, user_id, key.hash, utc_now()),
        )

    @staticmethod
    def _groups_by_user(conn: sqlite3.Connection, user_id: int | None = None) -> dict[int, tuple[str, ...]]:
        sql = "SELECT m.user_id, g.name FROM memberships m JOIN groups g ON g.id = m.group_id"
        rows = (
            conn.execute(sql + " WHERE m.user_id = ? ORDER BY g.name", (user_id,))
            if user_id is not None
            else (conn.execute(sql + " ORDER BY g.name"))
        )
        found: dict[int, list[str]] = {}
        for uid, group in rows:
            found.setdefault(uid, []).append(group)
        return {uid: tuple(groups) for uid, groups in found.items()}

    def _caller(self, conn: sqlite3.Connection, user_id: int, name: str, admin: int) -> Caller:
        return Caller(name, groups=self._groups_by_user(conn, user_id).get(user_id, ()), admin=bool(admin))
