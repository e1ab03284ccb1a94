"""Citation markers in answers: the one pattern that finds them, and the records they point to.

Markers are ``[1]``, ``[1, 2]``, ``[1、2]`` and their full-width forms (``［２］``). Answers are
NFKC-normalised before parsing, so full-width digits and brackets count the same.

>>> strip_citations("Backups are kept for 30 days [1][2, 3].")
'Backups are kept for 30 days.'
>>> [int(n) for m in CITATION.finditer("A [1] B ［２、３］") for n in citation_numbers(m)]
[1, 2, 3]
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from infuse.documents.models import Chunk
from infuse.retrieval.search import SearchHit

CITATION = re.compile(r"[\[［]\s*(\d+(?:\s*[,、]\s*\d+)*)\s*[\]］]")
_LEADING_SPACE_CITATION = re.compile(r"\s*" + CITATION.pattern)
_NUMBER_SEPARATOR = re.compile(r"\s*[,、]\s*")


def citation_numbers(match: re.Match[str]) -> list[int]:
    """The passage numbers in one marker."""
    return [int(n) for n in _NUMBER_SEPARATOR.split(match.group(1))]


def strip_citations(text: str) -> str:
    """The answer without its citation markers (and the spaces before them)."""
    return _LEADING_SPACE_CITATION.sub("", text).strip()


# The chunk fields a citation's JSON shows.
CITATION_CHUNK_FIELDS = ("chunk_id", "doc_id", "source_path", "start", "end", "page", "text")


@dataclass(frozen=True)
class Citation:
    """A passage the answer cites: ``number`` is the [n] marker used in the answer."""

    number: int
    chunk: Chunk

    def to_dict(self) -> dict[str, Any]:
        """The JSON of a citation (a stable interface: ``ask --json`` and the server's ``citations``)."""
        return {"number": self.number, **self.chunk.to_json(*CITATION_CHUNK_FIELDS)}


def parse_citations(answer: str, passages: list[SearchHit]) -> tuple[list[Citation], list[int]]:
    """Markers like [1], [1, 2], ［２］ -> the cited passages (in order of first use) and unknown numbers."""
    numbers: list[int] = []
    for match in CITATION.finditer(unicodedata.normalize("NFKC", answer)):
        numbers.extend(citation_numbers(match))
    cited, invalid = [], []
    for number in dict.fromkeys(numbers):
        if 1 <= number <= len(passages):
            cited.append(Citation(number, passages[number - 1].chunk))
        else:
            invalid.append(number)
    return cited, invalid
