"""The quality gate for model-written training text: garbage never becomes a training row.

A small or badly prompted model rewrites a passage into a summary that drops the names and
numbers, answers in the wrong language, echoes the prompt, or invents an answer the passage does
not hold. Training on that teaches the model the wrong facts, so every model-written row is
checked against its source chunk, with the knowledge base's own tokenisers (EN stemming, Japanese
Sudachi: :class:`infuse.retrieval.lexical.LanguageAwareTokenizer`) and language detection
(:mod:`infuse.language`):

* a **paraphrase** must read as the chunk's language, be of a comparable length (a quarter to four
  times the chunk's), and keep at least ``min_key_share`` of the chunk's key terms: its rarest
  content terms across the chunks being written for (names, places, numbers, dates come first,
  because they are what is rare), at most ``key_terms`` of them;
* a **question-answer pair** must have a question in the chunk's language and an answer grounded
  in the chunk: the answer's text appears in it, or all of the answer's content terms do.

Each rejection has a reason (``missing_key_terms``, ``wrong_language``, ``too_short``,
``too_long``, ``answer_not_in_chunk``, ``empty``); the dataset's manifest counts them.

>>> gate = QualityGate(chunks)                              # doctest: +SKIP
>>> gate.paraphrase_problem(chunk, "It is about a person.")  # doctest: +SKIP
'missing_key_terms'
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

from infuse.documents.models import Chunk
from infuse.language import detect_language
from infuse.retrieval.lexical import LanguageAwareTokenizer
from infuse.tuning.generators import QAPair, chunk_language


def _folded(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()


class QualityGate:
    """Checks model-written paraphrases and QA pairs against their chunks (see the module docstring)."""

    def __init__(
        self,
        chunks: Sequence[Chunk],
        *,
        key_terms: int = 8,
        min_key_share: float = 0.6,
        min_length_ratio: float = 0.25,
        max_length_ratio: float = 4.0,
    ) -> None:
        self.tokenizer = LanguageAwareTokenizer()
        self._lock = threading.Lock()
        self.key_terms_per_chunk = key_terms
        self.min_key_share = min_key_share
        self.min_length_ratio = min_length_ratio
        self.max_length_ratio = max_length_ratio
        self._terms = lru_cache(maxsize=4096)(self._tokenize)
        self.document_frequency: Counter[str] = Counter()
        for chunk in chunks:
            self.document_frequency.update(set(self._terms(chunk.text)))

    def _tokenize(self, text: str) -> tuple[str, ...]:
        with self._lock:  # the writer's threads share one Sudachi/Snowball tokenizer, which is not thread-safe
            return tuple(self.tokenizer.tokenize(text))

    def key_terms(self, chunk: Chunk) -> list[str]:
        """The chunk's rarest content terms (fewest chunks holding them first, longer first on ties)."""
        terms = dict.fromkeys(self._terms(chunk.text))  # unique, in order of appearance
        ranked = sorted(terms, key=lambda t: (self.document_frequency.get(t, 0), -len(t)))
        return ranked[: self.key_terms_per_chunk]

    def paraphrase_problem(self, chunk: Chunk, text: str) -> str | None:
        """Why `text` is not a usable paraphrase of `chunk`, or None when it is."""
        if not text.strip():
            return "empty"
        if detect_language(text) is not chunk_language(chunk):
            return "wrong_language"
        ratio = len(text.strip()) / max(1, len(chunk.text.strip()))
        if ratio < self.min_length_ratio:
            return "too_short"
        if ratio > self.max_length_ratio:
            return "too_long"
        wanted = self.key_terms(chunk)
        if wanted:
            present = set(self._terms(text))
            if sum(t in present for t in wanted) / len(wanted) < self.min_key_share:
                return "missing_key_terms"
        return None

    def qa_problem(self, chunk: Chunk, pair: QAPair) -> str | None:
        """Why `pair` is not a usable question-answer pair for `chunk`, or None when it is."""
        if not pair.question.strip() or not pair.answer.strip():
            return "empty"
        if detect_language(pair.question) is not chunk_language(chunk):
            return "wrong_language"
        if _folded(pair.answer) in _folded(chunk.text):
            return None
        answer_terms = set(self._terms(pair.answer))
        if answer_terms and answer_terms <= set(self._terms(chunk.text)):
            return None
        return "answer_not_in_chunk"


__all__ = ["QualityGate"]
