"""Files and folders that readers and crashes only ever see whole, named artifact folders, and the
one timestamp format.

Why one module: the workspace manifest, dataset and question-set folders, fine-tuning runs and
their checkpoints, merged models and the lab model cache all need "the old version or the complete
new one, never half of it". Written once here, that guarantee is tested once
(``tests/test_files.py``) instead of six times.

* a single file: :func:`write_text_atomic` / :func:`write_json_atomic` (temporary sibling, fsync,
  ``os.replace``);
* a whole folder: :func:`staged_folder` (a ``.NAME.tmp-PID`` sibling renamed over the target);
* a large file written by someone else's writer and checked before it counts (an exported GGUF):
  :func:`staged_file` (written inside a ``.NAME.tmp-PID`` sibling folder, renamed over the target);
* a parent folder of named artifacts (``WS/datasets/NAME``, ``WS/questions/NAME``,
  ``WS/adapters/NAME``...): :class:`ArtifactFolders` checks names, lists, opens by name with an
  error that lists what exists, and creates through :func:`staged_folder`;
* timestamps: :func:`utc_now` (ISO 8601, UTC, seconds) for every stored time, :func:`utc_stamp`
  for the compact form that goes into folder and table names.

>>> datasets = ArtifactFolders(ws.datasets_dir, kind="dataset", error=DatasetError)   # doctest: +SKIP
>>> with datasets.create("cpt") as staging:                                            # doctest: +SKIP
...     write_json_atomic(staging / "manifest.json", {"name": "cpt"})
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infuse.errors import InfuseError

MANIFEST_FILE = "manifest.json"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


# --- single files ---------------------------------------------------------------------------------


def write_text_atomic(path: Path, text: str) -> None:
    """Write a file so that readers and crashes only ever see the old or the new content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """`data` as indented UTF-8 JSON (non-ASCII kept readable), written atomically."""
    write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def read_json(path: Path) -> Any | None:
    """The JSON in `path`, or None when the file does not exist."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


# --- whole folders --------------------------------------------------------------------------------


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `target`; when the block succeeds it replaces
    `target` (an existing one is removed first), when it fails it is deleted. A crash or kill
    leaves at most a ``.NAME.tmp-PID`` folder, never a half-written `target`."""
    staging = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks (model files are gigabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def staged_file(target: Path) -> Iterator[Path]:
    """Yield a path named like `target` inside a temporary folder beside it (``.NAME.tmp-PID/NAME``);
    when the block succeeds, the file written there replaces `target`; when it fails (a check of the
    written file included), the folder is deleted. A crash or kill leaves at most the temporary
    folder, never a half-written or unchecked `target`. The file keeps its name while staged, so
    readers that go by the suffix (``.gguf``) read it as they will read `target`."""
    staging = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging / target.name
        os.replace(staging / target.name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --- caches -------------------------------------------------------------------------------------


def user_cache_dir(kind: str, env: str) -> Path:
    """Where infuse caches derived model files of one kind: ``$ENV`` if set, else
    ``~/.cache/infuse/KIND`` (converted GGUF models, ONNX exports)."""
    return Path(os.environ.get(env) or Path.home() / ".cache" / "infuse" / kind).expanduser()


# --- timestamps -----------------------------------------------------------------------------------


def utc_now() -> str:
    """Now, for files and reports: ISO 8601 in UTC to the second (``2026-11-21T03:15:00+00:00``)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def utc_stamp() -> str:
    """Now, for names of folders and tables: compact, sortable, UTC (``20261121-031500``)."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


# --- named artifact folders -----------------------------------------------------------------------


@dataclass(frozen=True)
class ArtifactFolders:
    """A parent folder of named artifacts, each a folder ``root/NAME`` that counts once it holds
    `marker` (its manifest).

    `kind` names the artifact in messages ("dataset", "question set"); `error` is the error class
    raised; `hint` says how to make one ("build one with `infuse dataset build`"); `known_label`
    introduces the list of existing names in the "no such artifact" message.

    >>> runs = ArtifactFolders(ws.adapters_dir, kind="fine-tuning run", error=TuneError)  # doctest: +SKIP
    >>> runs.require("ghost")                                                             # doctest: +SKIP
    TuneError: no fine-tuning run 'ghost' in WS/adapters; known: cpt-lora; train one with `infuse tune`
    """

    root: Path
    kind: str
    error: type[InfuseError] = InfuseError
    hint: str = ""
    known_label: str = "known"
    marker: str = MANIFEST_FILE

    def check_name(self, name: str) -> str:
        """`name`, or the error if it is not a safe folder name."""
        if not NAME_PATTERN.match(name):
            raise self.error(
                f"{self.kind} name {name!r}: use letters, digits, '.', '_' or '-' (at most 100 characters)"
            )
        return name

    def path(self, name: str) -> Path:
        """The folder of `name` (checked, not necessarily existing)."""
        return self.root / self.check_name(name)

    def exists(self, name: str) -> bool:
        """Whether a complete artifact `name` is there (an invalid name is simply not there)."""
        return bool(NAME_PATTERN.match(name)) and (self.root / name / self.marker).is_file()

    def names(self) -> list[str]:
        """The complete artifacts, sorted (staging folders and folders without `marker` are skipped)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith(".") and (p / self.marker).is_file())

    def missing(self, name: str) -> InfuseError:
        """The error for an unknown `name`: it lists the existing ones and says how to make one."""
        known = self.names()
        listed = f"{self.known_label}: {', '.join(known)}" if known else "there are none yet"
        return self.error(f"no {self.kind} {name!r} in {self.root}; {listed}" + (f"; {self.hint}" if self.hint else ""))

    def require(self, name: str) -> Path:
        """The folder of the existing artifact `name`, or :meth:`missing`'s error."""
        if not self.exists(name):
            raise self.missing(name)
        return self.root / name

    def refuse_existing(self, name: str) -> None:
        """The error when `name` is taken (any folder of that name, complete or not)."""
        if self.path(name).exists():
            raise self.error(
                f"{self.kind} {name!r} already exists in {self.root}; choose another --name or pass --overwrite"
            )

    def next_free(self, stem: str) -> str:
        """`stem`, or `stem-2`, `stem-3`... whichever is not taken yet."""
        name, n = stem, 1
        while (self.root / name).exists():
            n += 1
            name = f"{stem}-{n}"
        return name

    @contextmanager
    def create(self, name: str, *, overwrite: bool = False) -> Iterator[Path]:
        """Yield a staging folder that becomes ``root/NAME`` when the block succeeds
        (:func:`staged_folder`); an existing `name` is an error unless `overwrite`."""
        if not overwrite:
            self.refuse_existing(name)
        with staged_folder(self.path(name)) as staging:
            yield staging

    def remove(self, name: str) -> None:
        """Delete the artifact `name` (an error listing the known ones if there is none)."""
        shutil.rmtree(self.require(name))


__all__ = [
    "MANIFEST_FILE",
    "ArtifactFolders",
    "read_json",
    "staged_file",
    "staged_folder",
    "utc_now",
    "utc_stamp",
    "write_json_atomic",
    "write_text_atomic",
]
