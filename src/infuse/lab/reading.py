"""Multi-passage reading on the lab: accuracy vs the number of passages k, with and without the
oracle passage (the measure RAFT, Zhang et al. 2024, is judged by).

Why: the lab reader gets nearly every answer right with the right passage alone but far fewer
with three retrieved passages; RAFT trains a reader among distractors. To show whether it does
what it claims, each question is asked with exactly k passages from the knowledge base:

* **with the oracle**: the question's gold document plus the k-1 best-ranked *other* documents
  the search returns, the gold one at a position drawn per question (seeded), so position is no
  clue;
* **without the oracle**: the k best-ranked other documents only. A reader that reads (and has
  not memorised the fact) can then only guess: chance is the floor, and accuracy above it means
  the answer came from memory.

Each question is a multiple-choice question scored by log-likelihood after the RAG prompt
(:func:`infuse.rag.build_messages`), exactly as ``infuse compare`` scores a RAG variant, so the
numbers are comparable with its ``rag@k`` rows.

Training a reader (RAFT) needs documents the evaluation never asks about. :func:`fresh_people`
makes up to 650 more people (names the world does not use, facts drawn anew), so a RAFT set can
show each oracle document about once: with few documents seen many times, an adapter can lower its
loss by memorising them instead of reading (measured: 500 rows about 25 people gave no gain).

>>> cells = measure_reading(model, workspace, questions, ks=(1, 3, 5))   # doctest: +SKIP
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from infuse.documents.models import Chunk
from infuse.evaluation.compare import gold_rank, render
from infuse.evaluation.metrics import bootstrap_ci, score_multiple_choice_batch
from infuse.evaluation.questions import Question, QuestionKind
from infuse.lab.vocabulary import all_names
from infuse.lab.world import Person, World, generate_world
from infuse.language import Language
from infuse.models.base import LanguageModel
from infuse.rag import build_messages
from infuse.retrieval.search import SearchHit
from infuse.workspace import Workspace


@dataclass(frozen=True)
class ReadingCell:
    """Accuracy of one reader with `k` passages, the oracle among them or not."""

    k: int
    oracle: bool
    n: int
    accuracy: float
    ci: tuple[float, float]
    #: per question, 1.0 / 0.0 (for paired comparisons: :func:`reading_gain`); not in ``to_dict``
    outcomes: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["outcomes"]
        return data


def reading_gain(base: ReadingCell, other: ReadingCell, seed: int = 0) -> tuple[float, tuple[float, float]]:
    """`other`'s accuracy minus `base`'s on the same questions, with a 95% paired bootstrap interval
    (of the per-question differences): a gain is real when the interval excludes zero."""
    if (base.k, base.oracle, base.n) != (other.k, other.oracle, other.n) or len(base.outcomes) != base.n:
        raise ValueError(f"cells to compare must be of the same questions and setting: {base} vs {other}")
    if len(other.outcomes) != other.n:
        raise ValueError(f"{other} has no per-question outcomes to compare")
    differences = [b - a for a, b in zip(base.outcomes, other.outcomes, strict=True)]
    low, high = bootstrap_ci(differences, seed=seed)
    return round(sum(differences) / len(differences), 4), (round(low, 4), round(high, 4))


def passages_for(
    workspace: Workspace, questions: Sequence[Question], k: int, oracle: bool, seed: int = 0
) -> list[list[SearchHit]]:
    """The k passages each question is asked with (see the module docstring)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    chunks: list[Chunk] = list(workspace.knowledge_snapshot().iter_chunks())
    found = workspace.search_many([q.question for q in questions], k + 1)
    out = []
    for question, hits in zip(questions, found, strict=True):
        gold = [c for c in chunks if gold_rank(question, [c.source_path]) is not None]
        if not gold:
            raise ValueError(
                f"question {question.id}: its gold document {question.gold_doc!r} is not in the knowledge base"
            )
        others = [h.chunk for h in hits if gold_rank(question, [h.chunk.source_path]) is None]
        shown = others[: k - 1] if oracle else others[:k]
        if oracle:
            shown.insert(random.Random(f"reading|{seed}|{question.id}|{k}").randrange(len(shown) + 1), gold[0])
        out.append([SearchHit(rank=i, chunk=c, score=0.0) for i, c in enumerate(shown, start=1)])
    return out


def reading_accuracy(
    model: LanguageModel, questions: Sequence[Question], passages: Sequence[Sequence[SearchHit]]
) -> list[float]:
    """1.0 / 0.0 per question: the option the model scores highest after the RAG prompt is right."""
    items = []
    for question, hits in zip(questions, passages, strict=True):
        if question.kind is not QuestionKind.MC or question.answer_index is None:
            raise ValueError(f"question {question.id} is not multiple choice; reading is scored on MC questions")
        context = render(model, build_messages(question.question, list(hits), Language(question.lang)))
        items.append((context, question.choices, question.answer_index))
    return [float(score.acc) for score in score_multiple_choice_batch(model, items)]


def measure_reading(
    model: LanguageModel,
    workspace: Workspace,
    questions: Sequence[Question],
    ks: Sequence[int] = (1, 3, 5),
    seed: int = 0,
) -> list[ReadingCell]:
    """One cell per k, with the oracle and without it, with a 95% bootstrap interval."""
    cells = []
    for k in ks:
        for oracle in (True, False):
            correct = reading_accuracy(model, questions, passages_for(workspace, questions, k, oracle, seed))
            low, high = bootstrap_ci(correct, seed=seed)
            cells.append(
                ReadingCell(
                    k,
                    oracle,
                    len(correct),
                    round(sum(correct) / len(correct), 4),
                    (round(low, 4), round(high, 4)),
                    tuple(correct),
                )
            )
    return cells


def fresh_people(world: World, n: int) -> tuple[World, tuple[Person, ...]]:
    """`n` new people `world` does not have, and the world they belong to.

    That world is `world`'s generator (same seed and sizes) with every name of the vocabulary
    used, so it can be written and regenerated from its manifest (the lab writer writes questions
    about its people); the people returned are its new people whose names `world` does not use,
    in order, with their own facts. Raises ValueError when fewer than `n` names are free.
    """
    names = len(all_names())
    extended = generate_world(
        world.seed,
        world.lang,
        n_known=len(world.known),
        n_new=names - len(world.known),
        update_attributes=world.update_attributes,
        n_variants=world.n_variants,
        n_known_variants=world.n_known_variants,
    )
    taken = {p.name for p in world.people}
    fresh = tuple(p for p in extended.new if p.name not in taken)
    if not 1 <= n <= len(fresh):
        raise ValueError(f"asked for {n} fresh people; between 1 and {len(fresh)} names are free ({names} in all)")
    return extended, fresh[:n]


def reader_training_docs(world: World, people: Sequence[Person], root: str | Path, folder: str) -> Path:
    """`world` written to `root`, and the documents of `people` copied to ``root/folder`` (returned).

    The copies stay inside the world's folder, so the lab writer recognises them and writes the
    world's own questions about them.
    """
    root = Path(root)
    world.write(root, overwrite=True)
    target = root / folder
    target.mkdir(parents=True, exist_ok=True)
    for person in people:
        (target / f"{person.id}.txt").write_text(world.document(person), encoding="utf-8")
    return target


__all__ = [
    "ReadingCell",
    "fresh_people",
    "measure_reading",
    "passages_for",
    "reader_training_docs",
    "reading_accuracy",
    "reading_gain",
]
