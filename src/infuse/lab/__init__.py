"""The knowledge lab: a fictional world with ground truth (and, later, a tiny model trained on it).

>>> from infuse.lab import generate_world
>>> world = generate_world(seed=0, lang="en")
>>> import tempfile
>>> from pathlib import Path
>>> with tempfile.TemporaryDirectory() as tmp:
...     written = world.write(Path(tmp) / "lab-world")
...     sorted(path.name for path in written.parent.iterdir())
['docs', 'people.jsonl', 'questions', 'train', 'updates', 'world.json']
"""

from infuse.lab.templates import QuestionTemplate, Template, question_templates, statement_templates
from infuse.lab.tokenize import build_lab_tokenizer, lab_tokenize, lab_vocabulary
from infuse.lab.vocabulary import ATTRIBUTES, MUTABLE_ATTRIBUTES, VALUES, Attribute, Name, Term
from infuse.lab.world import (
    KNOWN,
    NEW,
    Bio,
    Change,
    MCQuestion,
    Person,
    ShortQuestion,
    World,
    generate_world,
    load_world,
)
from infuse.lab.writer import LabWorldWriter  # registers the world's templates as a dataset writer

__all__ = [
    "ATTRIBUTES",
    "MUTABLE_ATTRIBUTES",
    "VALUES",
    "KNOWN",
    "NEW",
    "Attribute",
    "Bio",
    "Change",
    "LabWorldWriter",
    "MCQuestion",
    "Name",
    "Person",
    "QuestionTemplate",
    "ShortQuestion",
    "Template",
    "Term",
    "World",
    "build_lab_tokenizer",
    "generate_world",
    "lab_tokenize",
    "lab_vocabulary",
    "load_world",
    "question_templates",
    "statement_templates",
]
