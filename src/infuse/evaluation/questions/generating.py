"""Writing questions from the knowledge base's chunks with a model (the source chunk recorded)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from infuse.evaluation.questions.importing import match_key, parse_mc, parse_short
from infuse.evaluation.questions.model import (
    GENERATED_CHOICES,
    SCHEMA,
    Question,
    QuestionKind,
    QuestionSet,
    QuestionSetError,
    RowError,
    check_name,
    question_counts,
)
from infuse.files import utc_now
from infuse.language import Language
from infuse.progress import Progress, or_null
from infuse.tuning.generators import chunk_language

if TYPE_CHECKING:
    from infuse.documents.models import Chunk
    from infuse.models.base import LanguageModel
    from infuse.retrieval.lexical import LanguageAwareTokenizer

# --- generating ----------------------------------------------------------------------------------

GENERATOR_PROMPTS = {
    (QuestionKind.MC, Language.EN): (
        "Write {n} multiple-choice questions that test the facts in the passage below. Each question must be "
        "specific enough to be understood without the passage (name the people, things and dates it is about), "
        "have exactly 4 different choices, and exactly one choice that the passage shows is right. Reply with one "
        'JSON object per line: {{"question": "...", "choices": ["...", "...", "...", "..."], '
        '"answer_index": 0}}\n\nPassage:\n{text}'
    ),
    (QuestionKind.MC, Language.JA): (
        "次の文章の事実を問う4択問題を{n}個作ってください。問題文は文章を見なくても意味が分かるように、人・物・"
        "日付などを具体的に書いてください。選択肢は互いに異なる4つで、文章から正解と分かるものがちょうど1つ"
        'になるようにしてください。1行に1つ、JSON形式で答えてください: {{"question": "...", "choices": '
        '["...", "...", "...", "..."], "answer_index": 0}}\n\n文章:\n{text}'
    ),
    (QuestionKind.SHORT, Language.EN): (
        "Write {n} questions that the passage below answers, each with a short answer copied word for word from "
        "the passage. Make each question specific enough to be understood without the passage. Reply with one "
        'JSON object per line: {{"question": "...", "answer": "..."}}\n\nPassage:\n{text}'
    ),
    (QuestionKind.SHORT, Language.JA): (
        "次の文章から答えられる質問を{n}個作り、それぞれ文章中の語句をそのまま使って短く答えてください。質問は"
        "文章を見なくても意味が分かるように具体的に書いてください。1行に1つ、JSON形式で答えてください: "
        '{{"question": "...", "answer": "..."}}\n\n文章:\n{text}'
    ),
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
def _tokenizer() -> (
    LanguageAwareTokenizer
):  # the knowledge base's keyword tokenizer (stop words dropped, stemmed; Sudachi for Japanese)
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


def candidate_questions(
    reply: str, chunk: Chunk, kind: QuestionKind, dropped: Counter[str] | None = None
) -> list[Question]:
    """The valid questions in a model's `reply` about `chunk`, in reply order. MC: exactly 4 distinct
    non-empty choices and an answer index in range; short: the answer must occur in the chunk (case,
    width, spaces and punctuation folded). Reasons for dropping are counted in `dropped`."""
    dropped = dropped if dropped is not None else Counter()
    lang = chunk_language(chunk).value
    chunk_key = match_key(chunk.text)
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
                answers = tuple(a for a in answers if match_key(a) and match_key(a) in chunk_key)
                if not answers:
                    dropped["answer not in chunk"] += 1
                    continue
                fields = {"answers": answers}
        except RowError:
            dropped["invalid"] += 1
            continue
        found.append(
            Question(
                id=f"{chunk.chunk_id}-q{len(found)}",
                kind=kind,
                question=question,
                lang=lang,
                gold_doc=chunk.source_path,
                gold_text=chunk.text,
                source_chunk=chunk.chunk_id,
                **fields,
            )
        )
    return found


def most_specific(candidates: Sequence[Question], chunk_text: str, n: int) -> list[Question]:
    """The `n` candidates with the highest :func:`specificity` (ties: the model's order)."""
    ranked = sorted(
        range(len(candidates)), key=lambda i: (specificity(candidates[i].question, chunk_text), -i), reverse=True
    )
    return [candidates[i] for i in ranked[:n]]


def generate_questions(
    chunks: Sequence[Chunk],
    model: LanguageModel,
    *,
    per_chunk: int = 1,
    kind: QuestionKind = QuestionKind.MC,
    seed: int = 0,
    name: str = "generated",
    progress: Progress | None = None,
    candidates: int | None = None,
    attempts: int = 2,
    temperature: float = 0.7,
    max_new_tokens: int = 768,
) -> QuestionSet:
    """Ask `model` for `candidates` (default ``2 * per_chunk``) questions per chunk in the chunk's
    language, keep the valid ones not seen before (question text folded), and of those the
    `per_chunk` most specific (:func:`most_specific`). A chunk with too few valid questions is asked
    again, up to `attempts` times (sampled, seeded by `seed` and the chunk's position)."""
    from infuse.models.base import GenerationConfig

    kind = QuestionKind(kind)
    check_name(name)  # before any generation, which is the expensive part
    if per_chunk < 1:
        raise QuestionSetError(f"per_chunk must be at least 1, got {per_chunk}")
    if not chunks:
        raise QuestionSetError("no chunks to write questions from; ingest documents into the knowledge base first")
    wanted = candidates or 2 * per_chunk
    progress = or_null(progress)
    progress.start("questions", len(chunks))
    questions: list[Question] = []
    seen: set[str] = set()
    dropped: Counter[str] = Counter()
    without = 0
    for position, chunk in enumerate(chunks):
        prompt = GENERATOR_PROMPTS[kind, chunk_language(chunk)].format(n=wanted, text=chunk.text)
        pool: list[Question] = []
        for attempt in range(max(1, attempts)):
            config = GenerationConfig(
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                seed=(seed * 1_000_003 + position) * 16 + attempt,
            )
            reply = model.generate([{"role": "user", "content": prompt}], config).text
            for question in candidate_questions(reply, chunk, kind, dropped):
                key = match_key(question.question)
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
        progress.advance()
    if not questions:
        raise QuestionSetError(
            f"the model {model.name} wrote no usable questions for any of the {len(chunks)} chunks "
            f"(dropped: {dict(+dropped) or 'replies had no JSON question objects'}); use an instruction-tuned model "
            "that follows the JSON format, or import a question set with `infuse questions import`"
        )
    manifest = {
        "schema": SCHEMA,
        "name": name,
        "format": "generated",
        "sources": sorted({c.source_path for c in chunks}),
        "created": utc_now(),
        "counts": {
            **question_counts(questions),
            "chunks": len(chunks),
            "chunks_without_questions": without,
            "dropped": dict(+dropped),
        },
        "skipped": [],
        "generator": model.name,
        "seed": seed,
        "parameters": {
            "per_chunk": per_chunk,
            "kind": kind.value,
            "candidates": wanted,
            "attempts": attempts,
            "temperature": temperature,
            "max_new_tokens": max_new_tokens,
            "selection": "most specific: content words shared with the chunk, then their share",
        },
    }
    return QuestionSet(name, questions, manifest)


__all__ = [
    "GENERATOR_PROMPTS",
    "candidate_questions",
    "generate_questions",
    "most_specific",
    "parse_json_objects",
    "specificity",
]
