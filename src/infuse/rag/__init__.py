"""Grounded answers (retrieval-augmented generation): pipeline, prompts, citations, relevance gate."""

from infuse.rag.citations import CITATION, Citation, parse_citations, strip_citations
from infuse.rag.pipeline import RagAnswer, RagPipeline, RagStream, Timings
from infuse.rag.prompts import (
    CLOSED_BOOK_PROMPTS,
    FLAGGED_WARNING,
    NOT_FOUND,
    PASSAGES_LABEL,
    QUESTION_LABEL,
    SYSTEM_PROMPTS,
    build_messages,
    closed_book_messages,
    escape_passage,
)
from infuse.rag.relevance import RelevanceGate

__all__ = [
    "CITATION",
    "CLOSED_BOOK_PROMPTS",
    "Citation",
    "FLAGGED_WARNING",
    "NOT_FOUND",
    "PASSAGES_LABEL",
    "QUESTION_LABEL",
    "RagAnswer",
    "RagPipeline",
    "RagStream",
    "RelevanceGate",
    "SYSTEM_PROMPTS",
    "Timings",
    "build_messages",
    "closed_book_messages",
    "escape_passage",
    "parse_citations",
    "strip_citations",
]
