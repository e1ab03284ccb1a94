"""A typed filter language for retrieval: equals, any-of, none-of, all-of.

Why typed: a filter that only says "equals" cannot say "any of the user's groups", which is what
an access list needs, and a dict of strings cannot say which kind of match is meant. Every store
translates the same four shapes (LanceDB to SQL, the in-memory store to Python via
:func:`matches`), so the store contract suite can check them the same way for every engine.

Fields are chunk columns (:data:`CHUNK_FIELDS`), the chunk's access list (:data:`ACCESS_FIELD`) or
anything else, which is a key of the document's metadata. A field that holds a list (the access
list) matches ``Eq`` when it contains the value, ``AnyOf`` when it shares any value and ``NoneOf``
when it shares none (a missing value shares none). A caller's access is ``AnyOf`` their principals
and ``NoneOf`` their denials (:func:`access_filter`): stores apply it as a prefilter, so a ranked
list holds ``k`` readable chunks whenever ``k`` exist and nothing is ranked among unreadable ones.

:data:`FILTER_FIELDS` is the schema of the fixed fields (type, allowed values, what a value
means); :func:`validate` checks a filter against it and the knowledge base's metadata keys before
any store sees it, so an unknown key or a value of the wrong type is one clear error for the CLI,
the library and the server alike (and not an engine's SQL error or a silently empty result), and
the CLI's ``--help`` lists the keys from the same table (:func:`filter_keys_help`).

>>> f = AllOf((Eq("lang", "ja"), AnyOf("access", ("group:legal", "user:alice"))))
>>> matches(f, {"lang": "ja", "access": ("group:legal",)})
True
>>> matches(f, {"lang": "ja", "access": ("group:sales",)})
False
>>> as_filter({"lang": "en", "team": "infra"})
AllOf(clauses=(Eq(field='lang', value='en'), Eq(field='team', value='infra')))
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infuse.access import Caller, DefaultPolicy
from infuse.documents.loaders import normalise_path
from infuse.documents.models import FileType
from infuse.errors import InfuseError, LoadError
from infuse.language import Language

FilterValue = str | int | float | bool

# Filter fields that are columns of every chunk; any other field filters on document metadata.
CHUNK_FIELDS = ("doc_id", "source_path", "lang", "file_type", "page")
ACCESS_FIELD = "access"


class FilterError(InfuseError):
    """A filter names an unknown key or gives a key a value of the wrong type (HTTP 400)."""


@dataclass(frozen=True)
class FilterField:
    """One fixed filter key: its value type, the values it allows (empty: any) and what it means."""

    name: str
    kind: type[str] | type[int]
    description: str
    choices: tuple[str, ...] = ()
    is_path: bool = False  # a relative value is resolved like an ingested path (absolute, from the current folder)

    def describe(self) -> str:
        allowed = "|".join(self.choices) if self.choices else ("a whole number" if self.kind is int else "")
        return f"{self.name} ({allowed}: {self.description})" if allowed else f"{self.name} ({self.description})"


# The schema of the fixed filter keys: every chunk column of CHUNK_FIELDS and the access list.
FILTER_FIELDS: tuple[FilterField, ...] = (
    FilterField("doc_id", str, "a document id, as `infuse documents list` shows it"),
    FilterField(
        "source_path", str, "the file; a relative path is taken from the current folder, as ingest does", is_path=True
    ),
    FilterField("lang", str, "the passage's language", tuple(Language)),
    FilterField("file_type", str, "the file's type", tuple(FileType)),
    FilterField("page", int, "the PDF page, from 1"),
    FilterField(ACCESS_FIELD, str, "who may read it: user:NAME or group:NAME"),
)
_SCHEMA = {f.name: f for f in FILTER_FIELDS}


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
class NoneOf:
    """``field`` equals none of ``values`` (a list field: shares none of them; a missing value matches).
    No values: everything matches."""

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


Filter = Eq | AnyOf | NoneOf | AllOf
# What callers may pass: a typed filter, or ``{"field": value}`` meaning all of those equalities.
FilterLike = Filter | Mapping[str, FilterValue] | None


def as_filter(filters: FilterLike) -> Filter | None:
    """A typed filter from a typed filter, a ``{field: value}`` mapping (all must be equal) or None."""
    if filters is None or isinstance(filters, (Eq, AnyOf, NoneOf, AllOf)):
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
    if isinstance(filter_, NoneOf):
        return not _holds(_field_value(row, filter_.field), filter_.values)
    return all(matches(clause, row) for clause in filter_.clauses)


def names_field(filter_: Filter | None, field: str) -> bool:
    """Whether any clause of ``filter_`` is about ``field`` (e.g. whether a search is scoped to
    what one caller may read, so keyword statistics must be too)."""
    if filter_ is None:
        return False
    if isinstance(filter_, AllOf):
        return any(names_field(clause, field) for clause in filter_.clauses)
    return filter_.field == field


def access_filter(caller: Caller, policy: DefaultPolicy) -> Filter | None:
    """The prefilter that leaves ``caller`` exactly the chunks :meth:`Caller.may_read` allows (None for
    an admin, who reads everything): the access column shares one of the caller's principals and
    none of their denials.

    >>> access_filter(Caller("eve", groups=("legal",)), DefaultPolicy.ADMINS)  # doctest: +NORMALIZE_WHITESPACE
    AllOf(clauses=(AnyOf(field='access', values=('user:eve', 'group:legal', 'everyone')),
                   NoneOf(field='access', values=('deny:user:eve', 'deny:group:legal', 'deny:everyone'))))
    >>> access_filter(Caller("root", admin=True), DefaultPolicy.ADMINS) is None
    True
    """
    if caller.admin:
        return None
    return AllOf((AnyOf(ACCESS_FIELD, caller.principals(policy)), NoneOf(ACCESS_FIELD, caller.denials())))


def filter_keys_help() -> str:
    """The filter keys for a command's ``--help`` (generated from :data:`FILTER_FIELDS`)."""
    keys = "; ".join(f.describe() for f in FILTER_FIELDS)
    return f"KEY=VALUE, repeatable (all must hold). Keys: {keys}; or any document metadata key (e.g. a JSONL field)."


def parse_filter_items(items: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings (the CLI's ``--filter``, the server's ``?filter=``) as a filter mapping;
    values stay text until :func:`validate` converts them.

    >>> parse_filter_items(["lang=ja", "source_path=docs/a.md"])
    {'lang': 'ja', 'source_path': 'docs/a.md'}
    """
    filters: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise FilterError(f"filter {item!r}: expected KEY=VALUE, e.g. lang=ja or source_path=docs/a.md")
        filters[key.strip()] = value
    return filters


def _check_value(field: FilterField, value: FilterValue) -> FilterValue:
    """``value`` as the field's type (a whole-number string becomes a number; a path is resolved)."""
    shown = f"{field.name}={value!r}"
    if field.kind is int:
        if isinstance(value, bool) or not (
            isinstance(value, int)
            or (isinstance(value, float) and value.is_integer())
            or (isinstance(value, str) and value.strip().lstrip("-").isdigit())
        ):
            raise FilterError(
                f"filter {shown}: {field.name} is a whole number ({field.description}), e.g. {field.name}=3"
            )
        number = int(value)
        if not -(2**31) <= number < 2**31:  # the column is 32-bit: the engine rejects a larger literal
            raise FilterError(f"filter {shown}: {field.name} must be between {-(2**31)} and {2**31 - 1}")
        return number
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise FilterError(f"filter {shown}: {field.name} is text ({field.description})")
    text = str(value)
    if field.choices and text not in field.choices:
        raise FilterError(f"filter {shown}: {field.name} is one of {', '.join(field.choices)}")
    if field.is_path and text:
        try:
            return normalise_path(Path(text))
        except LoadError as exc:
            raise FilterError(f"filter {shown}: {exc.reason}") from None
    return text


def _check_metadata_value(key: str, value: FilterValue) -> FilterValue:
    if not isinstance(value, (str, int, float, bool)):
        raise FilterError(
            f"filter {key}={value!r}: a metadata value is text, a number or true/false, not {type(value).__name__}"
        )
    return value


def _unknown_key(key: str, metadata_keys: Collection[str]) -> FilterError:
    known = [f.name for f in FILTER_FIELDS]
    close = difflib.get_close_matches(key, [*known, *metadata_keys], n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    metadata = ", ".join(sorted(metadata_keys)) if metadata_keys else "none in this knowledge base"
    return FilterError(
        f"unknown filter key {key!r}.{hint} Filter keys: {', '.join(known)}; document metadata keys: {metadata}"
    )


def validate(filters: FilterLike, metadata_keys: Callable[[], Collection[str]]) -> Filter | None:
    """The filter with every key checked and every value in its key's type, or :class:`FilterError`.

    Fixed keys (:data:`FILTER_FIELDS`) are checked against their type and allowed values; any
    other key must be a document metadata key of the knowledge base (``metadata_keys`` is called
    only when such a key appears). Relative ``source_path`` values become absolute, as ingest
    stores them.

    >>> validate({"page": "3"}, lambda: ())
    AllOf(clauses=(Eq(field='page', value=3),))
    >>> validate({"page": "abc"}, lambda: ())
    Traceback (most recent call last):
    ...
    infuse.store.filters.FilterError: filter page='abc': page is a whole number (the PDF page, from 1), e.g. page=3
    >>> validate(Eq("team", "infra"), lambda: ("team",))
    Eq(field='team', value='infra')
    """
    known_metadata: list[Collection[str]] = []

    def metadata() -> Collection[str]:
        if not known_metadata:
            known_metadata.append(metadata_keys())
        return known_metadata[0]

    def check(filter_: Filter) -> Filter:
        if isinstance(filter_, AllOf):
            return AllOf(tuple(check(clause) for clause in filter_.clauses))
        field = _SCHEMA.get(filter_.field)
        if field is not None:
            convert: Callable[[FilterValue], FilterValue] = lambda v: _check_value(field, v)  # noqa: E731
        elif filter_.field in metadata():
            convert = lambda v: _check_metadata_value(filter_.field, v)  # noqa: E731
        else:
            raise _unknown_key(filter_.field, metadata())
        if isinstance(filter_, Eq):
            return Eq(filter_.field, convert(filter_.value))
        return type(filter_)(filter_.field, tuple(convert(v) for v in filter_.values))

    typed = as_filter(filters)
    return None if typed is None else check(typed)
