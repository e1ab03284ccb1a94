"""Which files an ingest reads: folders expanded, and every other entry accounted for.

An ingest must say what it did with every file it met, so discovery sorts each entry below the
given paths into exactly one of: a file to load, skipped (with a reason and a short kind for the
summary, e.g. ``.xlsx`` or ``link leaving the corpus``), or an error (a path given on the command
line that is missing or unsupported). Nothing is opened here: FIFOs and devices are recognised
from ``lstat`` and never read, so they cannot hang an ingest.

Symbolic links are followed only while they stay inside the paths given (the *roots*): a link in
a shared folder that points at ``~/.ssh/id_rsa`` must not make a private file searchable. Links
leaving the roots are skipped unless ``follow_links`` is set; dangling links and link loops are
skipped with their reason.

Exclusions: ``exclude`` globs (``--exclude``, ``[ingest] exclude``) and an ignore file named
:data:`IGNORE_FILE` at the top of a root, both gitignore-like (see :class:`GlobSet`).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infuse.documents.loaders import SUFFIX_TYPES
from infuse.errors import InfuseError, LoadError

IGNORE_FILE = ".infuseignore"

# Short kinds of skipped entries (the summary groups by kind; unsupported files use their suffix).
HIDDEN = "hidden"
EXCLUDED = "excluded"
LINK_OUTSIDE = "link leaving the corpus"
DANGLING_LINK = "dangling link"
NOT_A_FILE = "not a regular file"
WORKSPACE = "infuse workspace"
NO_SUFFIX = "(no suffix)"


@dataclass(frozen=True)
class Skipped:
    """An entry that was deliberately not read: ``kind`` for the summary, ``reason`` for the log."""

    path: str
    kind: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "kind": self.kind, "reason": self.reason}


@dataclass
class Discovery:
    files: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    errors: list[LoadError] = field(default_factory=list)
    # The resolved paths given (roots): prune only looks at or below these.
    roots: list[Path] = field(default_factory=list)


def _glob_regex(pattern: str) -> str:
    """One gitignore-like glob as a regex over a POSIX path relative to the root.

    ``*`` and ``?`` stay within one path component, ``**`` crosses them, ``[...]`` is a class.
    Every construct is a simple loop, so matching is linear in the path.
    """
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[" and "]" in pattern[i + 2 :]:
            close = pattern.index("]", i + 2)
            body = pattern[i + 1 : close].replace("\\", "\\\\")
            out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
            i = close + 1
        else:
            out.append(re.escape(ch))
            i += 1
    return "".join(out)


class GlobSet:
    """gitignore-like globs: a pattern with a ``/`` (other than a trailing one) is anchored at the
    root, one without matches a name at any depth; a trailing ``/`` matches only folders; ``#``
    starts a comment line. Negation (``!``) is not supported.

    >>> globs = GlobSet(["*.log", "drafts/", "/build/**/*.tmp"])
    >>> [globs.matches(p, d) for p, d in [("a/x.log", False), ("a/drafts", True), ("build/1/2/z.tmp", False)]]
    [True, True, True]
    >>> globs.matches("a/build/z.tmp", False)
    False
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns: list[str] = []
        regexes: list[tuple[re.Pattern[str], bool]] = []
        for raw in patterns:
            pattern = raw.strip()
            if not pattern or pattern.startswith("#"):
                continue
            self.patterns.append(pattern)
            dir_only = pattern.endswith("/")
            pattern = pattern.rstrip("/")
            anchored = "/" in pattern
            body = _glob_regex(pattern.lstrip("/"))
            try:
                regex = re.compile(("" if anchored else "(?:.*/)?") + body + r"\Z", re.DOTALL)
            except re.error as exc:  # e.g. a character class [z-a]
                raise InfuseError(
                    f"exclude pattern {raw.strip()!r} is not a valid glob ({exc}); fix or remove it"
                ) from None
            regexes.append((regex, dir_only))
        self._regexes = regexes

    def matches(self, relative: str, is_dir: bool) -> bool:
        return any((is_dir or not dir_only) and regex.match(relative) for regex, dir_only in self._regexes)

    @classmethod
    def from_file(cls, path: Path) -> GlobSet:
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return cls([])
        try:
            return cls(lines)
        except InfuseError as exc:
            raise InfuseError(f"{path}: {exc}") from None


def _within(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def _kind_of_special(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device")):
        if test(mode):
            return name
    return "block device" if stat.S_ISBLK(mode) else "special file"


def _resolve(path: Path) -> Path:
    return path.expanduser().resolve()


@dataclass
class _Walk:
    roots: list[Path]
    excluded: set[Path]
    globs: GlobSet
    follow_links: bool
    out: Discovery
    found: dict[Path, None] = field(default_factory=dict)
    visited: set[Path] = field(default_factory=set)

    def skip(self, path: Path, kind: str, reason: str) -> None:
        self.out.skipped.append(Skipped(str(path), kind, reason))

    def folder(self, folder: Path, root: Path, root_globs: GlobSet) -> None:
        real = _resolve(folder)
        if real in self.visited:  # a link back into a folder already walked
            return
        self.visited.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            self.out.errors.append(LoadError(str(folder), f"cannot list folder: {exc.strerror or exc}"))
            return
        for entry in entries:
            self.entry(Path(entry.path), root, root_globs)

    def entry(self, path: Path, root: Path, root_globs: GlobSet) -> None:
        relative = path.relative_to(root).as_posix()
        try:
            info = path.lstat()
        except OSError as exc:
            self.skip(path, NOT_A_FILE, f"cannot stat: {exc.strerror or exc}")
            return
        if path.name.startswith("."):
            what = "folder" if stat.S_ISDIR(info.st_mode) else "link" if stat.S_ISLNK(info.st_mode) else "file"
            self.skip(path, HIDDEN, f"hidden {what} (name starts with '.')")
            return
        is_link = stat.S_ISLNK(info.st_mode)
        if is_link:
            try:
                target = path.resolve(strict=True)
                info = target.stat()
            except (OSError, RuntimeError) as exc:
                loop = isinstance(exc, RuntimeError) or getattr(exc, "errno", None) == 40  # ELOOP
                self.skip(
                    path,
                    DANGLING_LINK,
                    "symbolic link loop" if loop else f"dangling symbolic link to {os.readlink(path)!r}",
                )
                return
        else:
            target = path
        is_dir = stat.S_ISDIR(info.st_mode)
        if self.globs.matches(relative, is_dir) or root_globs.matches(relative, is_dir):
            self.skip(path, EXCLUDED, f"matches an exclude pattern ({IGNORE_FILE} or --exclude)")
            return
        real = _resolve(target)
        if any(e == real or e in real.parents for e in self.excluded):
            self.skip(path, WORKSPACE, "the infuse workspace itself")
            return
        if is_link and not self.follow_links and not _within(real, self.roots):
            self.skip(path, LINK_OUTSIDE, f"symbolic link to {real} outside the given folders; use --follow-links")
            return
        if is_dir:
            self.folder(path, root, root_globs)
        elif not stat.S_ISREG(info.st_mode):
            self.skip(path, NOT_A_FILE, f"{_kind_of_special(info.st_mode)}, not a regular file: never read")
        elif path.suffix.lower() in SUFFIX_TYPES:
            self.found[real] = None
        else:
            suffix = path.suffix.lower() or NO_SUFFIX
            self.skip(path, suffix, f"unsupported file type {suffix}")


def discover(
    paths: Iterable[Path],
    *,
    exclude: Iterable[Path] = (),
    globs: Iterable[str] = (),
    follow_links: bool = False,
) -> Discovery:
    """Expand files and folders into the supported files below them, sorted, without duplicates.

    Inside folders, hidden entries, ``globs`` and the root's :data:`IGNORE_FILE` matches, the
    ``exclude`` folders (the workspace itself), unsupported suffixes, special files and links
    leaving the roots are skipped with a reason. A path named explicitly is taken as given (a
    hidden file, a link); one that is missing or has an unsupported suffix is an error.
    """
    out = Discovery()
    given = [Path(p).expanduser() for p in paths]
    roots: list[Path] = []
    for path in given:
        try:
            roots.append(_resolve(path))
        except (OSError, RuntimeError):
            continue
    roots = [root for root in roots if root.exists()]  # a missing root scopes nothing (not even prune)
    out.roots = roots
    walk = _Walk(
        roots=roots,
        excluded={_resolve(p) for p in exclude},
        globs=GlobSet(globs),
        follow_links=follow_links,
        out=out,
    )
    for path in given:
        try:
            real = _resolve(path)
            info = real.stat()
        except (OSError, RuntimeError) as exc:
            missing = isinstance(exc, FileNotFoundError) and not path.is_symlink()
            out.errors.append(
                LoadError(str(path), "no such file or folder" if missing else f"cannot resolve path: {exc}")
            )
            continue
        if stat.S_ISDIR(info.st_mode):
            walk.folder(path, path, GlobSet.from_file(path / IGNORE_FILE))
        elif not stat.S_ISREG(info.st_mode):
            walk.skip(path, NOT_A_FILE, f"{_kind_of_special(info.st_mode)}, not a regular file: never read")
        elif path.suffix.lower() in SUFFIX_TYPES:
            walk.found[real] = None
        else:
            supported = ", ".join(sorted(SUFFIX_TYPES))
            out.errors.append(
                LoadError(str(path), f"unsupported file type {path.suffix or '(none)'!r}; supported: {supported}")
            )
    out.files = sorted(walk.found)
    return out


def discover_files(paths: Iterable[Path], exclude: Iterable[Path] = ()) -> tuple[list[Path], list[LoadError]]:
    """The files and errors of :func:`discover` (skipped entries left out)."""
    found = discover(paths, exclude=exclude)
    return found.files, found.errors
