"""Who writes paraphrases and question-answer pairs for training sets.

Two writers behind one protocol (:class:`TrainingTextWriter`):

* :class:`ModelWriter`: any :class:`infuse.models.LanguageModel` (a local model or an
  OpenAI-compatible server) prompted in the chunk's language, as Ovadia et al. (2023) did with GPT-4;
* :class:`LabWorldWriter`: for knowledge bases built from a lab world, the world's own template
  paraphrases and question templates (exact, and free).

>>> writer = ModelWriter(load_model(ModelSettings(name="Qwen/Qwen2.5-1.5B-Instruct")))   # doctest: +SKIP
>>> writer.paraphrases(chunk, n=3, seed=0)                                              # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from infuse.language import Language, detect_language
from infuse.models.base import GenerationConfig, LanguageModel, ModelError
from infuse.documents.models import Chunk

if TYPE_CHECKING:
    from infuse.lab.world import Person, World

LAB_WRITER_NAME = "lab world templates"


class WriterChoice(StrEnum):
    """Who writes paraphrases and questions for ``infuse dataset build``."""

    AUTO = "auto"     # the lab world's templates for lab documents, else the model
    MODEL = "model"
    LAB = "lab"


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
    Language.EN: ("Rewrite the following passage in your own words. Keep every fact, name, number and date "
                  "exactly; do not add anything. Reply with the rewritten passage only.\n\nPassage:\n{text}"),
    Language.JA: ("次の文章を別の言い方で書き直してください。事実・名前・数字・日付はすべてそのまま残し、"
                  "新しい情報は加えないでください。書き直した文章だけを答えてください。\n\n文章:\n{text}"),
}
QA_PROMPTS = {
    Language.EN: ("Write {n} questions that the passage below answers, each with a short answer taken from the "
                  "passage. Make each question specific enough to be understood without the passage. Reply with "
                  "one JSON object per line: {{\"question\": \"...\", \"answer\": \"...\"}}\n\nPassage:\n{text}"),
    Language.JA: ("次の文章から答えられる質問を{n}個作り、それぞれ文章中の語句で短く答えてください。質問は文章を"
                  "見なくても意味が分かるように具体的に書いてください。1行に1つ、JSON形式で答えてください: "
                  "{{\"question\": \"...\", \"answer\": \"...\"}}\n\n文章:\n{text}"),
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
            if isinstance(question, str) and isinstance(answer, (str, int, float)) and question.strip() and str(answer).strip():
                pairs.append(QAPair(question.strip(), str(answer).strip()))
    return pairs


class ModelWriter:
    """Paraphrases and QA pairs written by a language model (sampled, seeded, deduplicated)."""

    def __init__(self, model: LanguageModel, *, temperature: float = 0.7, max_new_tokens: int = 512,
                 max_attempts_factor: int = 2) -> None:
        self.model = model
        self.name = model.name
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens
        self.max_attempts_factor = max_attempts_factor

    def _ask(self, prompt: str, seed: int) -> str:
        config = GenerationConfig(max_new_tokens=self.max_new_tokens, temperature=self.temperature, seed=seed)
        return self.model.generate([{"role": "user", "content": prompt}], config).text.strip()

    def paraphrases(self, chunk: Chunk, n: int, seed: int) -> list[str]:
        prompt = PARAPHRASE_PROMPTS[chunk_language(chunk)].format(text=chunk.text)
        seen = {normalise_for_dedup(chunk.text)}
        found: list[str] = []
        for attempt in range(n * self.max_attempts_factor):
            if len(found) == n:
                break
            text = self._ask(prompt, seed * 1_000 + attempt)
            key = normalise_for_dedup(text)
            if key and key not in seen:
                seen.add(key)
                found.append(text)
        return found

    def qa_pairs(self, chunk: Chunk, n: int, seed: int) -> list[QAPair]:
        prompt = QA_PROMPTS[chunk_language(chunk)].format(n=n, text=chunk.text)
        seen: set[str] = set()
        found: list[QAPair] = []
        for attempt in range(self.max_attempts_factor):
            for pair in parse_qa_pairs(self._ask(prompt, seed * 1_000 + attempt)):
                key = normalise_for_dedup(pair.question)
                if key not in seen:
                    seen.add(key)
                    found.append(pair)
            if len(found) >= n:
                break
        return found[:n]


class LabWorldWriter:
    """The lab world's own paraphrases and questions for chunks of its documents.

    A chunk belongs to the world when its source file is ``DIR/docs/<person>.txt`` or
    ``DIR/updates/docs/<person>.txt`` and ``DIR/world.json`` exists; the updated documents get
    paraphrases of the updated facts.
    """

    name = LAB_WRITER_NAME

    def __init__(self, world: "World", root: Path) -> None:
        self.world = world
        self.root = root.resolve()

    @classmethod
    def detect(cls, chunks: Sequence[Chunk]) -> "LabWorldWriter | None":
        """The writer for the lab world all `chunks` come from, or None if they are not all lab documents."""
        from infuse.lab.world import MANIFEST, load_world

        roots = {world_root(Path(c.source_path), MANIFEST) for c in chunks}
        if len(roots) != 1 or None in roots:
            return None
        root = roots.pop()
        assert root is not None
        writer = cls(load_world(root), root)
        return writer if all(writer.person(c) is not None for c in chunks) else None

    def person(self, chunk: Chunk) -> "Person | None":
        from infuse.lab.world import UPDATES_DIR

        path = Path(chunk.source_path).resolve()
        try:
            person = self.world.person(path.stem)
        except KeyError:
            return None
        updated = path.relative_to(self.root).parts[0] == UPDATES_DIR
        return self.world.updated_person(person) if updated else person

    def _person(self, chunk: Chunk) -> "Person":
        person = self.person(chunk)
        if person is None:
            raise ModelError(f"{chunk.source_path} is not a document of the lab world in {self.root}")
        return person

    def paraphrases(self, chunk: Chunk, n: int, seed: int) -> list[str]:
        """The world's paraphrase variants 0..n-1 (the document itself is a different rendering)."""
        return [bio.text for bio in self.world.bios(self._person(chunk), n)]

    def qa_pairs(self, chunk: Chunk, n: int, seed: int) -> list[QAPair]:
        """One question per attribute (template by seed and position), up to `n`."""
        from infuse.lab.templates import question_templates
        from infuse.lab.vocabulary import ATTRIBUTES

        person = self._person(chunk)
        pairs = []
        for i in range(n):
            attribute = ATTRIBUTES[i % len(ATTRIBUTES)]
            templates = question_templates(self.world.lang, attribute)
            template = templates[(seed + i // len(ATTRIBUTES)) % len(templates)]
            pairs.append(QAPair(template.render(person.name), person.value(attribute, self.world.lang)))
        return pairs


def world_root(path: Path, manifest_name: str) -> Path | None:
    """The lab world folder holding `path` (``docs/x.txt`` or ``updates/docs/x.txt``), if any."""
    for parent in list(path.resolve().parents)[:3]:
        if (parent / manifest_name).is_file():
            return parent
    return None


__all__ = ["LAB_WRITER_NAME", "LabWorldWriter", "ModelWriter", "QAPair", "TrainingTextWriter", "parse_qa_pairs"]
