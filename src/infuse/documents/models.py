"""The document and chunk records that flow from loaders through chunking into the store."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from infuse.language import Language


class FileType(StrEnum):
    TEXT = "txt"
    MARKDOWN = "md"
    HTML = "html"
    PDF = "pdf"
    DOCX = "docx"
    JSONL = "jsonl"
    JSON = "json"


@dataclass(frozen=True)
class Section:
    """A span of a document's text that chunks never cross: a Markdown/HTML/DOCX section or a PDF page."""

    start: int
    end: int
    heading_path: tuple[str, ...] = ()
    page: int | None = None


@dataclass(frozen=True)
class Document:
    """One unit of knowledge with a stable identity.

    ``text`` is what the loader extracted; chunk offsets index into it. For .txt and .md files it
    is the decoded file content itself, so offsets slice the source file's text exactly.
    """

    doc_id: str
    source_path: str
    file_type: FileType
    text: str
    content_hash: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    sections: tuple[Section, ...] = ()
    # Text the source hides from human readers (HTML: hidden/aria-hidden elements, display:none,
    # font-size:0...). Kept out of ``text``; screened for prompt injection at ingest.
    hidden_text: tuple[str, ...] = ()
    # Who may read the document (``user:NAME``, ``group:NAME``); every chunk inherits it. Empty: not restricted.
    access: tuple[str, ...] = ()

    def section_spans(self) -> tuple[Section, ...]:
        return self.sections or (Section(0, len(self.text)),)


@dataclass(frozen=True)
class Chunk:
    """A retrievable passage and where it came from: the one record of a chunk.

    Stored rows, ranked lists, search hits and citations all *refer to* a ``Chunk`` instead of
    copying its fields, so a new attribute (screening flags, an access list) is added here and in
    the store's column table, nowhere else. Invariant: ``document.text[start:end] == text``.

    ``content_hash`` is the document's (a chunk changes when its document does); ``flags`` are the
    prompt-injection screening rules its text matched (empty when clean); ``access`` lists who may
    read it (``user:NAME``, ``group:NAME``; empty: not restricted).
    """

    chunk_id: str
    doc_id: str
    source_path: str
    file_type: FileType
    index: int
    text: str
    start: int
    end: int
    lang: Language
    n_tokens: int = 0
    heading_path: tuple[str, ...] = ()
    page: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    content_hash: str = ""
    flags: tuple[str, ...] = ()
    access: tuple[str, ...] = ()

    def to_json(self, *names: str) -> dict[str, Any]:
        """The named fields as JSON values (tuples as lists, enums as their values), in that order:
        the one mapping of a chunk to the JSON of hits and citations.

        >>> Chunk("d#c0", "d", "/d.md", FileType.MARKDOWN, 0, "Hi.", 0, 3, Language.EN).to_json("chunk_id", "lang")
        {'chunk_id': 'd#c0', 'lang': 'en'}
        """
        out: dict[str, Any] = {}
        for name in names:
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, StrEnum):
                value = value.value
            elif isinstance(value, Mapping):
                value = dict(value)
            out[name] = value
        return out

    def embedding_input(self) -> str:
        """Text given to the embedder and the keyword index: the heading path, then the passage."""
        context = " > ".join(self.heading_path)
        return f"{context}\n{self.text}" if context else self.text


@dataclass(frozen=True)
class LoadWarning:
    """Something loading did that the user should check (the document was still ingested)."""

    path: str
    message: str


def sha256_hex(data: bytes | str) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()
