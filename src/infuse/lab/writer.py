"""The lab world as a training-text writer: its own template paraphrases and questions.

For a knowledge base made of a lab world's documents these are exact (every rewrite keeps every
fact) and free, so ``infuse dataset build`` prefers them to a model. The writer registers itself
with :func:`infuse.tuning.generators.register_writer` when :mod:`infuse.lab` is imported: the
tuning library never imports the lab, the lab plugs into it.

>>> writer = LabWorldWriter.detect(list(workspace.knowledge_snapshot().iter_chunks()))   # doctest: +SKIP
>>> writer.qa_pairs(chunk, n=3, seed=0)                                                   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from infuse.documents.models import Chunk
from infuse.lab.templates import question_templates
from infuse.lab.vocabulary import ATTRIBUTES
from infuse.lab.world import MANIFEST, UPDATES_DIR, Person, World, load_world
from infuse.models.base import ModelError
from infuse.tuning.generators import QAPair, register_writer

LAB_WRITER_NAME = "lab world templates"


class LabWorldWriter:
    """The lab world's own paraphrases and questions for chunks of its documents.

    A chunk belongs to the world when its source file is ``DIR/docs/<person>.txt`` or
    ``DIR/updates/docs/<person>.txt`` and ``DIR/world.json`` exists; the updated documents get
    paraphrases of the updated facts.
    """

    name = LAB_WRITER_NAME

    def __init__(self, world: World, root: Path) -> None:
        self.world = world
        self.root = root.resolve()

    @classmethod
    def detect(cls, chunks: Sequence[Chunk]) -> LabWorldWriter | None:
        """The writer for the lab world all `chunks` come from, or None if they are not all lab documents."""
        roots = {world_root(Path(c.source_path), MANIFEST) for c in chunks}
        if len(roots) != 1 or None in roots:
            return None
        root = roots.pop()
        assert root is not None
        writer = cls(load_world(root), root)
        return writer if all(writer.person(c) is not None for c in chunks) else None

    def person(self, chunk: Chunk) -> Person | None:
        path = Path(chunk.source_path).resolve()
        try:
            person = self.world.person(path.stem)
        except KeyError:
            return None
        updated = path.relative_to(self.root).parts[0] == UPDATES_DIR
        return self.world.updated_person(person) if updated else person

    def _person(self, chunk: Chunk) -> Person:
        person = self.person(chunk)
        if person is None:
            raise ModelError(f"{chunk.source_path} is not a document of the lab world in {self.root}")
        return person

    def paraphrases(self, chunk: Chunk, n: int, seed: int) -> list[str]:
        """The world's paraphrase variants 0..n-1 (the document itself is a different rendering)."""
        return [bio.text for bio in self.world.bios(self._person(chunk), n)]

    def qa_pairs(self, chunk: Chunk, n: int, seed: int) -> list[QAPair]:
        """One question per attribute (template by seed and position), up to `n`."""
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


register_writer(LabWorldWriter.detect)

__all__ = ["LAB_WRITER_NAME", "LabWorldWriter", "world_root"]
