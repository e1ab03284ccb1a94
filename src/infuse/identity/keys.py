"""API keys and session tokens: how they are made, what is stored of them, and how they are checked.

An API key reads ``ifk_<key id>_<secret>``: ``ifk_`` makes a leaked key recognisable (secret
scanners, logs), the key id (16 hex digits) finds the one row to check without scanning, and the
secret is 256 random bits from :mod:`secrets`. The database stores the key id and an **argon2id
hash** of the whole key (``argon2-cffi``), never the key: a copy of ``identity.db`` does not let
anyone sign in. argon2 verification compares in constant time; what infuse compares itself goes
through :func:`hmac.compare_digest`.

Session and CSRF tokens are also 256 random bits; they are stored as SHA-256 digests. A slow hash
protects guessable secrets (passwords); for 256-bit random tokens a digest is enough, and a session
is checked on every request of the web UI.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from infuse.config import AuthSettings

KEY_PREFIX = "ifk_"
_KEY = re.compile(r"^ifk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class NewKey:
    """A freshly made key: the text shown once to its owner, its id, and the hash that is stored."""

    key: str
    key_id: str
    hash: str


def make_hasher(settings: AuthSettings) -> PasswordHasher:
    return PasswordHasher(
        time_cost=settings.key_hash_time_cost,
        memory_cost=settings.key_hash_memory_kib,
        parallelism=settings.key_hash_parallelism,
    )


def new_key(hasher: PasswordHasher) -> NewKey:
    key_id = secrets.token_hex(8)
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return NewKey(key, key_id, hasher.hash(key))


def key_id_of(key: str) -> str | None:
    """The key id of a well-formed key, None for anything else (no database lookup for junk)."""
    match = _KEY.match(key)
    return match.group(1) if match else None


def verify_key(hasher: PasswordHasher, stored_hash: str, key: str) -> bool:
    """Whether ``key`` matches ``stored_hash`` (argon2, constant-time)."""
    try:
        return hasher.verify(stored_hash, key)
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """SHA-256 of a random token, as stored (and as the key cache's key)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def same_digest(token: str, stored: str) -> bool:
    """Whether ``token`` hashes to ``stored``, compared in constant time."""
    return hmac.compare_digest(digest(token), stored)
