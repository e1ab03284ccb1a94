"""The identity database's schema, as numbered migration steps, and opening a connection on it.

Why steps and ``PRAGMA user_version``: a workspace outlives the infuse that created it. Each step
is a list of SQL statements; a database at version *n* gets steps *n+1...* applied in one
``BEGIN IMMEDIATE`` transaction (another process opening it at the same time waits, then finds
it migrated), and ``user_version`` records the result. A database newer than this code is
refused with a clear error instead of being written with a schema it does not know.

A new column or table is a new step appended to :data:`MIGRATIONS`, never an edit of an old one.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from infuse.identity.errors import IdentityDatabaseError

BUSY_TIMEOUT_MS = 10_000  # another process writing (adding a user, migrating) is waited for this long

MIGRATIONS: list[list[str]] = [
    # 1: users, groups, memberships, API keys (hashes only), and the revision counter that tells
    # every process's key cache that something changed.
    [
        """CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            admin INTEGER NOT NULL DEFAULT 0,
            created TEXT NOT NULL
        )""",
        """CREATE TABLE groups (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created TEXT NOT NULL
        )""",
        """CREATE TABLE memberships (
            group_id INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            PRIMARY KEY (group_id, user_id)
        )""",
        "CREATE INDEX memberships_user ON memberships(user_id)",
        """CREATE TABLE api_keys (
            key_id TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            hash TEXT NOT NULL,
            created TEXT NOT NULL
        )""",
        "CREATE INDEX api_keys_user ON api_keys(user_id)",
        "CREATE TABLE revision (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL)",
        "INSERT INTO revision (id, value) VALUES (1, 0)",
    ],
    # 2: disabled users, web sign-in sessions (token and CSRF token hashed), failed-auth records.
    [
        "ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0",
        """CREATE TABLE sessions (
            token_hash TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            csrf_hash TEXT NOT NULL,
            created REAL NOT NULL,
            expires REAL NOT NULL
        )""",
        "CREATE INDEX sessions_user ON sessions(user_id)",
        """CREATE TABLE auth_failures (
            id INTEGER PRIMARY KEY,
            time TEXT NOT NULL,
            address TEXT NOT NULL,
            key_id TEXT,
            reason TEXT NOT NULL
        )""",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL journal, foreign keys on."""
    if not path.exists():
        # The file holds key hashes: readable by its owner only (SQLite gives -wal/-shm the same mode).
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _switch_to_wal(conn)
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL: durable across application crashes, one fsync per checkpoint
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise IdentityDatabaseError(
            f"{path} is not an infuse identity database ({exc}); move it away and add the users again"
        ) from exc
    return conn


def _switch_to_wal(conn: sqlite3.Connection) -> None:
    """``PRAGMA journal_mode = WAL``, retried while another process holds the file: switching the
    journal needs an exclusive lock and SQLite answers "database is locked" at once, without its busy
    handler (two processes opening a new database together both try to switch)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, path: Path, upto: int = SCHEMA_VERSION) -> int:
    """Bring the database to version ``upto`` (default: the newest); returns the version it was at."""
    if version(conn) == upto:
        return upto
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = version(conn)  # again, under the write lock: another process may have migrated meanwhile
        if found > SCHEMA_VERSION:
            raise IdentityDatabaseError(
                f"{path} has identity schema version {found}, but this infuse knows versions up to "
                f"{SCHEMA_VERSION}; upgrade infuse to use this workspace's users"
            )
        for step in MIGRATIONS[found:upto]:
            for statement in step:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {int(upto)}")
        conn.execute("COMMIT")
        return found
    except BaseException:
        conn.execute("ROLLBACK")
        raise
