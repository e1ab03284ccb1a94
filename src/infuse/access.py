"""Who may read a document: access lists, callers, and the one encoding both share.

Why one small module below everything else: the store filters on it, ingest writes it, the server
derives it from a signed-in user, and the fine-tuning registry records it; all must agree on what
``group:legal`` means. Nothing here knows about users in a database (identity) or SQL (stores).

Principals are ``user:NAME``, ``group:NAME`` or ``everyone``. A document's access list allows some
principals and denies others; **deny overrides allow**. It is stored in every chunk's ``access``
column as plain strings: allowed principals as they are, denied ones prefixed ``deny:``. A document
*without* a list stores :data:`DEFAULT` alone, so the default policy (who may read unlisted
documents) is decided when a question is asked, not baked in at ingest: with the policy
``everyone`` every caller's principals include :data:`DEFAULT`; with ``admins`` they do not.
Admins read everything (they administer the documents).

A caller may read a chunk when its column shares a principal with the caller's
:meth:`Caller.principals` and contains none of :meth:`Caller.denials`. Stores apply exactly that as a
prefilter on both the dense and the keyword list (``AnyOf`` + ``NoneOf`` on ``access``).

>>> AccessList.parse(["group:legal", "user:bob", "deny:user:eve"]).to_column()
('group:legal', 'user:bob', 'deny:user:eve')
>>> AccessList().to_column()
('default',)
>>> alice = Caller("alice", groups=("legal",))
>>> alice.may_read(("group:legal", "deny:user:eve"), DefaultPolicy.ADMINS)
True
>>> Caller("eve", groups=("legal",)).may_read(("group:legal", "deny:user:eve"), DefaultPolicy.ADMINS)
False
>>> alice.may_read(("default",), DefaultPolicy.EVERYONE), alice.may_read(("default",), DefaultPolicy.ADMINS)
(True, False)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from infuse.errors import InfuseError

EVERYONE = "everyone"
DEFAULT = "default"  # the column of a document without an access list
DENY_PREFIX = "deny:"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class AccessError(InfuseError):
    """An access entry, list or file is malformed, or names an unknown user or group (HTTP 400)."""


class DefaultPolicy(StrEnum):
    """Who may read a document that has no access list."""

    EVERYONE = "everyone"
    ADMINS = "admins"


def check_name(name: str, what: str = "name") -> str:
    """`name` when it is a valid user or group name (letters, digits, ``. _ @ -``; 64 at most)."""
    if not _NAME.match(name):
        raise AccessError(
            f"{what} {name!r} is not valid: use letters, digits and . _ @ - (at most 64, starting with a letter or digit)"
        )
    return name


def parse_principal(text: str) -> str:
    """``user:NAME``, ``group:NAME`` or ``everyone``, checked; anything else is an :class:`AccessError`."""
    value = text.strip()
    if value == EVERYONE:
        return value
    kind, _, name = value.partition(":")
    if kind not in ("user", "group") or not name:
        raise AccessError(f"access entry {text!r} is not user:NAME, group:NAME or everyone")
    return f"{kind}:{check_name(name, kind)}"


@dataclass(frozen=True)
class AccessList:
    """Principals allowed to read a document and principals denied (deny wins); empty: the default policy."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AccessList:
        """From entries such as ``group:legal``, ``user:bob``, ``deny:user:eve`` (checked, order kept, no repeats)."""
        allow: list[str] = []
        deny: list[str] = []
        for entry in entries:
            if not isinstance(entry, str):
                raise AccessError(f"access entry {entry!r} is not a string (user:NAME, group:NAME, everyone)")
            target = deny if entry.strip().startswith(DENY_PREFIX) else allow
            principal = parse_principal(entry.strip().removeprefix(DENY_PREFIX))
            if principal not in target:
                target.append(principal)
        return cls(tuple(allow), tuple(deny))

    @classmethod
    def from_column(cls, column: Sequence[str]) -> AccessList:
        """The list a stored ``access`` column encodes."""
        return cls.parse(entry for entry in column if entry != DEFAULT)

    def to_column(self) -> tuple[str, ...]:
        """The stored form: allowed principals, then ``deny:`` ones; ``(DEFAULT,)`` when empty."""
        column = self.allow + tuple(DENY_PREFIX + p for p in self.deny)
        return column or (DEFAULT,)

    @property
    def is_default(self) -> bool:
        return not self.allow and not self.deny

    def principals(self) -> set[str]:
        """Every principal named, allowed or denied."""
        return set(self.allow) | set(self.deny)


@dataclass(frozen=True)
class Caller:
    """Who is asking: a user name, the groups they belong to, and whether they are an admin."""

    name: str
    groups: tuple[str, ...] = ()
    admin: bool = False

    def principals(self, policy: DefaultPolicy) -> tuple[str, ...]:
        """What this caller is, as column entries to match any of."""
        found = [f"user:{self.name}", *(f"group:{g}" for g in self.groups), EVERYONE]
        if policy is DefaultPolicy.EVERYONE:
            found.append(DEFAULT)
        return tuple(found)

    def denials(self) -> tuple[str, ...]:
        """Column entries that shut this caller out (none of them may be present)."""
        return tuple(DENY_PREFIX + p for p in (f"user:{self.name}", *(f"group:{g}" for g in self.groups), EVERYONE))

    def may_read(self, column: Sequence[str], policy: DefaultPolicy) -> bool:
        """Whether a chunk with this ``access`` column is readable (the rule stores apply as a prefilter)."""
        if self.admin:
            return True
        entries = set(column)
        return bool(entries & set(self.principals(policy))) and not entries & set(self.denials())


__all__ = [
    "DEFAULT",
    "DENY_PREFIX",
    "EVERYONE",
    "AccessError",
    "AccessList",
    "Caller",
    "DefaultPolicy",
    "check_name",
    "parse_principal",
]
