"""The lab world: fictional people, their documents, paraphrases, questions and an update set.

Everything is a pure function of the generator's arguments. Facts (who exists, who is known or
new, every attribute value, the update set) come from one ``random.Random(seed)`` and do not
depend on the language, so the English and the Japanese world of a seed describe the same
people. Rendering choices (templates, sentence order, question templates, multiple-choice
distractors) come from their own ``random.Random`` streams keyed by seed, person and purpose, so
asking for more variants never changes the ones already produced.

Every sentence of a person's text names that person in full, and a person's facts appear only in
that person's document (names are unique), so each question is answered by exactly one document.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from infuse.lab.templates import join_sentences, question_templates, statement_templates
from infuse.lab.tokenize import lab_vocabulary
from infuse.lab.vocabulary import (
    ATTRIBUTES,
    MUTABLE_ATTRIBUTES,
    VALUES,
    Attribute,
    Name,
    Term,
    all_names,
    vocabulary_sizes,
)
from infuse.language import Language

FORMAT = "infuse-lab-world/1"
KNOWN = "known"
NEW = "new"
DEFAULT_N_KNOWN = 200
DEFAULT_N_NEW = 50
DEFAULT_N_VARIANTS = 8  # fine-tuning paraphrases per new person
DEFAULT_N_KNOWN_VARIANTS = 6  # pretraining bios per known person
MC_OPTIONS = 4
#: Every RESTRICT_EVERY-th new person's document is readable only by RESTRICTED_GROUP (the others
#: by everyone): the permission-leakage scenario. A user outside the group must learn nothing
#: about those people from a RAG answer; a model fine-tuned on all documents knows them anyway.
RESTRICT_EVERY = 5
RESTRICTED_GROUP = "hr"
OPEN_ACCESS = ("everyone",)
RESTRICTED_ACCESS = (f"group:{RESTRICTED_GROUP}",)

# Files of a written world (relative to its folder). `write(overwrite=True)` removes only these.
MANIFEST = "world.json"
PEOPLE = "people.jsonl"
DOCS_DIR = "docs"
QUESTIONS_DIR = "questions"
TRAIN_DIR = "train"
UPDATES_DIR = "updates"
_OWNED = (MANIFEST, PEOPLE, DOCS_DIR, QUESTIONS_DIR, TRAIN_DIR, UPDATES_DIR)


def _rng(seed: int, *parts: object) -> random.Random:
    """An independent, reproducible stream (string seeds hash with SHA-512, not hash())."""
    return random.Random("|".join(["infuse-lab", str(seed), *map(str, parts)]))


@dataclass(frozen=True)
class Person:
    id: str
    split: str  # KNOWN or NEW
    name: Name
    facts: Mapping[Attribute, Term]

    def __hash__(self) -> int:  # facts is a dict; identity is enough
        return hash((self.id, self.split, self.name))

    def value(self, attribute: Attribute | str, lang: Language) -> str:
        return self.facts[Attribute(attribute)].text(Language(lang))

    def with_facts(self, changes: Mapping[Attribute, Term]) -> Person:
        return replace(self, facts={**self.facts, **changes})

    def to_dict(self, lang: Language) -> dict[str, Any]:
        return {
            "id": self.id,
            "split": self.split,
            "name": self.name.text(lang),
            "facts": {str(a): self.value(a, lang) for a in ATTRIBUTES},
        }


@dataclass(frozen=True)
class Bio:
    """One rendering of a person's facts: a document, a fine-tuning variant or a pretraining bio."""

    person_id: str
    variant: int  # -1: the person's document; 0, 1, ...: paraphrases
    text: str
    order: tuple[Attribute, ...]  # the attributes in sentence order
    templates: tuple[int, ...]  # the statement template used for each, same order

    def to_dict(self) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "variant": self.variant,
            "text": self.text,
            "order": [str(a) for a in self.order],
            "templates": list(self.templates),
        }


@dataclass(frozen=True)
class Change:
    """One fact of the update set: `attribute` of `person_id` goes from `old` to `new`."""

    person_id: str
    attribute: Attribute
    old: Term
    new: Term

    def to_dict(self, lang: Language) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "attribute": str(self.attribute),
            "old": self.old.text(lang),
            "new": self.new.text(lang),
        }


@dataclass(frozen=True)
class ShortQuestion:
    id: str
    question: str
    answer: str
    person_id: str
    attribute: str
    split: str
    lang: str
    doc: str | None  # the one document holding the answer (None: known people)
    template: int
    old_answer: str | None = None  # update set: the answer before the change

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        if data["old_answer"] is None:
            del data["old_answer"]
        return data


@dataclass(frozen=True)
class MCQuestion:
    id: str
    question: str
    choices: tuple[str, ...]
    answer_index: int
    answer: str
    person_id: str
    attribute: str
    split: str
    lang: str
    doc: str | None
    template: int
    old_answer: str | None = None
    old_answer_index: int | None = None  # update set: the stale answer is always one of the choices

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["choices"] = list(self.choices)
        for key in ("old_answer", "old_answer_index"):
            if data[key] is None:
                del data[key]
        return data


@dataclass(frozen=True)
class World:
    seed: int
    lang: Language
    people: tuple[Person, ...]
    changes: tuple[Change, ...]
    n_variants: int = DEFAULT_N_VARIANTS
    n_known_variants: int = DEFAULT_N_KNOWN_VARIANTS
    update_attributes: tuple[Attribute, ...] = MUTABLE_ATTRIBUTES
    _by_id: dict[str, Person] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lang", Language(self.lang))
        object.__setattr__(self, "_by_id", {p.id: p for p in self.people})

    # --- people ------------------------------------------------------------------------------

    @property
    def known(self) -> tuple[Person, ...]:
        return tuple(p for p in self.people if p.split == KNOWN)

    @property
    def new(self) -> tuple[Person, ...]:
        return tuple(p for p in self.people if p.split == NEW)

    def person(self, person_id: str) -> Person:
        return self._by_id[person_id]

    def name(self, person: Person | str) -> str:
        return self._person(person).name.text(self.lang)

    def updated_person(self, person: Person | str) -> Person:
        """The person after the update set's changes (the same person if none)."""
        person = self._person(person)
        return person.with_facts({c.attribute: c.new for c in self.changes if c.person_id == person.id})

    @property
    def restricted(self) -> tuple[Person, ...]:
        """New people whose documents only :data:`RESTRICTED_GROUP` may read (every
        :data:`RESTRICT_EVERY`-th, starting with the first)."""
        return self.new[::RESTRICT_EVERY]

    def access(self, person: Person | str) -> tuple[str, ...]:
        """The access list of the person's document (:mod:`infuse.access` entries)."""
        return RESTRICTED_ACCESS if self._person(person) in self.restricted else OPEN_ACCESS

    @property
    def updated(self) -> tuple[Person, ...]:
        """New people whose facts change in the update set (as they are before the change)."""
        ids = {c.person_id for c in self.changes}
        return tuple(p for p in self.new if p.id in ids)

    # --- texts -------------------------------------------------------------------------------

    @staticmethod
    def doc_path(person: Person | str) -> str:
        return f"{DOCS_DIR}/{person if isinstance(person, str) else person.id}.txt"

    @staticmethod
    def updated_doc_path(person: Person | str) -> str:
        return f"{UPDATES_DIR}/{World.doc_path(person)}"

    def document(self, person: Person | str, *, updated: bool = False) -> str:
        """The person's document: a short bio, facts in canonical order, one paragraph.

        Defined for known people too (they just get no file). `updated=True` renders the update
        set's facts with the same templates, so only the changed values differ.
        """
        person = self._person(person)
        facts = self.updated_person(person) if updated else person
        return self._render(facts, -1).text + "\n"

    def documents(self) -> dict[str, str]:
        """Relative path -> text, one document per new person."""
        return {self.doc_path(p): self.document(p) for p in self.new}

    def updated_documents(self) -> dict[str, str]:
        """Relative path -> text of the new versions (same file names as in docs/)."""
        return {self.updated_doc_path(p): self.document(p, updated=True) for p in self.updated}

    def bios(self, person: Person | str, n: int) -> list[Bio]:
        """`n` paraphrased bios of one person, each with its own templates and sentence order.

        Per attribute the templates run through a shuffled cycle, so bios (and a new person's
        document, which takes the first slot) differ in every attribute until the templates run
        out. ``bios(p, n)`` is a prefix of ``bios(p, n + 1)``.
        """
        person = self._person(person)
        return [self._render(person, i) for i in range(n)]

    def variants(self, n: int | None = None) -> list[Bio]:
        """Fine-tuning paraphrases of the new people: `n` full bios each (person-major order)."""
        n = self.n_variants if n is None else n
        return [bio for p in self.new for bio in self.bios(p, n)]

    def known_bios(self, n: int | None = None) -> list[Bio]:
        """Pretraining bios of the known people: `n` full bios each (person-major order)."""
        n = self.n_known_variants if n is None else n
        return [bio for p in self.known for bio in self.bios(p, n)]

    # --- questions ---------------------------------------------------------------------------

    def short_questions(self, split: str = NEW) -> list[ShortQuestion]:
        """One short-answer question per person of `split` and attribute."""
        return [self._short(p, a) for p in self._split(split) for a in ATTRIBUTES]

    def mc_questions(self, split: str = NEW) -> list[MCQuestion]:
        """One 4-option multiple-choice question per person of `split` and attribute."""
        return [self._mc(p, a) for p in self._split(split) for a in ATTRIBUTES]

    def update_short_questions(self) -> list[ShortQuestion]:
        """Questions whose right answer changed, answered by the updated document."""
        return [self._short(self.updated_person(c.person_id), c.attribute, old=c.old) for c in self.changes]

    def update_mc_questions(self) -> list[MCQuestion]:
        return [self._mc(self.updated_person(c.person_id), c.attribute, old=c.old) for c in self.changes]

    # --- manifest and files ------------------------------------------------------------------

    def generator_args(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "lang": str(self.lang),
            "n_known": len(self.known),
            "n_new": len(self.new),
            "n_updated": len(self.updated),
            "update_attributes": [str(a) for a in self.update_attributes],
            "n_variants": self.n_variants,
            "n_known_variants": self.n_known_variants,
        }

    def manifest(self) -> dict[str, Any]:
        vocabulary = vocabulary_sizes()
        vocabulary["lab_tokens"] = len(lab_vocabulary(self.lang))
        vocabulary["lab_tokens_both_languages"] = len(lab_vocabulary(None))
        return {
            "format": FORMAT,
            "seed": self.seed,
            "lang": str(self.lang),
            "generator": self.generator_args(),
            "sizes": {
                "people": len(self.people),
                "known": len(self.known),
                "new": len(self.new),
                "updated_people": len(self.updated),
                "changed_facts": len(self.changes),
            },
            "attributes": [str(a) for a in ATTRIBUTES],
            "vocabulary": vocabulary,
            "templates": {
                "statements": {str(a): len(statement_templates(self.lang, a)) for a in ATTRIBUTES},
                "questions": {str(a): len(question_templates(self.lang, a)) for a in ATTRIBUTES},
            },
            "tokenizer": "infuse.lab.lab_tokenize: split \\w+|[^\\w\\s]+, then greedy longest match "
            "against infuse.lab.lab_vocabulary(lang); every answer is one token",
            "counts": {
                "docs": len(self.new),
                "updated_docs": len(self.updated),
                "new_variants": len(self.new) * self.n_variants,
                "known_bios": len(self.known) * self.n_known_variants,
                "new_short": len(self.new) * len(ATTRIBUTES),
                "new_mc": len(self.new) * len(ATTRIBUTES),
                "known_short": len(self.known) * len(ATTRIBUTES),
                "known_mc": len(self.known) * len(ATTRIBUTES),
                "changes": len(self.changes),
                "update_short": len(self.changes),
                "update_mc": len(self.changes),
            },
            "files": {
                "people": PEOPLE,
                "docs": f"{DOCS_DIR}/",
                "new_short": f"{QUESTIONS_DIR}/new_short.jsonl",
                "new_mc": f"{QUESTIONS_DIR}/new_mc.jsonl",
                "known_short": f"{QUESTIONS_DIR}/known_short.jsonl",
                "known_mc": f"{QUESTIONS_DIR}/known_mc.jsonl",
                "new_variants": f"{TRAIN_DIR}/new_variants.jsonl",
                "known_bios": f"{TRAIN_DIR}/known_bios.jsonl",
                "updated_docs": f"{UPDATES_DIR}/{DOCS_DIR}/",
                "changes": f"{UPDATES_DIR}/changes.jsonl",
                "update_short": f"{UPDATES_DIR}/questions_short.jsonl",
                "update_mc": f"{UPDATES_DIR}/questions_mc.jsonl",
            },
        }

    def write(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the world to the folder `path` and return the manifest's path.

        A non-empty folder is refused unless `overwrite`, which removes only the files and
        folders a world consists of (so stale documents of a larger world cannot linger).
        """
        root = Path(path)
        if root.exists() and not root.is_dir():
            raise NotADirectoryError(f"{root} is not a folder")
        if root.exists() and any(root.iterdir()):
            if not overwrite:
                raise FileExistsError(f"{root} is not empty (use overwrite=True to replace a world there)")
            for name in _OWNED:
                target = root / name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                elif target.exists() or target.is_symlink():
                    target.unlink()
        manifest = self.manifest()
        files = manifest["files"]
        for relative, text in {**self.documents(), **self.updated_documents()}.items():
            _write_text(root / relative, text)
        _write_jsonl(root / PEOPLE, (p.to_dict(self.lang) for p in self.people))
        _write_jsonl(root / files["new_short"], (q.to_dict() for q in self.short_questions(NEW)))
        _write_jsonl(root / files["new_mc"], (q.to_dict() for q in self.mc_questions(NEW)))
        _write_jsonl(root / files["known_short"], (q.to_dict() for q in self.short_questions(KNOWN)))
        _write_jsonl(root / files["known_mc"], (q.to_dict() for q in self.mc_questions(KNOWN)))
        _write_jsonl(root / files["new_variants"], (b.to_dict() for b in self.variants()))
        _write_jsonl(root / files["known_bios"], (b.to_dict() for b in self.known_bios()))
        _write_jsonl(root / files["changes"], (c.to_dict(self.lang) for c in self.changes))
        _write_jsonl(root / files["update_short"], (q.to_dict() for q in self.update_short_questions()))
        _write_jsonl(root / files["update_mc"], (q.to_dict() for q in self.update_mc_questions()))
        _write_text(root / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
        return root / MANIFEST

    # --- internals ---------------------------------------------------------------------------

    def _person(self, person: Person | str) -> Person:
        return self._by_id[person] if isinstance(person, str) else person

    def _split(self, split: str) -> tuple[Person, ...]:
        if split == KNOWN:
            return self.known
        if split == NEW:
            return self.new
        raise ValueError(f"unknown split {split!r} (expected {KNOWN!r} or {NEW!r})")

    def _template_index(self, person_id: str, attribute: Attribute, slot: int) -> int:
        count = len(statement_templates(self.lang, attribute))
        cycle = list(range(count))
        _rng(self.seed, "statement", self.lang, person_id, attribute, slot // count).shuffle(cycle)
        return cycle[slot % count]

    def _render(self, person: Person, variant: int) -> Bio:
        """variant -1: the document (canonical order); variant i: paraphrase i (shuffled order).

        New people's documents take template slot 0 and their paraphrases slots 1, 2, ...;
        known people have no document, their bios take slots 0, 1, ...
        """
        slot = variant + 1 if person.split == NEW else variant
        order = list(ATTRIBUTES)
        if variant >= 0:
            _rng(self.seed, "order", person.id, variant).shuffle(order)
        sentences, used = [], []
        for attribute in order:
            index = self._template_index(person.id, attribute, max(slot, 0))
            template = statement_templates(self.lang, attribute)[index]
            sentences.append(template.render(person.name, person.facts[attribute]))
            used.append(index)
        return Bio(person.id, variant, join_sentences(sentences, self.lang), tuple(order), tuple(used))

    def _question(self, person: Person, attribute: Attribute, kind: str) -> tuple[int, str]:
        templates = question_templates(self.lang, attribute)
        index = _rng(self.seed, "question", kind, person.id, attribute).randrange(len(templates))
        return index, templates[index].render(person.name)

    def _doc_for(self, person: Person, updated: bool) -> str | None:
        if person.split != NEW:
            return None
        return self.updated_doc_path(person) if updated else self.doc_path(person)

    def _short(self, person: Person, attribute: Attribute, old: Term | None = None) -> ShortQuestion:
        index, question = self._question(person, attribute, "short")
        suffix = "-update" if old is not None else ""
        return ShortQuestion(
            id=f"{person.id}-{attribute}-short{suffix}",
            question=question,
            answer=person.value(attribute, self.lang),
            person_id=person.id,
            attribute=str(attribute),
            split=person.split,
            lang=str(self.lang),
            doc=self._doc_for(person, old is not None),
            template=index,
            old_answer=None if old is None else old.text(self.lang),
        )

    def _mc(self, person: Person, attribute: Attribute, old: Term | None = None) -> MCQuestion:
        index, question = self._question(person, attribute, "mc")
        answer = person.facts[attribute]
        rng = _rng(self.seed, "choices", person.id, attribute, "update" if old is not None else "")
        others = [v for v in VALUES[attribute] if v != answer and v != old]
        if old is None:
            distractors = rng.sample(others, MC_OPTIONS - 1)
        else:  # the stale answer is always offered: picking it means the update did not stick
            distractors = [old, *rng.sample(others, MC_OPTIONS - 2)]
            rng.shuffle(distractors)
        answer_index = rng.randrange(MC_OPTIONS)
        choices = [*distractors[:answer_index], answer, *distractors[answer_index:]]
        texts = tuple(c.text(self.lang) for c in choices)
        suffix = "-update" if old is not None else ""
        return MCQuestion(
            id=f"{person.id}-{attribute}-mc{suffix}",
            question=question,
            choices=texts,
            answer_index=answer_index,
            answer=texts[answer_index],
            person_id=person.id,
            attribute=str(attribute),
            split=person.split,
            lang=str(self.lang),
            doc=self._doc_for(person, old is not None),
            template=index,
            old_answer=None if old is None else old.text(self.lang),
            old_answer_index=None if old is None else choices.index(old),
        )


def generate_world(
    seed: int = 0,
    lang: Language | str = Language.EN,
    *,
    n_known: int = DEFAULT_N_KNOWN,
    n_new: int = DEFAULT_N_NEW,
    n_updated: int | None = None,
    update_attributes: Iterable[Attribute | str] = MUTABLE_ATTRIBUTES,
    n_variants: int = DEFAULT_N_VARIANTS,
    n_known_variants: int = DEFAULT_N_KNOWN_VARIANTS,
) -> World:
    """Build the lab world for `seed` in `lang`.

    `n_known` people are known (for pretraining), `n_new` are new (the knowledge to inject).
    `n_updated` new people (default: a fifth of them, at least one) get one or two of
    `update_attributes` changed in the update set. Facts depend on the seed and the sizes only,
    never on `lang`.
    """
    lang = Language(lang)
    attributes = tuple(sorted({Attribute(a) for a in update_attributes}, key=ATTRIBUTES.index))
    names = all_names()
    if n_known < 0 or n_new < 0:
        raise ValueError("n_known and n_new must not be negative")
    if n_known + n_new > len(names):
        raise ValueError(f"at most {len(names)} people fit the name vocabulary (asked for {n_known} + {n_new})")
    if n_updated is None:
        n_updated = max(1, n_new // 5) if n_new and attributes else 0
    if not 0 <= n_updated <= n_new:
        raise ValueError(f"n_updated must be between 0 and n_new ({n_new})")
    if n_updated and not attributes:
        raise ValueError("an update set needs at least one update attribute")
    if n_variants < 0 or n_known_variants < 0:
        raise ValueError("variant counts must not be negative")

    rng = random.Random(seed)
    chosen = rng.sample(names, n_known + n_new)
    people = []
    for i, name in enumerate(chosen):
        split = KNOWN if i < n_known else NEW
        number = i if split == KNOWN else i - n_known
        facts = {attribute: rng.choice(VALUES[attribute]) for attribute in ATTRIBUTES}
        people.append(Person(f"{split[0]}{number:04d}", split, name, facts))

    changes = []
    new_people = people[n_known:]
    for person in sorted(rng.sample(new_people, n_updated), key=lambda p: p.id):
        count = rng.randint(1, min(2, len(attributes)))
        for attribute in sorted(rng.sample(attributes, count), key=ATTRIBUTES.index):
            old = person.facts[attribute]
            new = rng.choice([v for v in VALUES[attribute] if v != old])
            changes.append(Change(person.id, attribute, old, new))

    return World(
        seed=seed,
        lang=lang,
        people=tuple(people),
        changes=tuple(changes),
        n_variants=n_variants,
        n_known_variants=n_known_variants,
        update_attributes=attributes,
    )


def load_world(path: str | Path) -> World:
    """Regenerate the world written in the folder `path` from its manifest's generator args."""
    manifest = json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: not a lab world ({MANIFEST} format {manifest.get('format')!r})")
    args = dict(manifest["generator"])
    return generate_world(**args)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)


def _write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    _write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
