"""Accuracy of a model on lab-world short-answer questions, through the code path users use.

* closed book: ``RagPipeline(...).answer(q, use_retrieval=False)``;
* oracle open book: the question's own document as the only passage, rendered by
  :func:`infuse.rag.build_messages` (what RAG would send with perfect retrieval);
* RAG: the world's ``docs/`` ingested into a real workspace, ``RagPipeline(...).answer(q, k=k)``.

A prediction is correct when its value part (:func:`infuse.lab.model.answer_of`: the text before a
``[n]`` citation, else the first word) equals the answer.

>>> world = LabTrainConfig.for_lang("en").world()                      # doctest: +SKIP
>>> report = evaluate_lab_model(TransformersModel.load(folder), world, "runs/lab-eval")  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infuse.lab.model import answer_of
from infuse.lab.vocabulary import VALUES, Attribute
from infuse.lab.world import DOCS_DIR, KNOWN, NEW, ShortQuestion, World
from infuse.language import Language
from infuse.models.base import GenerationConfig, LanguageModel
from infuse.rag import RagPipeline, build_messages

if TYPE_CHECKING:
    from infuse.workspace import Workspace

GENERATION = GenerationConfig(max_new_tokens=4, temperature=0.0)


@dataclass
class Score:
    correct: int = 0
    total: int = 0
    cited_right: int = 0  # RAG / oracle: answers citing the passage that holds the fact
    seconds: float = 0.0
    examples: list[dict[str, Any]] = field(default_factory=list)  # the first few wrong ones

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    def add(self, question: ShortQuestion, text: str, cited_right: bool = False) -> None:
        self.total += 1
        if answer_of(text) == question.answer:
            self.correct += 1
        elif len(self.examples) < 5:
            self.examples.append({"question": question.question, "answer": question.answer, "got": text})
        self.cited_right += int(cited_right)

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": round(self.accuracy, 4),
            "correct": self.correct,
            "total": self.total,
            "cited_right": self.cited_right,
            "seconds": round(self.seconds, 2),
            "wrong_examples": self.examples,
        }


def chance(world: World) -> float:
    """Accuracy of guessing a uniformly random value of the asked attribute."""
    return sum(1 / len(VALUES[Attribute(a)]) for a in VALUES) / len(VALUES)


def _questions(world: World, split: str, limit: int | None) -> list[ShortQuestion]:
    questions = world.short_questions(split)
    return questions[:limit] if limit else questions


def closed_book(
    pipeline: RagPipeline, questions: Iterable[ShortQuestion], generation: GenerationConfig = GENERATION
) -> Score:
    score, started = Score(), time.perf_counter()
    for question in questions:
        text = pipeline.stream(question.question, use_retrieval=False, generation=generation).collect().text
        score.add(question, text)
    score.seconds = time.perf_counter() - started
    return score


def oracle_open_book(
    model: LanguageModel, world: World, questions: Iterable[ShortQuestion], generation: GenerationConfig = GENERATION
) -> Score:
    from infuse.lab.train import passage

    score, started = Score(), time.perf_counter()
    for question in questions:
        text = world.document(question.person_id).strip()
        hit = passage(f"{question.person_id}.txt", text, world.lang)
        messages = build_messages(question.question, [hit], Language(question.lang))
        output = model.generate(messages, generation).text
        score.add(question, output, cited_right="[1]" in output)
    score.seconds = time.perf_counter() - started
    return score


def rag(
    pipeline: RagPipeline, questions: Iterable[ShortQuestion], k: int, generation: GenerationConfig = GENERATION
) -> Score:
    score, started = Score(), time.perf_counter()
    for question in questions:
        answer = pipeline.stream(question.question, k=k, generation=generation).collect()
        right_doc = question.doc and any(
            c.chunk.source_path.endswith(question.doc.split("/")[-1]) for c in answer.citations
        )
        score.add(question, answer.text, cited_right=bool(right_doc))
    score.seconds = time.perf_counter() - started
    return score


def lab_workspace(world: World, root: str | Path) -> Workspace:
    """The world written to ``root/world`` and its documents ingested into ``root/workspace``,
    each with its access list (:meth:`World.access`: the restricted people's documents only for
    the restricted group, the others for everyone)."""
    from infuse.access import AccessList
    from infuse.workspace import Workspace

    root = Path(root)
    world_dir = root / "world"
    world.write(world_dir, overwrite=True)
    workspace = Workspace.open(root / "workspace", create=True)
    workspace.ingest([world_dir / DOCS_DIR], prune=True)
    by_access: dict[tuple[str, ...], list[str]] = {}
    for document in workspace.documents():
        person = Path(document.source_path).stem
        by_access.setdefault(world.access(person), []).append(document.doc_id)
    for entries, doc_ids in by_access.items():
        workspace.set_access(doc_ids, AccessList.parse(entries))
    return workspace


def evaluate_lab_model(
    model: LanguageModel,
    world: World,
    root: str | Path,
    *,
    ks: Sequence[int] = (1, 3),
    limit: int | None = None,
    known: bool = True,
    qa_person_ids: Collection[str] | None = None,
) -> dict[str, Any]:
    """Every accuracy of the lab benchmark for `model` on `world` (a workspace is built under `root`).

    `limit` caps the questions per set (None: all of them). `qa_person_ids` (the known people that
    had closed-book QA lines in training) splits the known score into those and the people
    learnt from bios only.
    """
    workspace = lab_workspace(world, root)
    pipeline = workspace.rag_pipeline(model, GENERATION)
    new = _questions(world, NEW, limit)
    report: dict[str, Any] = {"lang": str(world.lang), "chance": round(chance(world), 4), "questions_new": len(new)}
    report["closed_book_new"] = closed_book(pipeline, new).to_dict()
    report["oracle_open_book_new"] = oracle_open_book(model, world, new).to_dict()
    for k in ks:
        report[f"rag_top{k}_new"] = rag(pipeline, new, k).to_dict()
    if known:
        known_questions = _questions(world, KNOWN, limit)
        report["closed_book_known"] = closed_book(pipeline, known_questions).to_dict()
        if qa_person_ids is not None:
            ids = set(qa_person_ids)
            for name, subset in (
                ("qa", [q for q in known_questions if q.person_id in ids]),
                ("bio_only", [q for q in known_questions if q.person_id not in ids]),
            ):
                if subset:
                    report[f"closed_book_known_{name}"] = closed_book(pipeline, subset).to_dict()
    report["workspace"] = str(Path(root) / "workspace")
    return report


def summary(report: dict[str, Any]) -> dict[str, float]:
    """Just the accuracies, by set."""
    return {key: value["accuracy"] for key, value in report.items() if isinstance(value, dict) and "accuracy" in value}


__all__ = [
    "GENERATION",
    "Score",
    "chance",
    "closed_book",
    "evaluate_lab_model",
    "lab_workspace",
    "oracle_open_book",
    "rag",
    "summary",
]
