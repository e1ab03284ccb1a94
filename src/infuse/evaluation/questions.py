"""Evaluation question sets: import them from files, generate them from knowledge-base chunks, keep
them in the workspace.

Two kinds of question (:class:`QuestionKind`):

* multiple choice (``mc``): a question, its choices (usually 4) and the right choice's index,
  scored by the log-likelihood of each choice;
* short answer (``short``): a question and the answers accepted for it, scored by exact match / F1.

A question set is a folder ``WS/questions/NAME/`` with ``questions.jsonl`` (one
:meth:`Question.to_dict` per line) and ``manifest.json`` (format, source files, counts by kind and
language, skipped rows with their reasons, generator model and seed).

Importers (:class:`ImportFormat`): ``mc`` and ``qa`` (plain JSONL, including the files
``infuse lab world`` writes), ``squad`` (SQuAD 2.0 JSON), ``jaquad`` (JaQuAD: SQuAD 1.1 JSON, a
file or a folder of them) and ``realtimeqa`` (``YYYYMMDD_qa.jsonl``). A bad row is skipped and
listed in the manifest with its line (or JSON path) and the reason; only a file with no usable row
at all is an error.

>>> from infuse import Workspace                                                       # doctest: +SKIP
>>> ws = Workspace.open("kb")                                                          # doctest: +SKIP
>>> qset = import_questions(Path("dev-v2.0.json"), ImportFormat.SQUAD, limit=500)     # doctest: +SKIP
>>> qset.manifest["counts"]                                                            # doctest: +SKIP
{'questions': 500, 'by_kind': {'short': 500}, 'by_lang': {'en': 500}, 'with_gold_doc': 500, 'updates': 0, 'skipped': 0, ...}
>>> save_question_set(ws.questions_dir, qset)                                          # doctest: +SKIP
>>> load_question_set(ws.questions_dir, "dev-v2.0").questions[0].answers              # doctest: +SKIP
('France',)

RealTimeQA questions come with the news articles a web search returned for them; write those as
plain documents and ingest them before asking:

>>> realtimeqa_documents(Path("20250801_qa.jsonl"), Path("news/"))   # then `infuse ingest news/`  # doctest: +SKIP

Generated sets (Ovadia et al., 2023: 4-option questions written per chunk, the most specific kept):

>>> chunks = list(ws.knowledge_snapshot().iter_chunks())                               # doctest: +SKIP
>>> qset = generate_questions(chunks, model, per_chunk=2, seed=0)                      # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infuse.errors import InfuseError
from infuse.files import ArtifactFolders, utc_now, write_json_atomic
from infuse.language import Language, detect_language
from infuse.tuning.generators import chunk_language

if TYPE_CHECKING:
    from infuse.models.base import LanguageModel
    from infuse.retrieval.lexical import LanguageAwareTokenizer
    from infuse.documents.models import Chunk

SCHEMA = "infuse-questions/1"
QUESTIONS_FILE = "questions.jsonl"
MANIFEST_FILE = "manifest.json"
SKIPPED_LISTED = 20          # skipped rows listed in a manifest (all are counted)
GENERATED_CHOICES = 4

Progress = Callable[[int], None]   # called with the number of chunks just processed


class QuestionKind(StrEnum):
    MC = "mc"          # multiple choice: choices + answer_index
    SHORT = "short"    # short answer: accepted answers


class ImportFormat(StrEnum):
    MC = "mc"                  # JSONL: question, choices, answer_index or answer
    QA = "qa"                  # JSONL: question, answers or answer
    SQUAD = "squad"            # SQuAD 2.0 JSON
    JAQUAD = "jaquad"          # JaQuAD (SQuAD 1.1 JSON + extras): a file or a folder of them
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
                    raise ValueError(f"question {self.id}: {name} {index} is not an index of its {len(self.choices)} choices")
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
        for name in ("choices", "answer_index", "answers", "gold_doc", "gold_text", "source_chunk",
                     "old_answers", "old_answer_index", "metadata"):
            value = getattr(self, name)
            if value is not None and value != () and value != {}:
                data[name] = list(value) if isinstance(value, tuple) else value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Question":
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
    return ArtifactFolders(root, kind="question set", error=QuestionSetError, known_label="known sets", marker=MANIFEST_FILE,
                           hint="create one with `infuse questions import FILE --format ...` or `infuse questions generate`")


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
        qset.manifest.update(schema=SCHEMA, name=qset.name, counts={**qset.manifest.get("counts", {}), **question_counts(qset.questions)},
                             sha256=hashlib.sha256((staging / QUESTIONS_FILE).read_bytes()).hexdigest())
        qset.manifest.setdefault("created", utc_now())
        write_json_atomic(staging / MANIFEST_FILE, qset.manifest)
    return folders.path(qset.name)


def load_question_set(root: Path, name: str) -> QuestionSet:
    """The set ``root/NAME``; an unknown name is an error listing the known ones."""
    folder = question_set_folders(root).require(name)
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise QuestionSetError(f"{folder / MANIFEST_FILE}: not valid JSON ({exc.msg}); import or generate the set again") from exc
    questions = []
    path = folder / QUESTIONS_FILE
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    questions.append(Question.from_dict(json.loads(line)))
                except (json.JSONDecodeError, TypeError, ValueError) as exc:
                    raise QuestionSetError(f"{path}:{number}: not a valid question ({exc}); import or generate the set again") from exc
    return QuestionSet(name, questions, manifest)


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


# --- importing -----------------------------------------------------------------------------------


class _Collector:
    """Questions being imported: unique ids, a limit, and the rows skipped with their reasons."""

    def __init__(self, limit: int | None) -> None:
        if limit is not None and limit < 1:
            raise QuestionSetError(f"limit must be at least 1, got {limit}")
        self.limit = limit
        self.questions: list[Question] = []
        self.ids: set[str] = set()
        self.skipped: list[dict[str, str]] = []
        self.skipped_count = 0
        self.extra: Counter[str] = Counter()

    @property
    def full(self) -> bool:
        return self.limit is not None and len(self.questions) >= self.limit

    def skip(self, where: str, reason: str) -> None:
        self.skipped_count += 1
        if len(self.skipped) < SKIPPED_LISTED:
            self.skipped.append({"where": where, "reason": reason})

    def add(self, where: str, make: Callable[[], Question]) -> None:
        """Add the question `make` builds, or record why the row is skipped."""
        try:
            question = make()
        except (RowError, ValueError) as exc:
            self.skip(where, str(exc))
            return
        if question.id in self.ids:
            self.skip(where, f"duplicate id {question.id!r}")
            return
        self.ids.add(question.id)
        self.questions.append(question)

    def finish(self, name: str, fmt: ImportFormat, sources: Sequence[Path], **extra: Any) -> QuestionSet:
        described = ", ".join(str(s) for s in sources)
        if not self.questions:
            first = "; ".join(f"{s['where']}: {s['reason']}" for s in self.skipped[:3])
            detail = f" ({self.skipped_count} rows skipped, first: {first})" if self.skipped_count else ""
            raise QuestionSetError(f"{described}: no usable {fmt.value} questions{detail}; "
                                   f"check --format (one of {', '.join(f.value for f in ImportFormat)}) and the file's fields")
        manifest = {
            "schema": SCHEMA,
            "name": check_name(name),
            "format": fmt.value,
            "sources": [str(s.resolve()) for s in sources],
            "created": utc_now(),
            "counts": {**question_counts(self.questions), "skipped": self.skipped_count, **self.extra},
            "skipped": self.skipped,
            "limit": self.limit,
            "generator": None,
            "seed": None,
            **extra,
        }
        return QuestionSet(name, self.questions, manifest)


def import_questions(path: Path, fmt: ImportFormat, *, name: str | None = None, limit: int | None = None,
                     include_unanswerable: bool = False) -> QuestionSet:
    """Read a question file (or, for ``jaquad``/``squad``, a folder of JSON files) in format `fmt`.

    `limit` keeps the first N usable questions; `include_unanswerable` keeps SQuAD 2.0's
    unanswerable questions (with no accepted answers and ``metadata["unanswerable"]``)."""
    path = Path(path).expanduser()
    fmt = ImportFormat(fmt)
    if not path.exists():
        raise QuestionSetError(f"{path}: no such file; give the path of a {fmt.value} question file")
    collector = _Collector(limit)
    name = check_name(name or default_name(path))
    extra: dict[str, Any] = {}
    if fmt in (ImportFormat.SQUAD, ImportFormat.JAQUAD):
        files = sorted(path.glob("*.json")) if path.is_dir() else [path]
        if not files:
            raise QuestionSetError(f"{path}: no .json files in this folder; give a {fmt.value} JSON file or a folder of them")
        lang = Language.JA if fmt is ImportFormat.JAQUAD else None
        for file in files:
            _read_squad(file, collector, lang=lang, include_unanswerable=include_unanswerable)
            if collector.full:
                break
        return collector.finish(name, fmt, files, parameters={"include_unanswerable": include_unanswerable})
    if path.is_dir():
        raise QuestionSetError(f"{path} is a folder; give a {fmt.value} JSONL file")
    reader = {ImportFormat.MC: _mc_row, ImportFormat.QA: _qa_row, ImportFormat.REALTIMEQA: _realtimeqa_row}[fmt]
    for where, number, row in _jsonl_rows(path, collector):
        collector.add(where, lambda: reader(row, number))
        if collector.full:
            break
    if fmt is ImportFormat.REALTIMEQA:
        gcs = realtimeqa_search_results_path(path)
        extra["documents"] = {
            "search_results": str(gcs.resolve()) if gcs and gcs.is_file() else None,
            "how": "realtimeqa_documents(QA_FILE, OUT_DIR) writes them as text files; then `infuse ingest OUT_DIR`",
        }
    return collector.finish(name, fmt, [path], **extra)


def _jsonl_rows(path: Path, collector: _Collector) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(``file:line``, line number, object) for each line that is a JSON object; others are skipped."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path.name}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                collector.skip(where, f"not valid JSON ({exc.msg})")
                continue
            if not isinstance(row, dict):
                collector.skip(where, f"expected a JSON object, got {type(row).__name__}")
                continue
            yield where, number, row


def _text(value: Any, field_name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value).strip():
        raise RowError(f"field {field_name!r} must be a non-empty string, got {value!r}")
    return str(value).strip()


def _optional_text(row: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = row.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _texts(value: Any, field_name: str) -> tuple[str, ...]:
    """A string or a list of strings as distinct non-empty texts, in order."""
    items = value if isinstance(value, list) else [value]
    texts = tuple(dict.fromkeys(_text(item, field_name) for item in items))
    if not texts:
        raise RowError(f"field {field_name!r} is an empty list")
    return texts


def _index(value: Any, n: int, field_name: str) -> int:
    """An int or an integer string in ``range(n)``."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < n:
        raise RowError(f"field {field_name!r} must be an index from 0 to {n - 1}, got {value!r}")
    return value


def _match_key(text: str) -> str:
    """Case, width, whitespace and punctuation folded: for comparing answers with choices or chunks."""
    return re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", text).casefold())


def _choice_index(answer: Any, choices: Sequence[str], field_name: str) -> int:
    """The choice `answer` names: its text (exact, then folded), else an index (int or digits), else
    a letter (``"B"`` or ``"(b)"`` is choice 1)."""
    if isinstance(answer, list) and len(answer) == 1:
        answer = answer[0]
    if isinstance(answer, str):
        for key in (lambda s: s.strip(), _match_key):
            matches = [i for i, choice in enumerate(choices) if key(choice) == key(answer)]
            if len(matches) == 1:
                return matches[0]
        letter = re.fullmatch(r"\s*\(?([A-Za-z])\)?[.:]?\s*", answer)
        if letter and not answer.strip().isdigit() and ord(letter[1].upper()) - ord("A") < len(choices):
            return ord(letter[1].upper()) - ord("A")
    try:
        return _index(answer, len(choices), field_name)
    except RowError:
        raise RowError(f"field {field_name!r} ({answer!r}) is neither one of the choices nor an index") from None


def parse_mc(row: dict[str, Any], question_key: str = "question") -> tuple[str, tuple[str, ...], int]:
    """Question, choices and answer index of a multiple-choice row (``answer_index`` or ``answer``)."""
    question = _text(row.get(question_key), question_key)
    raw = row.get("choices")
    if not isinstance(raw, list) or len(raw) < 2:
        raise RowError(f"field 'choices' must be a list of at least 2 strings, got {raw!r}")
    choices = tuple(_text(c, "choices") for c in raw)
    if len({_match_key(c) for c in choices}) < len(choices):
        raise RowError(f"choices repeat: {list(choices)}")
    if "answer_index" in row:
        index = _index(row["answer_index"], len(choices), "answer_index")
        if "answer" in row and _choice_index(row["answer"], choices, "answer") != index:
            raise RowError(f"answer {row['answer']!r} disagrees with answer_index {index}")
    elif "answer" in row:
        index = _choice_index(row["answer"], choices, "answer")
    else:
        raise RowError("missing field 'answer_index' (or 'answer': the right choice's text or index)")
    return question, choices, index


def parse_short(row: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """Question and accepted answers of a short-answer row (``answers`` list or ``answer``)."""
    question = _text(row.get("question"), "question")
    if "answers" in row:
        return question, _texts(row["answers"], "answers")
    if "answer" in row:
        return question, _texts(row["answer"], "answer")
    raise RowError("missing field 'answers' (a list of accepted answers) or 'answer'")


# Keys the JSONL importers turn into Question fields; any other key goes to metadata.
_ROW_FIELDS = frozenset({"id", "kind", "metadata", "question", "lang", "choices", "answer_index", "answer", "answers", "doc", "gold_doc",
                         "context", "gold_text", "source_chunk", "old_answer", "old_answers", "old_answer_index"})


def _row_common(row: dict[str, Any], number: int, question: str) -> dict[str, Any]:
    lang = row.get("lang")
    raw_id = row.get("id")
    metadata = {**(row["metadata"] if isinstance(row.get("metadata"), dict) else {}),
                **{k: v for k, v in row.items() if k not in _ROW_FIELDS}}
    return {
        "id": str(raw_id).strip() if isinstance(raw_id, (str, int)) and str(raw_id).strip() else f"line-{number}",
        "lang": lang if isinstance(lang, str) and lang in set(Language) else detect_language(question).value,
        "gold_doc": _optional_text(row, "gold_doc", "doc"),
        "gold_text": _optional_text(row, "gold_text", "context"),
        "source_chunk": _optional_text(row, "source_chunk"),
        "metadata": metadata,
    }


def _mc_row(row: dict[str, Any], number: int) -> Question:
    question, choices, index = parse_mc(row)
    old_index = None
    if row.get("old_answer_index") is not None:
        old_index = _index(row["old_answer_index"], len(choices), "old_answer_index")
    elif row.get("old_answer") is not None:
        old_index = _choice_index(row["old_answer"], choices, "old_answer")
    return Question(kind=QuestionKind.MC, question=question, choices=choices, answer_index=index,
                    old_answer_index=old_index, **_row_common(row, number, question))


def _qa_row(row: dict[str, Any], number: int) -> Question:
    question, answers = parse_short(row)
    old = row.get("old_answers", row.get("old_answer"))
    return Question(kind=QuestionKind.SHORT, question=question, answers=answers,
                    old_answers=_texts(old, "old_answer") if old is not None else (), **_row_common(row, number, question))


def _realtimeqa_row(row: dict[str, Any], number: int) -> Question:
    if "answer" not in row:
        raise RowError("missing field 'answer' (the right choice's index as a string, e.g. [\"2\"])")
    # RealTimeQA's answer is always the 0-based index (["2"]), never the choice's text.
    indexed = {k: v for k, v in row.items() if k != "answer"} | {"answer_index": row["answer"]}
    question, choices, index = parse_mc(indexed, question_key="question_sentence")
    evidence = row.get("evidence")
    qid = row.get("question_id")
    return Question(
        id=str(qid) if qid else f"line-{number}", kind=QuestionKind.MC, question=question, choices=choices, answer_index=index,
        lang=detect_language(question).value, gold_text=html_to_text(evidence) or None if isinstance(evidence, str) else None,
        metadata={k: row[k] for k in ("question_date", "question_source", "question_url") if k in row},
    )


def html_to_text(html: str) -> str:
    """The visible text of an HTML snippet, whitespace collapsed."""
    from bs4 import BeautifulSoup

    text = re.sub(r"\s+", " ", BeautifulSoup(html, "html.parser").get_text(" ")).strip()
    return re.sub(r" ([,.;:!?)])", r"\1", text)   # the separator put before punctuation after a tag


def _read_squad(path: Path, collector: _Collector, *, lang: Language | None, include_unanswerable: bool) -> None:
    """Questions of one SQuAD-format file: all distinct answer texts accepted, the paragraph as gold
    text, ``TITLE#PARAGRAPH_INDEX`` as gold document."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise QuestionSetError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); give a SQuAD-format JSON file") from exc
    except UnicodeDecodeError as exc:
        raise QuestionSetError(f"{path}: not UTF-8 text; give a SQuAD-format JSON file") from exc
    articles = data.get("data") if isinstance(data, dict) else None
    if not isinstance(articles, list):
        raise QuestionSetError(f"{path}: not SQuAD format (expected {{\"data\": [{{\"title\", \"paragraphs\": [...]}}]}})")
    for a, article in enumerate(articles):
        title = str(article.get("title") or f"article-{a}") if isinstance(article, dict) else f"article-{a}"
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            collector.skip(f"{path.name}: data[{a}]", "no 'paragraphs' list")
            continue
        for p, paragraph in enumerate(paragraphs):
            context = paragraph.get("context") if isinstance(paragraph, dict) else None
            qas = paragraph.get("qas") if isinstance(paragraph, dict) else None
            if not isinstance(context, str) or not context.strip() or not isinstance(qas, list):
                collector.skip(f"{path.name}: data[{a}].paragraphs[{p}]", "needs a non-empty 'context' and a 'qas' list")
                continue
            paragraph_lang = (lang or detect_language(context)).value
            for i, qa in enumerate(qas):
                if collector.full:
                    return
                where = f"{path.name}: data[{a}].paragraphs[{p}].qas[{i}]"
                if not isinstance(qa, dict):
                    collector.skip(where, "expected a JSON object")
                    continue
                answers = qa.get("answers") or []
                unanswerable = bool(qa.get("is_impossible")) or not answers
                if unanswerable and not include_unanswerable:
                    collector.extra["unanswerable_skipped"] += 1
                    continue
                collector.add(where, lambda: _squad_question(qa, answers, unanswerable, f"{title}#{p}", context,
                                                             paragraph_lang, {"title": title, "paragraph": p, "file": path.name}))


def _squad_question(qa: dict[str, Any], answers: list[Any], unanswerable: bool, gold_doc: str, context: str,
                    lang: str, metadata: dict[str, Any]) -> Question:
    question = _text(qa.get("question"), "question")
    if not isinstance(answers, list) or not all(isinstance(a, dict) for a in answers):
        raise RowError("field 'answers' must be a list of {\"text\", \"answer_start\"} objects")
    texts = () if unanswerable else _texts([a.get("text") for a in answers], "answers[].text")
    extra = {k: qa[k] for k in ("question_type",) if k in qa}
    answer_types = sorted({a["answer_type"] for a in answers if isinstance(a.get("answer_type"), str)})
    if answer_types:
        extra["answer_type"] = answer_types[0] if len(answer_types) == 1 else answer_types
    if unanswerable:
        extra["unanswerable"] = True
    return Question(id=_text(qa.get("id"), "id"), kind=QuestionKind.SHORT, question=question, lang=lang, answers=texts,
                    gold_doc=gold_doc, gold_text=context, metadata={**metadata, **extra})


# --- RealTimeQA documents ------------------------------------------------------------------------


def realtimeqa_search_results_path(qa_path: Path) -> Path | None:
    """``YYYYMMDD_gcs.jsonl`` beside ``YYYYMMDD_qa.jsonl`` (None if the name does not follow that pattern)."""
    if not qa_path.name.endswith("_qa.jsonl"):
        return None
    return qa_path.with_name(qa_path.name[: -len("_qa.jsonl")] + "_gcs.jsonl")


def realtimeqa_documents(qa_path: Path, out_dir: Path) -> list[Path]:
    """Write the week's search results (``*_gcs.jsonl`` beside `qa_path`) as one ``.txt`` per article
    (title on the first line, then the text), deduplicated by URL; articles without text are left out.
    Returns the files written, ready for ``infuse ingest OUT_DIR``."""
    gcs = realtimeqa_search_results_path(Path(qa_path))
    if gcs is None or not gcs.is_file():
        raise QuestionSetError(f"{qa_path}: no search results file beside it (expected {gcs or 'YYYYMMDD_gcs.jsonl'}); "
                               "RealTimeQA publishes YYYYMMDD_qa.jsonl and YYYYMMDD_gcs.jsonl together")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    seen: set[str] = set()
    rows = _Collector(None)
    for _, _, row in _jsonl_rows(gcs, rows):
        for result in row.get("search_result") or []:
            if not isinstance(result, dict):
                continue
            url, title, text = (str(result.get(k) or "").strip() for k in ("url", "title", "text"))
            if not text or not url or url in seen:
                continue
            seen.add(url)
            slug = re.sub(r"[^A-Za-z0-9]+", "-", title.lower()).strip("-")[:60] or "article"
            target = out_dir / f"{slug}-{hashlib.sha1(url.encode()).hexdigest()[:8]}.txt"
            target.write_text(f"{title or url}\n\n{text}\n", encoding="utf-8")
            written.append(target)
    if not written:
        raise QuestionSetError(f"{gcs}: no search result with a URL and text; nothing to write")
    return written


# --- generating ----------------------------------------------------------------------------------

GENERATOR_PROMPTS = {
    (QuestionKind.MC, Language.EN): (
        "Write {n} multiple-choice questions that test the facts in the passage below. Each question must be "
        "specific enough to be understood without the passage (name the people, things and dates it is about), "
        "have exactly 4 different choices, and exactly one choice that the passage shows is right. Reply with one "
        "JSON object per line: {{\"question\": \"...\", \"choices\": [\"...\", \"...\", \"...\", \"...\"], "
        "\"answer_index\": 0}}\n\nPassage:\n{text}"),
    (QuestionKind.MC, Language.JA): (
        "次の文章の事実を問う4択問題を{n}個作ってください。問題文は文章を見なくても意味が分かるように、人・物・"
        "日付などを具体的に書いてください。選択肢は互いに異なる4つで、文章から正解と分かるものがちょうど1つ"
        "になるようにしてください。1行に1つ、JSON形式で答えてください: {{\"question\": \"...\", \"choices\": "
        "[\"...\", \"...\", \"...\", \"...\"], \"answer_index\": 0}}\n\n文章:\n{text}"),
    (QuestionKind.SHORT, Language.EN): (
        "Write {n} questions that the passage below answers, each with a short answer copied word for word from "
        "the passage. Make each question specific enough to be understood without the passage. Reply with one "
        "JSON object per line: {{\"question\": \"...\", \"answer\": \"...\"}}\n\nPassage:\n{text}"),
    (QuestionKind.SHORT, Language.JA): (
        "次の文章から答えられる質問を{n}個作り、それぞれ文章中の語句をそのまま使って短く答えてください。質問は"
        "文章を見なくても意味が分かるように具体的に書いてください。1行に1つ、JSON形式で答えてください: "
        "{{\"question\": \"...\", \"answer\": \"...\"}}\n\n文章:\n{text}"),
}


def parse_json_objects(text: str) -> list[dict[str, Any]]:
    """Every JSON object in a model's reply, wherever it is: one per line, inside a JSON list, in a
    code fence, or pretty-printed over several lines; ``{"questions": [...]}`` is unwrapped. Anything
    that does not parse is ignored, so a chatty reply still yields its usable objects."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    position = text.find("{")
    while position != -1:
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            position = text.find("{", position + 1)
            continue
        if isinstance(value, dict):
            nested = value.get("questions")
            if isinstance(nested, list):
                found.extend(item for item in nested if isinstance(item, dict))
            else:
                found.append(value)
        position = text.find("{", end)
    return found


@lru_cache(maxsize=1)
def _tokenizer() -> LanguageAwareTokenizer:  # the knowledge base's keyword tokenizer (stop words dropped, stemmed; Sudachi for Japanese)
    from infuse.retrieval.lexical import LanguageAwareTokenizer

    return LanguageAwareTokenizer()


def specificity(question: str, chunk_text: str) -> tuple[int, float]:
    """How specific a question is to its chunk: (distinct content words of the question found in the
    chunk, their share of the question's content words). A question that names the chunk's people,
    things and numbers can be understood without the passage; ``What is it?`` scores (0, 0.0)."""
    words = set(_tokenizer().tokenize(question))
    if not words:
        return 0, 0.0
    shared = len(words & set(_tokenizer().tokenize(chunk_text)))
    return shared, shared / len(words)


def candidate_questions(reply: str, chunk: "Chunk", kind: QuestionKind, dropped: Counter[str] | None = None) -> list[Question]:
    """The valid questions in a model's `reply` about `chunk`, in reply order. MC: exactly 4 distinct
    non-empty choices and an answer index in range; short: the answer must occur in the chunk (case,
    width, spaces and punctuation folded). Reasons for dropping are counted in `dropped`."""
    dropped = dropped if dropped is not None else Counter()
    lang = chunk_language(chunk).value
    chunk_key = _match_key(chunk.text)
    found: list[Question] = []
    for item in parse_json_objects(reply):
        try:
            if kind is QuestionKind.MC:
                question, choices, index = parse_mc(item)
                if len(choices) != GENERATED_CHOICES:
                    raise RowError(f"{len(choices)} choices")
                fields: dict[str, Any] = {"choices": choices, "answer_index": index}
            else:
                question, answers = parse_short(item)
                answers = tuple(a for a in answers if _match_key(a) and _match_key(a) in chunk_key)
                if not answers:
                    dropped["answer not in chunk"] += 1
                    continue
                fields = {"answers": answers}
        except RowError:
            dropped["invalid"] += 1
            continue
        found.append(Question(id=f"{chunk.chunk_id}-q{len(found)}", kind=kind, question=question, lang=lang,
                              gold_doc=chunk.source_path, gold_text=chunk.text, source_chunk=chunk.chunk_id, **fields))
    return found


def most_specific(candidates: Sequence[Question], chunk_text: str, n: int) -> list[Question]:
    """The `n` candidates with the highest :func:`specificity` (ties: the model's order)."""
    ranked = sorted(range(len(candidates)), key=lambda i: (specificity(candidates[i].question, chunk_text), -i), reverse=True)
    return [candidates[i] for i in ranked[:n]]


def generate_questions(chunks: Sequence["Chunk"], model: "LanguageModel", *, per_chunk: int = 1,
                       kind: QuestionKind = QuestionKind.MC, seed: int = 0, name: str = "generated",
                       progress: Progress | None = None, candidates: int | None = None, attempts: int = 2,
                       temperature: float = 0.7, max_new_tokens: int = 768) -> QuestionSet:
    """Ask `model` for `candidates` (default ``2 * per_chunk``) questions per chunk in the chunk's
    language, keep the valid ones not seen before (question text folded), and of those the
    `per_chunk` most specific (:func:`most_specific`). A chunk with too few valid questions is asked
    again, up to `attempts` times (sampled, seeded by `seed` and the chunk's position)."""
    from infuse.models.base import GenerationConfig

    kind = QuestionKind(kind)
    check_name(name)   # before any generation, which is the expensive part
    if per_chunk < 1:
        raise QuestionSetError(f"per_chunk must be at least 1, got {per_chunk}")
    if not chunks:
        raise QuestionSetError("no chunks to write questions from; ingest documents into the knowledge base first")
    wanted = candidates or 2 * per_chunk
    questions: list[Question] = []
    seen: set[str] = set()
    dropped: Counter[str] = Counter()
    without = 0
    for position, chunk in enumerate(chunks):
        prompt = GENERATOR_PROMPTS[kind, chunk_language(chunk)].format(n=wanted, text=chunk.text)
        pool: list[Question] = []
        for attempt in range(max(1, attempts)):
            config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                                      seed=(seed * 1_000_003 + position) * 16 + attempt)
            reply = model.generate([{"role": "user", "content": prompt}], config).text
            for question in candidate_questions(reply, chunk, kind, dropped):
                key = _match_key(question.question)
                if key in seen:
                    dropped["duplicate"] += 1
                    continue
                seen.add(key)
                pool.append(question)
            if len(pool) >= per_chunk:
                break
        chosen = most_specific(pool, chunk.text, per_chunk)
        dropped["less specific"] += len(pool) - len(chosen)
        without += not chosen
        questions.extend(replace(q, id=f"{chunk.chunk_id}-q{j}") for j, q in enumerate(chosen))
        if progress:
            progress(1)
    if not questions:
        raise QuestionSetError(
            f"the model {model.name} wrote no usable questions for any of the {len(chunks)} chunks "
            f"(dropped: {dict(+dropped) or 'replies had no JSON question objects'}); use an instruction-tuned model "
            "that follows the JSON format, or import a question set with `infuse questions import`")
    manifest = {
        "schema": SCHEMA,
        "name": name,
        "format": "generated",
        "sources": sorted({c.source_path for c in chunks}),
        "created": utc_now(),
        "counts": {**question_counts(questions), "chunks": len(chunks), "chunks_without_questions": without,
                   "dropped": dict(+dropped)},
        "skipped": [],
        "generator": model.name,
        "seed": seed,
        "parameters": {"per_chunk": per_chunk, "kind": kind.value, "candidates": wanted, "attempts": attempts,
                       "temperature": temperature, "max_new_tokens": max_new_tokens,
                       "selection": "most specific: content words shared with the chunk, then their share"},
    }
    return QuestionSet(name, questions, manifest)


__all__ = [
    "ImportFormat", "Question", "QuestionKind", "QuestionSet", "QuestionSetError", "candidate_questions",
    "generate_questions", "gold_documents", "import_questions", "list_question_sets", "load_question_set",
    "most_specific", "parse_json_objects", "realtimeqa_documents", "save_question_set", "specificity",
]
