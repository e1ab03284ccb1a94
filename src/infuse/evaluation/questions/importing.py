"""Importing question sets: MC/QA JSONL, SQuAD, JaQuAD and RealTimeQA files (bad rows skipped with their reason)."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infuse.evaluation.questions.model import (
    SCHEMA,
    SKIPPED_LISTED,
    ImportFormat,
    Question,
    QuestionKind,
    QuestionSet,
    QuestionSetError,
    RowError,
    check_name,
    default_name,
    question_counts,
)
from infuse.files import utc_now
from infuse.language import Language, detect_language

if TYPE_CHECKING:
    pass

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
            raise QuestionSetError(
                f"{described}: no usable {fmt.value} questions{detail}; "
                f"check --format (one of {', '.join(f.value for f in ImportFormat)}) and the file's fields"
            )
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


def import_questions(
    path: Path,
    fmt: ImportFormat,
    *,
    name: str | None = None,
    limit: int | None = None,
    include_unanswerable: bool = False,
    documents: Path | None = None,
) -> QuestionSet:
    """Read a question file (or, for ``jaquad``/``squad``, a folder of JSON files) in format `fmt`.

    `limit` keeps the first N usable questions; `include_unanswerable` keeps SQuAD 2.0's
    unanswerable questions (with no accepted answers and ``metadata["unanswerable"]``).
    `documents` (``realtimeqa`` only) also writes the articles of the imported questions there, one
    text file per article (:func:`realtimeqa_documents`; the manifest's ``documents`` lists the
    folder and the file count), so ``infuse ingest DIR`` can follow."""
    path = Path(path).expanduser()
    fmt = ImportFormat(fmt)
    if documents is not None and fmt is not ImportFormat.REALTIMEQA:
        raise QuestionSetError(
            f"--documents writes RealTimeQA's articles; the {fmt.value} format has none to write "
            "(for squad/jaquad, gold_documents() writes the paragraphs as a JSONL file to ingest)"
        )
    if not path.exists():
        raise QuestionSetError(f"{path}: no such file; give the path of a {fmt.value} question file")
    collector = _Collector(limit)
    name = check_name(name or default_name(path))
    extra: dict[str, Any] = {}
    if fmt in (ImportFormat.SQUAD, ImportFormat.JAQUAD):
        files = sorted(path.glob("*.json")) if path.is_dir() else [path]
        if not files:
            raise QuestionSetError(
                f"{path}: no .json files in this folder; give a {fmt.value} JSON file or a folder of them"
            )
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
        collector.add(where, partial(reader, row, number))
        if collector.full:
            break
    if fmt is ImportFormat.REALTIMEQA:
        gcs = realtimeqa_search_results_path(path)
        extra["documents"] = {
            "search_results": str(gcs.resolve()) if gcs and gcs.is_file() else None,
            "how": "`infuse questions import QA_FILE --format realtimeqa --documents DIR` writes them as "
            "text files; then `infuse ingest DIR`",
        }
    qset = collector.finish(name, fmt, [path], **extra)
    if documents is not None:
        written = realtimeqa_documents(path, Path(documents), question_ids={q.id for q in qset.questions})
        qset.manifest["documents"].update(folder=str(Path(documents).resolve()), files=len(written))
    return qset


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


def match_key(text: str) -> str:
    """Case, width, whitespace and punctuation folded: for comparing answers with choices or chunks."""
    return re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", text).casefold())


def _choice_index(answer: Any, choices: Sequence[str], field_name: str) -> int:
    """The choice `answer` names: its text (exact, then folded), else an index (int or digits), else
    a letter (``"B"`` or ``"(b)"`` is choice 1)."""
    if isinstance(answer, list) and len(answer) == 1:
        answer = answer[0]
    if isinstance(answer, str):
        for key in (lambda s: s.strip(), match_key):
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
    if len({match_key(c) for c in choices}) < len(choices):
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
_ROW_FIELDS = frozenset(
    {
        "id",
        "kind",
        "metadata",
        "question",
        "lang",
        "choices",
        "answer_index",
        "answer",
        "answers",
        "doc",
        "gold_doc",
        "context",
        "gold_text",
        "source_chunk",
        "old_answer",
        "old_answers",
        "old_answer_index",
    }
)


def _row_common(row: dict[str, Any], number: int, question: str) -> dict[str, Any]:
    lang = row.get("lang")
    raw_id = row.get("id")
    metadata = {
        **(row["metadata"] if isinstance(row.get("metadata"), dict) else {}),
        **{k: v for k, v in row.items() if k not in _ROW_FIELDS},
    }
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
    return Question(
        kind=QuestionKind.MC,
        question=question,
        choices=choices,
        answer_index=index,
        old_answer_index=old_index,
        **_row_common(row, number, question),
    )


def _qa_row(row: dict[str, Any], number: int) -> Question:
    question, answers = parse_short(row)
    old = row.get("old_answers", row.get("old_answer"))
    return Question(
        kind=QuestionKind.SHORT,
        question=question,
        answers=answers,
        old_answers=_texts(old, "old_answer") if old is not None else (),
        **_row_common(row, number, question),
    )


def _realtimeqa_row(row: dict[str, Any], number: int) -> Question:
    if "answer" not in row:
        raise RowError("missing field 'answer' (the right choice's index as a string, e.g. [\"2\"])")
    # RealTimeQA's answer is always the 0-based index (["2"]), never the choice's text.
    indexed = {k: v for k, v in row.items() if k != "answer"} | {"answer_index": row["answer"]}
    question, choices, index = parse_mc(indexed, question_key="question_sentence")
    evidence = row.get("evidence")
    qid = row.get("question_id")
    return Question(
        id=str(qid) if qid else f"line-{number}",
        kind=QuestionKind.MC,
        question=question,
        choices=choices,
        answer_index=index,
        lang=detect_language(question).value,
        gold_text=html_to_text(evidence) or None if isinstance(evidence, str) else None,
        metadata={k: row[k] for k in ("question_date", "question_source", "question_url") if k in row},
    )


def html_to_text(html: str) -> str:
    """The visible text of an HTML snippet, whitespace collapsed."""
    from bs4 import BeautifulSoup

    text = re.sub(r"\s+", " ", BeautifulSoup(html, "html.parser").get_text(" ")).strip()
    return re.sub(r" ([,.;:!?)])", r"\1", text)  # the separator put before punctuation after a tag


def _read_squad(path: Path, collector: _Collector, *, lang: Language | None, include_unanswerable: bool) -> None:
    """Questions of one SQuAD-format file: all distinct answer texts accepted, the paragraph as gold
    text, ``TITLE#PARAGRAPH_INDEX`` as gold document."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise QuestionSetError(
            f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); give a SQuAD-format JSON file"
        ) from exc
    except UnicodeDecodeError as exc:
        raise QuestionSetError(f"{path}: not UTF-8 text; give a SQuAD-format JSON file") from exc
    articles = data.get("data") if isinstance(data, dict) else None
    if not isinstance(articles, list):
        raise QuestionSetError(f'{path}: not SQuAD format (expected {{"data": [{{"title", "paragraphs": [...]}}]}})')
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
                collector.skip(
                    f"{path.name}: data[{a}].paragraphs[{p}]", "needs a non-empty 'context' and a 'qas' list"
                )
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
                meta = {"title": title, "paragraph": p, "file": path.name}
                collector.add(
                    where,
                    partial(_squad_question, qa, answers, unanswerable, f"{title}#{p}", context, paragraph_lang, meta),
                )


def _squad_question(
    qa: dict[str, Any],
    answers: list[Any],
    unanswerable: bool,
    gold_doc: str,
    context: str,
    lang: str,
    metadata: dict[str, Any],
) -> Question:
    question = _text(qa.get("question"), "question")
    if not isinstance(answers, list) or not all(isinstance(a, dict) for a in answers):
        raise RowError('field \'answers\' must be a list of {"text", "answer_start"} objects')
    texts = () if unanswerable else _texts([a.get("text") for a in answers], "answers[].text")
    extra = {k: qa[k] for k in ("question_type",) if k in qa}
    answer_types = sorted({a["answer_type"] for a in answers if isinstance(a.get("answer_type"), str)})
    if answer_types:
        extra["answer_type"] = answer_types[0] if len(answer_types) == 1 else answer_types
    if unanswerable:
        extra["unanswerable"] = True
    return Question(
        id=_text(qa.get("id"), "id"),
        kind=QuestionKind.SHORT,
        question=question,
        lang=lang,
        answers=texts,
        gold_doc=gold_doc,
        gold_text=context,
        metadata={**metadata, **extra},
    )


# --- RealTimeQA documents ------------------------------------------------------------------------


def realtimeqa_search_results_path(qa_path: Path) -> Path | None:
    """``YYYYMMDD_gcs.jsonl`` beside ``YYYYMMDD_qa.jsonl`` (None if the name does not follow that pattern)."""
    if not qa_path.name.endswith("_qa.jsonl"):
        return None
    return qa_path.with_name(qa_path.name[: -len("_qa.jsonl")] + "_gcs.jsonl")


def realtimeqa_documents(
    qa_path: Path, out_dir: Path, *, question_ids: Collection[str] | None = None, max_chars: int | None = None
) -> list[Path]:
    """Write the week's search results (``*_gcs.jsonl`` beside `qa_path`) as one ``.txt`` per article
    (title on the first line, then the text), deduplicated by URL; articles without text are left out.
    `question_ids` keeps only the results of those questions; `max_chars` keeps each article's lead
    (cut at the last paragraph or sentence end before the limit; news puts the facts first).
    Returns the files written, ready for ``infuse ingest OUT_DIR``. File names are stable
    (``TITLE-SLUG-URLHASH.txt``): importing again rewrites the same files, so a re-ingest sees
    only what changed."""
    gcs = realtimeqa_search_results_path(Path(qa_path))
    if gcs is None or not gcs.is_file():
        raise QuestionSetError(
            f"{qa_path}: no search results file beside it (expected {gcs or 'YYYYMMDD_gcs.jsonl'}); "
            "RealTimeQA publishes YYYYMMDD_qa.jsonl and YYYYMMDD_gcs.jsonl together"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    seen: set[str] = set()
    rows = _Collector(None)
    for _, _, row in _jsonl_rows(gcs, rows):
        if question_ids is not None and str(row.get("question_id")) not in question_ids:
            continue
        for result in row.get("search_result") or []:
            if not isinstance(result, dict):
                continue
            url, title, text = (str(result.get(k) or "").strip() for k in ("url", "title", "text"))
            if not text or not url or url in seen:
                continue
            seen.add(url)
            if max_chars is not None:
                text = lead(text, max_chars)
            slug = re.sub(r"[^A-Za-z0-9]+", "-", title.lower()).strip("-")[:60] or "article"
            target = out_dir / f"{slug}-{hashlib.sha1(url.encode()).hexdigest()[:8]}.txt"
            target.write_text(f"{title or url}\n\n{text}\n", encoding="utf-8")
            written.append(target)
    if not written:
        raise QuestionSetError(f"{gcs}: no search result with a URL and text; nothing to write")
    return written


def lead(text: str, max_chars: int) -> str:
    """The start of `text`, at most `max_chars` long, ending at a paragraph or sentence end when
    one falls in its second half.

    >>> lead("One. Two. Three.", 10)
    'One. Two.'
    """
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    cut = max(head.rfind("\n\n"), head.rfind(". ") + 1, head.rfind("。") + 1)
    return head[:cut].rstrip() if cut > max_chars // 2 else head.rstrip()


__all__ = [
    "html_to_text",
    "lead",
    "import_questions",
    "match_key",
    "parse_mc",
    "parse_short",
    "realtimeqa_documents",
    "realtimeqa_search_results_path",
]
