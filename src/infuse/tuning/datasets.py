"""Training sets on disk: the two row formats, validation, and the workspace's dataset folder.

A dataset is a folder ``WS/datasets/NAME/`` with ``train.jsonl`` and ``manifest.json``. Rows use
the formats other tools read too:

* text rows (continued pretraining): ``{"text": "...", "bos": true, "eos": true}``. ``bos``/``eos``
  (default true) say whether the row starts/ends a document, so a document cut into several rows
  gets BOS only on its first piece and EOS only on its last;
* chat rows (supervised): ``{"messages": [{"role": "user", "content": "..."},
  {"role": "assistant", "content": "..."}]}``; the loss is on assistant messages only.

Extra keys (``source``, ``chunk_id``, ``replay``...) are kept and ignored by the trainer.

Every row is checked before training; unusable rows raise one DatasetError that counts them and
names each one's line and field, with the way out (fix them, or ``--skip-bad-rows``):

>>> rows = read_rows(Path("train.jsonl"))  # doctest: +SKIP
DatasetError: train.jsonl: 2 of 120 rows are unusable (line 5: field "text" must be a non-empty string; ...)
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from infuse.errors import InfuseError
from infuse.files import ArtifactFolders, file_sha256, read_json, utc_now, write_json_atomic

ROWS_FILE = "train.jsonl"
MANIFEST_FILE = "manifest.json"
FORMAT = "infuse-dataset/1"
ROLES = ("system", "user", "assistant")


class DatasetKind(StrEnum):
    CPT = "cpt"  # documents cut into fixed-length token pieces (continued pretraining)
    PARAPHRASE = "paraphrase"  # N rewrites per chunk, as text rows
    QA = "qa"  # question -> answer chat rows, one source chunk each
    RAFT = "raft"  # question + oracle and distractor passages -> answer citing the oracle
    IMPORTED = "imported"  # a user's own JSONL file


class RowFormat(StrEnum):
    TEXT = "text"
    CHAT = "chat"


class DatasetError(InfuseError):
    """A dataset is missing, malformed or empty; the message names the file, line and field."""


def row_format(row: Any, where: str) -> RowFormat:
    """The format of one row, or a :class:`DatasetError` naming `where` (``file:line``) and the field."""
    if not isinstance(row, dict):
        raise DatasetError(f'{where}: a row must be a JSON object with "text" or "messages", got {type(row).__name__}')
    if "text" in row:
        if not isinstance(row["text"], str) or not row["text"].strip():
            raise DatasetError(f'{where}: field "text" must be a non-empty string')
        for flag in ("bos", "eos"):
            if flag in row and not isinstance(row[flag], bool):
                raise DatasetError(f'{where}: field "{flag}" must be true or false')
        return RowFormat.TEXT
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or not messages:
            raise DatasetError(f'{where}: field "messages" must be a non-empty list of {{"role", "content"}} objects')
        for i, message in enumerate(messages):
            if (
                not isinstance(message, dict)
                or message.get("role") not in ROLES
                or not isinstance(message.get("content"), str)
            ):
                raise DatasetError(
                    f'{where}: messages[{i}] must be {{"role": one of {", ".join(ROLES)}, "content": string}}'
                )
        if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
            raise DatasetError(f"{where}: no assistant message with content, so nothing to learn from this row")
        return RowFormat.CHAT
    raise DatasetError(
        f'{where}: missing field "text" (continued pretraining) or "messages" (chat); '
        f"found {', '.join(sorted(row)) or 'no fields'}"
    )


@dataclass(frozen=True)
class RowCheck:
    """Every row of a JSONL file checked: the usable rows, and each unusable one's line and reason."""

    path: Path
    rows: list[dict[str, Any]]
    bad: list[tuple[int, str]]  # (line number, what is wrong)

    @property
    def total(self) -> int:
        return len(self.rows) + len(self.bad)

    def problem(self, way_out: str = "") -> str:
        """One message for all unusable rows: how many, the first few by line, and `way_out`."""
        shown = "; ".join(f"line {line}: {reason}" for line, reason in self.bad[:5])
        more = f"; and {len(self.bad) - 5} more" if len(self.bad) > 5 else ""
        message = f"{self.path}: {len(self.bad)} of {self.total} rows are unusable ({shown}{more})."
        return f"{message} {way_out}" if way_out else message


def check_rows(path: Path) -> RowCheck:
    """Read and check every row of a JSONL file (blank lines are not rows); a bad row does not stop
    the check, so one message can name them all."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    rows: list[dict[str, Any]] = []
    bad: list[tuple[int, str]] = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                bad.append((number, f"not valid JSON ({exc.msg}); each line must be one JSON object"))
                continue
            try:
                row_format(row, "")
            except DatasetError as exc:
                bad.append((number, str(exc).removeprefix(": ")))
                continue
            rows.append(row)
    return RowCheck(path, rows, bad)


SKIP_BAD_ROWS = "--skip-bad-rows"


def require_usable(check: RowCheck, *, skip_bad: bool = False, skip_option: str | None = None) -> list[dict[str, Any]]:
    """The usable rows of `check`. Unusable rows are an error naming their count, lines and
    reasons; with `skip_bad` they are left out. The error offers `skip_option` (e.g.
    ``--skip-bad-rows``) as the way out when one is given."""
    if check.bad and not check.rows:
        raise DatasetError(check.problem("No row is usable: fix the file or point to another one."))
    if check.bad and not skip_bad:
        way_out = (
            f"Fix them, or pass {skip_option} to train on the other {len(check.rows)}." if skip_option else "Fix them."
        )
        raise DatasetError(check.problem(way_out))
    if not check.rows:
        raise DatasetError(f"{check.path}: the dataset is empty; build it again or point to a file with rows")
    return check.rows


def read_rows(path: Path, *, skip_bad: bool = False, skip_option: str | None = None) -> list[dict[str, Any]]:
    """The usable rows of a JSONL file, every row checked (:func:`check_rows`, :func:`require_usable`)."""
    return require_usable(check_rows(path), skip_bad=skip_bad, skip_option=skip_option)


def usable_rows(rows: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """(the rows a trainer can use, how many were left out): builders never write an unusable row."""
    kept: list[dict[str, Any]] = []
    dropped = 0
    for row in rows:
        try:
            row_format(row, "row")
        except DatasetError:
            dropped += 1
            continue
        kept.append(row)
    return kept, dropped


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


@dataclass
class DatasetManifest:
    """What a dataset is, where it came from, and how big it is."""

    name: str
    kind: DatasetKind
    format: RowFormat
    rows: int
    tokens: int | None  # total tokens by `tokenizer` (None: not counted)
    tokenizer: str | None
    generator: str | None  # the model (or "lab world templates") that wrote rows, if any
    seed: int
    source: dict[str, Any]  # knowledge-base digest, documents, chunks
    parameters: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # e.g. skipped chunks, duplicates dropped
    sha256: str = ""
    created: str = ""
    schema: str = FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetManifest:
        data = dict(data)
        data["kind"] = DatasetKind(data["kind"])
        data["format"] = RowFormat(data["format"])
        return cls(**data)


@dataclass(frozen=True)
class Dataset:
    rows_path: Path  # the JSONL file
    manifest: DatasetManifest

    def rows(self, *, skip_bad: bool = False) -> list[dict[str, Any]]:
        """The usable rows; unusable ones are an error offering ``--skip-bad-rows``, or with
        `skip_bad` left out."""
        return read_rows(self.rows_path, skip_bad=skip_bad, skip_option=SKIP_BAD_ROWS)


def dataset_folders(root: Path) -> ArtifactFolders:
    """The datasets under `root` (``WS/datasets``), each ``root/NAME/`` with its manifest."""
    return ArtifactFolders(
        root,
        kind="dataset",
        error=DatasetError,
        marker=MANIFEST_FILE,
        hint="build one with `infuse dataset build --kind cpt` or pass a JSONL file",
    )


def check_name(name: str) -> str:
    """`name`, or a :class:`DatasetError` if it is not a valid dataset name."""
    return dataset_folders(Path()).check_name(name)


def next_free_name(root: Path, stem: str) -> str:
    """`stem`, or `stem-2`, `stem-3`... whichever does not exist under `root` yet."""
    return dataset_folders(root).next_free(stem)


def save_dataset(
    root: Path, manifest: DatasetManifest, rows: Sequence[dict[str, Any]], *, overwrite: bool = False
) -> Dataset:
    """Write rows and manifest under ``root/NAME``; written to a staging folder and renamed, so a
    crash leaves either the old dataset or the complete new one."""
    folders = dataset_folders(root)
    folders.check_name(manifest.name)
    if not rows:
        raise DatasetError(f"dataset {manifest.name!r}: no rows were produced, so nothing was written")
    with folders.create(manifest.name, overwrite=overwrite) as staging:
        write_jsonl(staging / ROWS_FILE, rows)
        manifest.rows = len(rows)
        manifest.sha256 = file_sha256(staging / ROWS_FILE)
        manifest.created = manifest.created or utc_now()
        write_json_atomic(staging / MANIFEST_FILE, manifest.to_dict())
    return Dataset(folders.path(manifest.name) / ROWS_FILE, manifest)


def load_dataset(root: Path, name_or_path: str, *, skip_bad_rows: bool = False) -> Dataset:
    """A dataset by name (``WS/datasets/NAME``), by folder, or a plain JSONL file (imported as is;
    its rows are checked here: unusable ones are an error, or with `skip_bad_rows` left out)."""
    folders = dataset_folders(root)
    candidate = Path(name_or_path).expanduser()
    folder = folders.path(name_or_path) if folders.exists(name_or_path) else candidate
    if (folder / MANIFEST_FILE).is_file():
        data = read_json(folder / MANIFEST_FILE)
        if data is None:  # deleted since the check above
            raise folders.missing(name_or_path)
        return Dataset(folder / ROWS_FILE, DatasetManifest.from_dict(data))
    if candidate.is_file():
        rows = read_rows(candidate, skip_bad=skip_bad_rows, skip_option=SKIP_BAD_ROWS)
        formats = {row_format(row, str(candidate)) for row in rows}
        if len(formats) > 1:
            raise DatasetError(f"{candidate}: mixes text rows and chat rows; use one format per file")
        manifest = DatasetManifest(
            candidate.stem,
            DatasetKind.IMPORTED,
            formats.pop(),
            len(rows),
            None,
            None,
            None,
            0,
            {"file": str(candidate.resolve())},
            sha256=file_sha256(candidate),
        )
        return Dataset(candidate, manifest)
    raise folders.missing(name_or_path)


def list_datasets(root: Path) -> list[str]:
    return dataset_folders(root).names()


def remove_dataset(root: Path, name: str) -> dict[str, Any]:
    """Delete the dataset `name` under `root` (its folder, rows and manifest) and any unfinished
    build of it (``.NAME.partial``); an unknown name is an error listing the known ones. Runs
    trained on it keep their adapters, but can no longer be resumed."""
    folders = dataset_folders(root)
    path = folders.require(name)
    rows = (read_json(path / MANIFEST_FILE) or {}).get("rows")
    folders.remove(name)
    shutil.rmtree(partial_folder(root, name), ignore_errors=True)
    return {"removed": name, "kind": "dataset", "path": str(path), "rows": rows}


def partial_folder(root: Path, name: str) -> Path:
    """Where an unfinished build of dataset `name` keeps its progress (hidden: never listed)."""
    return root / f".{name}.partial"


__all__ = [
    "Dataset",
    "DatasetError",
    "DatasetKind",
    "DatasetManifest",
    "RowCheck",
    "RowFormat",
    "SKIP_BAD_ROWS",
    "check_name",
    "check_rows",
    "dataset_folders",
    "list_datasets",
    "load_dataset",
    "next_free_name",
    "read_rows",
    "row_format",
    "remove_dataset",
    "require_usable",
    "save_dataset",
    "usable_rows",
]
