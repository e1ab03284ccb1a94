"""Question records and question sets on disk (``WS/questions/NAME/``)."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infuse.errors import InfuseError
from infuse.files import ArtifactFolders, utc_now, write_json_atomic

if TYPE_CHECKING:
    pass

SCHEMA = "infuse-questions/1"
QUESTIONS_FILE = "questions.jsonl"
MANIFEST_FILE = "manifest.json"
SKIPPED_LISTED = 20  # skipped rows listed in a manifest (all are counted)
GENERATED_CHOICES = 4


class QuestionKind(StrEnum):
    MC = "mc"  # multiple choice: choices + answer_index
    SHORT = "short"  # short answer: accepted answers


class ImportFormat(StrEnum):
    MC = "mc"  # JSONL: question, choices, answer_index or answer
    QA = "qa"  # JSONL: question, answers or answer
    SQUAD = "squad"  # SQuAD 2.0 JSON
    JAQUAD = "jaquad"  # JaQuAD (SQuAD 1.1 JSON + extras): a file or a folder of them
    REALTIMEQA = "realtimeqa"  # RealTimeQA YYYYMMDD_qa.jsonl


class QuestionSetError(InfuseError):
    """A question file or set is missing, malformed or empty; the message names the file (and line)."""


class RowError(ValueError):
    """Why one input row cannot become a question (the row is skipped and listed in the manifest)."""


# --- questions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    """One evaluation question. For MC, ``answers`` (and ``old_answers``) are filled from the
    choices when left empty; ``old_*`` are set on update sets (the value before the change)."""

    id: str
    kind: QuestionKind
    question: str
    lang: str
    choices: tuple[str, ...] = ()
    answer_index: int | None = None
    answers: tuple[str, ...] = ()
    gold_doc: str | None = None
    gold_text: str | None = None
    source_chunk: str | None = None
    old_answers: tuple[str, ...] = ()
    old_answer_index: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", QuestionKind(self.kind))
        for name in ("choices", "answers", "old_answers"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.id or not self.question.strip():
            raise ValueError("a question needs a non-empty id and question text")
        if self.kind is QuestionKind.MC:
            if len(self.choices) < 2:
                raise ValueError(f"question {self.id}: multiple choice needs at least 2 choices")
            for name, required in (("answer_index", True), ("old_answer_index", False)):
                index = getattr(self, name)
                if (index is None and required) or (index is not None and not 0 <= index < len(self.choices)):
                    raise ValueError(
                        f"question {self.id}: {name} {index} is not an index of its {len(self.choices)} choices"
                    )
            if not self.answers and self.answer_index is not None:  # not None: checked just above
                object.__setattr__(self, "answers", (self.choices[self.answer_index],))
            if self.old_answer_index is not None and not self.old_answers:
                object.__setattr__(self, "old_answers", (self.choices[self.old_answer_index],))
        elif self.choices or self.answer_index is not None or self.old_answer_index is not None:
            raise ValueError(f"question {self.id}: choices and answer indexes are for multiple choice only")

    @property
    def is_update(self) -> bool:
        """An update-set question: its answer changed, ``old_answers`` is the stale value."""
        return bool(self.old_answers)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; fields left at their defaults are omitted."""
        data: dict[str, Any] = {"id": self.id, "kind": self.kind.value, "question": self.question, "lang": self.lang}
        for name in (
            "choices",
            "answer_index",
            "answers",
            "gold_doc",
            "gold_text",
            "source_chunk",
            "old_answers",
            "old_answer_index",
            "metadata",
        ):
            value = getattr(self, name)
            if value is not None and value != () and value != {}:
                data[name] = list(value) if isinstance(value, tuple) else value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Question:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class QuestionSet:
    name: str
    questions: list[Question]
    manifest: dict[str, Any]

    def __len__(self) -> int:
        return len(self.questions)


def question_counts(questions: Sequence[Question]) -> dict[str, Any]:
    return {
        "questions": len(questions),
        "by_kind": dict(Counter(q.kind.value for q in questions)),
        "by_lang": dict(Counter(q.lang for q in questions)),
        "with_gold_doc": sum(q.gold_doc is not None for q in questions),
        "updates": sum(q.is_update for q in questions),
    }


# --- storage -------------------------------------------------------------------------------------


def question_set_folders(root: Path) -> ArtifactFolders:
    """The question sets under `root` (``workspace.questions_dir``), each ``root/NAME/``."""
    return ArtifactFolders(
        root,
        kind="question set",
        error=QuestionSetError,
        known_label="known sets",
        marker=MANIFEST_FILE,
        hint="create one with `infuse questions import FILE --format ...` or `infuse questions generate`",
    )


def check_name(name: str) -> str:
    """`name`, or a :class:`QuestionSetError` if it is not a valid question set name."""
    return question_set_folders(Path()).check_name(name)


def default_name(path: Path) -> str:
    """A set name from a file or folder name (``dev-v2.0.json`` -> ``dev-v2.0``)."""
    stem = path.name if path.is_dir() else path.stem
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:100] or "questions"


def list_question_sets(root: Path) -> list[str]:
    """Names of the question sets under `root` (``workspace.questions_dir``)."""
    return question_set_folders(root).names()


def save_question_set(root: Path, qset: QuestionSet, *, overwrite: bool = False) -> Path:
    """Write ``root/NAME/questions.jsonl`` + ``manifest.json`` and return the folder. Written to a
    staging folder and renamed, so a crash leaves either the old set or the complete new one."""
    folders = question_set_folders(root)
    folders.check_name(qset.name)
    if not qset.questions:
        raise QuestionSetError(f"question set {qset.name!r} has no questions, so nothing was written")
    with folders.create(qset.name, overwrite=overwrite) as staging:
        with (staging / QUESTIONS_FILE).open("w", encoding="utf-8") as handle:
            for question in qset.questions:
                handle.write(json.dumps(question.to_dict(), ensure_ascii=False) + "\n")
        qset.manifest.update(
            schema=SCHEMA,
            name=qset.name,
            counts={**qset.manifest.get("counts", {}), **question_counts(qset.questions)},
            sha256=hashlib.sha256((staging / QUESTIONS_FILE).read_bytes()).hexdigest(),
        )
        qset.manifest.setdefault("created", utc_now())
        write_json_atomic(staging / MANIFEST_FILE, qset.manifest)
    return folders.path(qset.name)


def load_question_set(root: Path, name: str) -> QuestionSet:
    """The set ``root/NAME``; an unknown name is an error listing the known ones."""
    folder = question_set_folders(root).require(name)
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise QuestionSetError(
            f"{folder / MANIFEST_FILE}: not valid JSON ({exc.msg}); import or generate the set again"
        ) from exc
    questions = []
    path = folder / QUESTIONS_FILE
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    questions.append(Question.from_dict(json.loads(line)))
                except (json.JSONDecodeError, TypeError, ValueError) as exc:
                    raise QuestionSetError(
                        f"{path}:{number}: not a valid question ({exc}); import or generate the set again"
                    ) from exc
    return QuestionSet(name, questions, manifest)


def remove_question_set(root: Path, name: str) -> dict[str, Any]:
    """Delete the question set ``root/NAME`` (questions and manifest); an unknown name is an error
    listing the known ones. Compare runs that asked it keep their results."""
    folders = question_set_folders(root)
    path = folders.require(name)
    try:
        count = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8")).get("counts", {}).get("questions")
    except (OSError, ValueError, AttributeError):
        count = None
    folders.remove(name)
    return {"removed": name, "kind": "question set", "path": str(path), "questions": count}


def gold_documents(qset: QuestionSet, out_path: Path) -> Path:
    """Write the distinct gold passages of `qset` (``gold_doc`` -> ``gold_text``) as a JSONL file of
    ``{"id", "title", "text"}`` records, so a SQuAD / JaQuAD paragraph pool can be ingested with
    ``infuse ingest FILE --id-field id`` and retrieval scored against each question's ``gold_doc``."""
    seen: dict[str, str] = {}
    for q in qset.questions:
        if q.gold_doc is not None and q.gold_text and q.gold_doc not in seen:
            seen[q.gold_doc] = q.gold_text
    if not seen:
        raise QuestionSetError(f"question set {qset.name!r} has no gold passages to write")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w", encoding="utf-8") as handle:
        for doc_id, text in seen.items():
            title = doc_id.rsplit("#", 1)[0]
            handle.write(json.dumps({"id": doc_id, "title": title, "text": text}, ensure_ascii=False) + "\n")
    return out_path


__all__ = [
    "GENERATED_CHOICES",
    "ImportFormat",
    "MANIFEST_FILE",
    "QUESTIONS_FILE",
    "Question",
    "QuestionKind",
    "QuestionSet",
    "QuestionSetError",
    "RowError",
    "SCHEMA",
    "SKIPPED_LISTED",
    "check_name",
    "default_name",
    "gold_documents",
    "list_question_sets",
    "load_question_set",
    "question_counts",
    "question_set_folders",
    "remove_question_set",
    "save_question_set",
]
