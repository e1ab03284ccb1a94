"""House-style examples for the lab: the behaviour half of "fine-tune for behaviour, RAG for facts".

A team that wants answers in its house style writes examples of it; here they are chat rows
about the world's *known* people (whose facts the lab model learnt in pretraining), answered in
:data:`~infuse.lab.templates.LAB_HOUSE_STYLE`: half closed-book, half with passages in infuse's
RAG prompt (the answer citing the passage that holds it, among other known people's bios). They
teach the format and no new fact: a model fine-tuned on them alone should follow the style and
still know nothing about the new people, so a compare run separates behaviour from knowledge.

Invariant (tested): no row mentions a new person, and every reply follows the style.

>>> rows = house_style_rows(generate_world(0, "en"), people=40)   # doctest: +SKIP
>>> write_house_style_rows(rows, path)                               # doctest: +SKIP
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from infuse.lab.templates import LAB_HOUSE_STYLE, question_templates
from infuse.lab.vocabulary import ATTRIBUTES
from infuse.lab.world import World
from infuse.rag import build_messages, closed_book_messages

MAX_PASSAGES = 3


def house_style_rows(world: World, people: int = 100, seed: int = 0) -> list[dict[str, Any]]:
    """Chat rows in the house style about the first `people` known people: per person and
    attribute one closed-book row and one row with 1 to :data:`MAX_PASSAGES` passages."""
    from infuse.lab.train import passage

    rng = random.Random(f"lab-house-style|{world.seed}|{seed}")
    known = list(world.known)
    chosen = known[:people]
    rows: list[dict[str, Any]] = []
    for person in chosen:
        for attribute in ATTRIBUTES:
            value = person.value(attribute, world.lang)
            question = rng.choice(question_templates(world.lang, attribute)).render(person.name)
            closed = LAB_HOUSE_STYLE.render(value, None, world.lang)
            rows.append(
                {"messages": [*closed_book_messages(question, world.lang), {"role": "assistant", "content": closed}]}
            )
            others = rng.sample([p for p in known if p.id != person.id], rng.randint(0, MAX_PASSAGES - 1))
            shown = [*others]
            shown.insert(rng.randrange(len(shown) + 1), person)
            hits = [
                passage(f"{p.id}.txt", world.bios(p, 1)[0].text, world.lang, rank)
                for rank, p in enumerate(shown, start=1)
            ]
            cited = LAB_HOUSE_STYLE.render(value, shown.index(person) + 1, world.lang)
            rows.append(
                {"messages": [*build_messages(question, hits, world.lang), {"role": "assistant", "content": cited}]}
            )
    rng.shuffle(rows)
    return rows


def write_house_style_rows(rows: list[dict[str, Any]], path: Path) -> Path:
    """The rows as a JSONL file (what ``infuse tune --dataset FILE`` takes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


__all__ = ["house_style_rows", "write_house_style_rows"]
