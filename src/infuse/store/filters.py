"""A typed filter language for retrieval: equals, any-of, all-of.

Why typed: a filter that only says "equals" cannot say "any of the user's groups", which is what
an access list needs, and a dict of strings cannot say which kind of match is meant. Every store
translates the same three shapes (LanceDB to SQL, the in-memory store to Python via
:func:`matches`), so the store contract suite can check them the same way for every engine.

Fields are chunk columns (:data:`CHUNK_FIELDS`), the chunk's access list (:data:`ACCESS_FIELD`) or
anything else, which is a key of the document's metadata. A field that holds a list (the access
list) matches ``Eq`` when it contains the value and ``AnyOf`` when it shares any value.

>>> f = AllOf((Eq("lang", "ja"), AnyOf("access", ("group:legal", "user:alice"))))
>>> matches(f, {"lang": "ja", "access": ("group:legal",)})
True
>>> matches(f, {"lang": "ja", "access": ("group:sales",)})
False
>>> as_filter({"lang": "en", "team": "infra"})
AllOf(clauses=(Eq(field='lang', value='en'), Eq(field='team', value='infra')))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

FilterValue = str | int | float | bool

# Filter fields that are columns of every chunk; any other field filters on document metadata.
CHUNK_FIELDS = ("doc_id", "source_path", "lang", "file_type", "page")
ACCESS_FIELD = "access"


@dataclass(frozen=True)
class Eq:
    """``field`` equals ``value`` (a list field: contains it)."""

    field: str
    value: FilterValue


@dataclass(frozen=True)
class AnyOf:
    """``field`` equals one of ``values`` (a list field: shares one of them). No values: nothing matches."""

    field: str
    values: tuple[FilterValue, ...]

    def __init__(self, field: str, values: Sequence[FilterValue]) -> None:
        object.__setattr__(self, "field", field)
        object.__setattr__(self, "values", tuple(values))


@dataclass(frozen=True)
class AllOf:
    """Every clause holds (an empty ``AllOf`` matches everything)."""

    clauses: tuple[Filter, ...]

    def __init__(self, clauses: Sequence[Filter]) -> None:
        object.__setattr__(self, "clauses", tuple(clauses))


Filter = Eq | AnyOf | AllOf
# What callers may pass: a typed filter, or ``{"field": value}`` meaning all of those equalities.
FilterLike = Filter | Mapping[str, FilterValue] | None


def as_filter(filters: FilterLike) -> Filter | None:
    """A typed filter from a typed filter, a ``{field: value}`` mapping (all must be equal) or None."""
    if filters is None or isinstance(filters, (Eq, AnyOf, AllOf)):
        return filters
    if not filters:
        return None
    return AllOf(tuple(Eq(key, value) for key, value in filters.items()))


def combine(*filters: FilterLike) -> Filter | None:
    """All of the given filters (None and empty ones are left out)."""
    typed = [f for f in (as_filter(f) for f in filters) if f is not None]
    if not typed:
        return None
    return typed[0] if len(typed) == 1 else AllOf(typed)


def _field_value(row: Mapping[str, Any], field: str) -> Any:
    if field in CHUNK_FIELDS or field == ACCESS_FIELD:
        return row.get(field)
    metadata = row.get("metadata") or {}
    return metadata.get(field)


def _same(stored: Any, wanted: FilterValue) -> bool:
    # Metadata values compare as the strings they are filtered by (a year 2024 matches "2024").
    if isinstance(stored, bool) or isinstance(wanted, bool):
        return str(stored).lower() == str(wanted).lower()
    if isinstance(stored, (int, float)) and isinstance(wanted, (int, float)):
        return stored == wanted
    return str(stored) == str(wanted)


def _holds(stored: Any, wanted: Sequence[FilterValue]) -> bool:
    if stored is None:
        return False
    if isinstance(stored, (list, tuple, set, frozenset)):
        return any(_same(s, w) for s in stored for w in wanted)
    return any(_same(stored, w) for w in wanted)


def matches(filter_: Filter | None, row: Mapping[str, Any]) -> bool:
    """Whether a chunk (as a mapping of its fields, metadata under ``"metadata"``) passes the filter.

    The reference semantics: stores that compile filters to their own query language must agree
    with this (the store contract suite checks it).
    """
    if filter_ is None:
        return True
    if isinstance(filter_, Eq):
        return _holds(_field_value(row, filter_.field), (filter_.value,))
    if isinstance(filter_, AnyOf):
        return _holds(_field_value(row, filter_.field), filter_.values)
    return all(matches(clause, row) for clause in filter_.clauses)
