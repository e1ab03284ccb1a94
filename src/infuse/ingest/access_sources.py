"""Where a document's access list comes from at ingest: its record, its folder, the command.

Why a resolver of its own: sync only asks "which list does this document carry?" and gets one
answer with one precedence, the same for every loader. A document takes the first of:

1. its JSON/JSONL record's access field (``access`` unless ``--access-field`` renames it), which
   the loader has already put in ``Document.access``;
2. the nearest access file: ``.infuse-access`` in the document's folder, else in its parent, and so
   on up to the filesystem root (subfolders inherit, the nearest file wins, as file-share
   permissions map onto folders; lookups are cached per folder; a file anyone may write is an
   error, never obeyed). TOML::

       allow = ["group:legal", "user:bob"]
       deny = ["user:eve"]

3. the ingest's ``--access`` entries;
4. what is stored for it already (an earlier ``--access`` or ``infuse access set``): when no source
   speaks for a document, re-ingesting it keeps its list, so ``ingest docs`` after
   ``ingest docs/legal --access group:legal`` does not open the legal documents;
5. none: :data:`infuse.access.DEFAULT`, so ``[access] default_policy`` decides at question time.

A malformed access file or an unknown principal (when ``known_principals`` is given: the users and
groups that exist) fails the documents it applies to, each with a message naming the file and the
value; they keep what is stored and the rest of the batch is ingested. A bad ``--access`` entry
fails the whole command before anything is read (:meth:`AccessResolver.for_flag`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from infuse.access import DENY_PREFIX, AccessError, AccessList
from infuse.documents.models import Document

ACCESS_FILE = ".infuse-access"
_FILE_KEYS = ("allow", "deny")


def check_known(access: AccessList, known: Collection[str] | None, where: str) -> AccessList:
    """``access`` when every principal it names exists (``known`` None: not checked)."""
    if known is not None:
        unknown = sorted(access.principals() - set(known))
        if unknown:
            raise AccessError(
                f"{where}: unknown {', '.join(repr(p) for p in unknown)}; create it with `infuse users add` / "
                "`infuse groups add`, or fix the name"
            )
    return access


def read_access_file(path: Path, known: Collection[str] | None = None) -> AccessList:
    """The list an ``.infuse-access`` file gives (TOML ``allow``/``deny`` lists of principals).

    A file anyone may write is refused: the lookup walks up past the folders given to ingest (a
    parent's file governs its subfolders), so a world-writable one (in ``/tmp``, a shared mount)
    would let anyone decide who reads the documents below it."""
    try:
        if path.stat().st_mode & 0o002:
            raise AccessError(
                f"access file {path}: anyone may write it, so it cannot decide who reads documents; "
                f"make it writable by its owner only (chmod o-w {path}) or remove it"
            )
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise AccessError(f"access file {path}: cannot read it ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise AccessError(f'access file {path}: not valid TOML ({exc}); expected allow = ["group:NAME", ...]') from None
    extra = sorted(set(data) - set(_FILE_KEYS))
    if extra:
        raise AccessError(f"access file {path}: unknown key(s) {', '.join(extra)}; only allow and deny lists")
    entries: list[str] = []
    for key in _FILE_KEYS:
        values = data.get(key, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise AccessError(f'access file {path}: {key} = {values!r} is not a list of strings like ["user:bob"]')
        entries += [DENY_PREFIX + v.strip() if key == "deny" else v for v in values]
    try:
        access = AccessList.parse(entries)
    except AccessError as exc:
        raise AccessError(f"access file {path}: {exc}") from None
    return check_known(access, known, f"access file {path}")


@dataclass
class AccessResolver:
    """Gives each ingested document its stored access column (precedence in the module docstring)."""

    flag: AccessList = field(default_factory=AccessList)
    known_principals: Collection[str] | None = None
    _folders: dict[Path, tuple[Path, AccessList | AccessError] | None] = field(default_factory=dict, repr=False)

    @classmethod
    def for_flag(cls, entries: Sequence[str] = (), known_principals: Collection[str] | None = None) -> AccessResolver:
        """A resolver for an ingest's ``--access`` entries (checked now: a bad one is an
        :class:`AccessError` naming it, before any file is read)."""
        try:
            flag = AccessList.parse(entries)
        except AccessError as exc:
            raise AccessError(f"--access: {exc}") from None
        return cls(check_known(flag, known_principals, "--access"), known_principals)

    def resolve(self, document: Document, stored: Sequence[str] = ()) -> Document:
        """``document`` with its access column (``stored``: the column stored for it, if any);
        :class:`AccessError` when the source that applies to it is bad."""
        if document.access:  # from the record's field
            record = document.doc_id
            where = record if record.startswith(document.source_path) else f"{document.source_path} (record {record})"
            check_known(AccessList.from_column(document.access), self.known_principals, f"{where}: access field")
            return document
        found = self._folder(Path(document.source_path).parent)
        if found is not None:
            if isinstance(found[1], AccessError):
                raise found[1]
            return replace(document, access=found[1].to_column())
        if not self.flag.is_default or not stored:
            return replace(document, access=self.flag.to_column())
        return replace(document, access=tuple(stored))

    def governing_file(self, source_path: str) -> Path | None:
        """The access file that decides ``source_path``'s list at the next ingest (None: none does)."""
        found = self._folder(Path(source_path).parent)
        return found[0] if found is not None else None

    def _folder(self, folder: Path) -> tuple[Path, AccessList | AccessError] | None:
        """The nearest access file at or above ``folder`` and its list, or the error reading it."""
        if folder not in self._folders:
            path = folder / ACCESS_FILE
            found: tuple[Path, AccessList | AccessError] | None
            if path.is_file():
                try:
                    found = (path, read_access_file(path, self.known_principals))
                except AccessError as exc:
                    found = (path, exc)
            else:
                found = None if folder.parent == folder else self._folder(folder.parent)
            self._folders[folder] = found
        return self._folders[folder]


__all__ = ["ACCESS_FILE", "AccessResolver", "check_known", "read_access_file"]
