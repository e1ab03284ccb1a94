"""Who writes paraphrases and question-answer pairs for training sets.

Writers behind one protocol (:class:`TrainingTextWriter`):

* :class:`ModelWriter`: any :class:`infuse.models.LanguageModel` (a local model or an
  OpenAI-compatible server) prompted in the chunk's language, as Ovadia et al. (2023) did with GPT-4;
* corpus writers that recognise their own documents and know better than a model, registered with
  :func:`register_writer`: the knowledge lab registers its world's template paraphrases and
  questions (its ``writer`` module), so ``tuning`` never imports the lab.

:func:`choose_writer` is the one place that decides which writer a dataset build uses.

>>> writer = ModelWriter(load_model(ModelSettings(name="Qwen/Qwen2.5-1.5B-Instruct")))   # doctest: +SKIP
>>> writer.paraphrases(chunk, n=3, seed=0)                                              # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from infuse.documents.models import Chunk
from infuse.language import Language, detect_language
from infuse.models.base import FinishReason, Generation, GenerationConfig, LanguageModel
from infuse.tuning.datasets import DatasetError

if TYPE_CHECKING:
    from infuse.config import ModelSettings


class WriterChoice(StrEnum):
    """Who writes paraphrases and questions for ``infuse dataset build``."""

    AUTO = "auto"  # a registered corpus writer that recognises the documents (a lab world's templates), else the model
    MODEL = "model"  # always the model
    LAB = "lab"  # only a registered corpus writer; an error if none recognises the documents


@dataclass(frozen=True)
class QAPair:
    question: str
    answer: str


class TrainingTextWriter(Protocol):
    name: str

    def paraphrases(self, chunk: Chunk, n: int, seed: int) -> list[str]:
        """Up to `n` distinct rewrites of the chunk that keep every fact."""

    def qa_pairs(self, chunk: Chunk, n: int, seed: int) -> list[QAPair]:
        """Up to `n` questions answered by the chunk, with short answers."""


def normalise_for_dedup(text: str) -> str:
    """Case, width and whitespace folded: two rewrites equal after this are duplicates."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()


def chunk_language(chunk: Chunk) -> Language:
    try:
        return Language(chunk.lang)
    except ValueError:
        return detect_language(chunk.text)


PARAPHRASE_PROMPTS = {
    Language.EN: (
        "Rewrite the following passage in your own words. Keep every fact, name, number and date "
        "exactly; do not add anything. Reply with the rewritten passage only.\n\nPassage:\n{text}"
    ),
    Language.JA: (
        "次の文章を別の言い方で書き直してください。事実・名前・数字・日付はすべてそのまま残し、"
        "新しい情報は加えないでください。書き直した文章だけを答えてください。\n\n文章:\n{text}"
    ),
}
QA_PROMPTS = {
    Language.EN: (
        "Write {n} questions that the passage below answers, each with a short answer taken from the "
        "passage. Make each question specific enough to be understood without the passage. Reply with "
        'one JSON object per line: {{"question": "...", "answer": "..."}}\n\nPassage:\n{text}'
    ),
    Language.JA: (
        "次の文章から答えられる質問を{n}個作り、それぞれ文章中の語句で短く答えてください。質問は文章を"
        "見なくても意味が分かるように具体的に書いてください。1行に1つ、JSON形式で答えてください: "
        '{{"question": "...", "answer": "..."}}\n\n文章:\n{text}'
    ),
}
_QA_LINE = re.compile(r"^\s*(?:Q|Question|質問)\s*[:：]\s*(?P<q>.+?)\s*(?:A|Answer|答え|回答)\s*[:：]\s*(?P<a>.+)$")


def parse_qa_pairs(text: str) -> list[QAPair]:
    """Pairs from a model's reply: JSON objects (one per line, or a JSON list), or ``Q: ... A: ...``
    lines. Anything else is ignored, so a chatty reply still yields its usable pairs."""
    pairs: list[QAPair] = []
    candidates: list[object] = []
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            candidates.extend(json.loads(stripped))
        except json.JSONDecodeError:
            pass
    if not candidates:
        for line in stripped.splitlines():
            line = line.strip().rstrip(",")
            if line.startswith("{"):
                try:
                    candidates.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
            elif match := _QA_LINE.match(line):
                candidates.append({"question": match["q"], "answer": match["a"]})
    for item in candidates:
        if isinstance(item, dict):
            question, answer = item.get("question"), item.get("answer")
            if (
                isinstance(question, str)
                and isinstance(answer, (str, int, float))
                and question.strip()
                and str(answer).strip()
            ):
                pairs.append(QAPair(question.strip(), str(answer).strip()))
    return pairs


class ModelWriter:
    """Paraphrases and QA pairs written by a language model (sampled, seeded, deduplicated)."""

    def __init__(
        self, model: LanguageModel, *, temperature: float = 0.7, max_new_tokens: int = 512, max_attempts_factor: int = 2
    ) -> None:
        self.model = model
        self.name = model.name
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens
        self.max_attempts_factor = max_attempts_factor

    def _generate(self, prompt: str, seed: int) -> Generation:
        config = GenerationConfig(max_new_tokens=self.max_new_tokens, temperature=self.temperature, seed=seed)
        return self.model.generate([{"role": "user", "content": prompt}], config)

    def _ask(self, prompt: str, seed: int) -> str:
        return self._generate(prompt, seed).text.strip()

    def paraphrases(self, chunk: Chunk, n: int, seed: int) -> list[str]:
        return self.checked_paraphrases(chunk, n, seed)[0]

    def checked_paraphrases(
        self, chunk: Chunk, n: int, seed: int, problem: Callable[[Chunk, str], str | None] | None = None
    ) -> tuple[list[str], Counter[str]]:
        """(up to `n` distinct rewrites, rejections by reason). A reply cut off at
        ``max_new_tokens`` is incomplete and not used (``cut_off``: raise ``--max-new-tokens``);
        one that `problem` (the quality gate) finds a reason against is not used either. Each
        rejection costs one of the ``n x max_attempts_factor`` attempts."""
        prompt = PARAPHRASE_PROMPTS[chunk_language(chunk)].format(text=chunk.text)
        seen = {normalise_for_dedup(chunk.text)}
        found: list[str] = []
        rejected: Counter[str] = Counter()
        for attempt in range(n * self.max_attempts_factor):
            if len(found) == n:
                break
            reply = self._generate(prompt, seed * 1_000 + attempt)
            if reply.finish_reason is FinishReason.LENGTH:
                rejected["cut_off"] += 1
                continue
            text = reply.text.strip()
            key = normalise_for_dedup(text)
            if not key or key in seen:
                continue
            seen.add(key)
            reason = problem(chunk, text) if problem is not None else None
            if reason:
                rejected[reason] += 1
            else:
                found.append(text)
        return found, rejected

    def qa_pairs(self, chunk: Chunk, n: int, seed: int) -> list[QAPair]:
        return self.checked_qa_pairs(chunk, n, seed)[0]

    def checked_qa_pairs(
        self, chunk: Chunk, n: int, seed: int, problem: Callable[[Chunk, QAPair], str | None] | None = None
    ) -> tuple[list[QAPair], Counter[str]]:
        """(up to `n` pairs with distinct questions, rejections by reason from `problem`)."""
        prompt = QA_PROMPTS[chunk_language(chunk)].format(n=n, text=chunk.text)
        seen: set[str] = set()
        found: list[QAPair] = []
        rejected: Counter[str] = Counter()
        for attempt in range(self.max_attempts_factor):
            for pair in parse_qa_pairs(self._ask(prompt, seed * 1_000 + attempt)):
                key = normalise_for_dedup(pair.question)
                if key in seen:
                    continue
                seen.add(key)
                reason = problem(chunk, pair) if problem is not None else None
                if reason:
                    rejected[reason] += 1
                else:
                    found.append(pair)
            if len(found) >= n:
                break
        return found[:n], rejected


# --- choosing a writer ------------------------------------------------------------------------

WriterDetector = Callable[[Sequence[Chunk]], "TrainingTextWriter | None"]
"""Returns a writer for `chunks` when it recognises all of them as its own documents, else None."""

_DETECTORS: list[WriterDetector] = []


def register_writer(detector: WriterDetector) -> WriterDetector:
    """Add a corpus writer's detector (tried in registration order); usable as a decorator."""
    if detector not in _DETECTORS:
        _DETECTORS.append(detector)
    return detector


def detect_writer(chunks: Sequence[Chunk]) -> TrainingTextWriter | None:
    """The first registered corpus writer that recognises every chunk, or None."""
    for detector in _DETECTORS:
        writer = detector(chunks)
        if writer is not None:
            return writer
    return None


def choose_writer(
    chunks: Sequence[Chunk],
    choice: WriterChoice,
    model: ModelSettings,
    *,
    task: str = "this dataset",
    writes: str = "paraphrases or questions",
    loading: Callable[[str], None] | None = None,
) -> TrainingTextWriter:
    """Who writes for `chunks`: a registered corpus writer (unless `choice` is MODEL), else a
    :class:`ModelWriter` over `model` (``model.name`` None is an error saying to pass one) that
    writes at most ``model.max_new_tokens`` tokens per reply.
    `loading(name)` is called before a model is loaded (it can take a while)."""
    if choice is not WriterChoice.MODEL:
        found = detect_writer(chunks)
        if found is not None:
            return found
        if choice is WriterChoice.LAB:
            raise DatasetError(
                "--writer lab: the knowledge base is not made of lab-world documents (write one with the `lab world` command)"
            )
    if not model.name:
        raise DatasetError(
            f"building {task} needs a model to write {writes}: "
            "pass --model ID_OR_FOLDER or set [model] name in infuse.toml"
        )
    from infuse.models import load_model

    if loading is not None:
        loading(model.name)
    return ModelWriter(load_model(model), max_new_tokens=model.max_new_tokens)


__all__ = [
    "ModelWriter",
    "QAPair",
    "TrainingTextWriter",
    "WriterChoice",
    "choose_writer",
    "detect_writer",
    "register_writer",
    "parse_qa_pairs",
]
