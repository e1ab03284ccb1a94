"""The document and chunk records that flow from loaders through chunking into the store."""

from __future__ import annotations

import hashlib
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

    def section_spans(self) -> tuple[Section, ...]:
        return self.sections or (Section(0, len(self.text)),)


@dataclass(frozen=True)
class Chunk:
    """A retrievable passage: ``document.text[start:end] == text``."""

    chunk_id: str
    doc_id: str
    index: int
    text: str
    start: int
    end: int
    n_tokens: int
    lang: Language
    heading_path: tuple[str, ...] = ()
    page: int | None = None

    def embedding_input(self) -> str:
        """Text given to the embedder and the keyword index: the heading path, then the passage."""
        context = " > ".join(self.heading_path)
        return f"{context}\n{self.text}" if context else self.text


def sha256_hex(data: bytes | str) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()
