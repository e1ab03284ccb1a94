"""Grounded answers: retrieve -> gate -> build the prompt -> generate -> parse citations.

The pipeline takes what it uses: a :class:`~infuse.retrieval.search.Retriever` (so a server can
give each user a retriever that only sees what that user may read), a model, and the RAG
settings. When no retrieved passage passes the relevance gate the answer says so without
calling the model. The prompt language follows the question's language.

In a chat, a follow-up such as "How long are they kept?" says nothing retrievable on its own.
:func:`standalone_query` makes it standalone for retrieval by putting the earlier user turns it
continues in front of it. The rule is model-free and deterministic (a referring word such as
"they"/"それ", or three words or fewer, marks a follow-up), so it costs no generation under the
one-at-a-time model lock, cannot be derailed by a weak model's rewrite, and is testable; the
extra words of an earlier turn only widen hybrid retrieval. The prompt still shows the question as
asked, after the conversation.

>>> pipeline = workspace.rag_pipeline(load_model(workspace.settings.model))  # doctest: +SKIP
>>> pipeline = RagPipeline(retriever, model, RagSettings(), LanguageAwareTokenizer())  # doctest: +SKIP
>>> answer = pipeline.answer("How often are API keys rotated?")  # doctest: +SKIP
>>> answer.text, [c.chunk.source_path for c in answer.citations]  # doctest: +SKIP
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from infuse.config import RagSettings
from infuse.language import Language, detect_language
from infuse.models.base import ChatMessage, FinishReason, GenerationConfig, GenerationStream, LanguageModel
from infuse.rag.citations import Citation, parse_citations
from infuse.rag.prompts import NOT_FOUND, build_messages, closed_book_messages
from infuse.rag.relevance import RelevanceGate
from infuse.retrieval.lexical import Tokenizer
from infuse.retrieval.search import Retriever, SearchHit
from infuse.store.filters import FilterLike


@dataclass
class Timings:
    retrieval_ms: float = 0.0
    prompt_ms: float = 0.0
    generation_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.retrieval_ms + self.prompt_ms + self.generation_ms


@dataclass
class RagAnswer:
    question: str
    text: str
    language: Language
    used_retrieval: bool
    found_relevant: bool
    citations: list[Citation] = field(default_factory=list)
    passages: list[SearchHit] = field(default_factory=list)
    invalid_citations: list[int] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    timings: Timings = field(default_factory=Timings)
    model: str = ""
    finish_reason: FinishReason = FinishReason.STOP  # LENGTH when max_new_tokens cut the answer off
    retrieval_query: str = ""  # what retrieval searched for (the question made standalone in a chat)

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.text,
            "language": self.language.value,
            "model": self.model,
            "used_retrieval": self.used_retrieval,
            "found_relevant": self.found_relevant,
            "citations": [c.to_dict() for c in self.citations],
            "invalid_citations": self.invalid_citations,
            "passages": [p.to_dict() for p in self.passages],
            "finish_reason": self.finish_reason.value,
            "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens},
            "timings": {**asdict(self.timings), "total_ms": self.timings.total_ms},
        }


class RagStream:
    """Answer text as it is generated; ``answer`` is complete once the stream is exhausted."""

    def __init__(self, answer: RagAnswer, generation: GenerationStream | None) -> None:
        self.answer = answer
        self._generation = generation

    def __iter__(self) -> Iterator[str]:
        if self._generation is None:
            yield self.answer.text
            return
        yield from self._generation
        result = self._generation.result
        assert result is not None
        self.answer.text = result.text
        self.answer.prompt_tokens = result.prompt_tokens
        self.answer.completion_tokens = result.completion_tokens
        self.answer.finish_reason = result.finish_reason
        self.answer.timings.generation_ms = result.seconds * 1000
        if self.answer.used_retrieval:
            self.answer.citations, self.answer.invalid_citations = parse_citations(result.text, self.answer.passages)

    def collect(self) -> RagAnswer:
        for _ in self:
            pass
        return self.answer

    def cancel(self) -> None:
        """Stop generating at the next step (see :meth:`GenerationStream.cancel`); any thread."""
        if self._generation is not None:
            self._generation.cancel()

    def close(self) -> None:
        """Cancel and release the model's resources now."""
        if self._generation is not None:
            self._generation.close()


class RagPipeline:
    """Retrieval-augmented generation over a retriever.

    ``filters`` narrow every retrieval (e.g. to the passages one user may read); they are
    combined with the filters of each call.
    """

    def __init__(
        self,
        retriever: Retriever,
        model: LanguageModel,
        settings: RagSettings,
        tokenizer: Tokenizer,
        generation: GenerationConfig | None = None,
    ) -> None:
        self.retriever = retriever
        self.model = model
        self.settings = settings
        self.generation = generation or GenerationConfig()
        self.gate = RelevanceGate(tokenizer, settings.min_dense_score, settings.min_keyword_coverage)

    def answer(
        self, question: str, k: int | None = None, use_retrieval: bool = True, *, filters: FilterLike = None
    ) -> RagAnswer:
        return self.stream(question, k, use_retrieval, filters=filters).collect()

    def stream(
        self,
        question: str,
        k: int | None = None,
        use_retrieval: bool = True,
        history: Sequence[ChatMessage] = (),
        generation: GenerationConfig | None = None,
        *,
        filters: FilterLike = None,
        guidance: str = "",
    ) -> RagStream:
        """Start answering; ``history`` holds earlier turns of a chat (system messages excluded);
        ``guidance`` is a chat client's system message (kept below infuse's own rules)."""
        generation = generation or self.generation
        answer, messages = self.prepare(
            question, k, use_retrieval, history, generation, filters=filters, guidance=guidance
        )
        if messages is None:
            return RagStream(answer, None)
        return RagStream(answer, self.model.stream(messages, generation))

    def prepare(
        self,
        question: str,
        k: int | None = None,
        use_retrieval: bool = True,
        history: Sequence[ChatMessage] = (),
        generation: GenerationConfig | None = None,
        *,
        filters: FilterLike = None,
        guidance: str = "",
    ) -> tuple[RagAnswer, list[ChatMessage] | None]:
        """Retrieval and the prompt, without calling the model: the answer so far (passages,
        timings) and the messages to send, or None when nothing relevant was found (the answer
        then already says so). Evaluation scores multiple-choice options against these messages."""
        generation = generation or self.generation
        language = detect_language(question)
        answer = RagAnswer(question, "", language, use_retrieval, found_relevant=False, model=self.model.name)
        if not use_retrieval:
            started = time.perf_counter()
            messages = closed_book_messages(question, language, history, guidance)
            answer.timings.prompt_ms = (time.perf_counter() - started) * 1000
            return answer, messages

        started = time.perf_counter()
        query = answer.retrieval_query = standalone_query(question, history)
        hits = self.retriever.search(query, k or self.settings.k, filters)
        answer.timings.retrieval_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        statistics = self.retriever.term_statistics()
        answer.passages = [hit for hit in hits if self.gate.passes(query, hit, statistics)]
        answer.found_relevant = bool(answer.passages)
        if not answer.passages:
            answer.text = NOT_FOUND[language]
            answer.timings.prompt_ms = (time.perf_counter() - started) * 1000
            return answer, None
        messages = self._fit(question, answer, history, generation, guidance)
        answer.timings.prompt_ms = (time.perf_counter() - started) * 1000
        return answer, messages

    def _fit(
        self,
        question: str,
        answer: RagAnswer,
        history: Sequence[ChatMessage],
        generation: GenerationConfig,
        guidance: str = "",
    ) -> list[ChatMessage]:
        """The prompt, after dropping the lowest-ranked passages until it fits the model's context."""
        limit = self.model.context_length
        while True:
            messages = build_messages(question, answer.passages, answer.language, history, guidance)
            if limit is None or len(answer.passages) <= 1:
                return messages
            # 16 tokens of slack for the chat template's role markers.
            used = sum(self.model.count_tokens(m["content"]) + 4 for m in messages) + 16
            if used + generation.max_new_tokens <= limit:
                return messages
            answer.passages = answer.passages[:-1]


# Words that point back to an earlier turn ("How long are they kept?", "その期限は？"). "that" and
# "there" are left out: "Is there a limit" and "the policy that ..." are usually standalone.
_REFERRING_EN = frozenset("it its they them their theirs this these those he him his she her same".split())
_OPENERS_EN = ("and ", "but ", "also ", "what about ", "how about ")
_REFERRING_JA = ("それ", "その", "これ", "この", "あれ", "あの", "そこ", "彼", "同じ", "では", "じゃあ")
FOLLOW_UP_MAX_WORDS = 3  # an English question this short continues the conversation ("And in Japan?")
FOLLOW_UP_MAX_CHARS_JA = 8  # likewise for Japanese, in characters ("夏季は？")
FOLLOW_UP_MAX_TURNS = 3  # a retrieval query joins at most this many user turns


def is_follow_up(question: str) -> bool:
    """Whether ``question`` leans on an earlier turn: a referring word, a continuing opener, or very short."""
    text = question.strip()
    if detect_language(text) is Language.JA:
        return len(text) <= FOLLOW_UP_MAX_CHARS_JA or any(word in text for word in _REFERRING_JA)
    words = re.findall(r"[a-z]+", text.lower())
    return (
        len(words) <= FOLLOW_UP_MAX_WORDS
        or any(word in _REFERRING_EN for word in words)
        or (text.lower() + " ").startswith(_OPENERS_EN)
    )


def standalone_query(question: str, history: Sequence[ChatMessage] = ()) -> str:
    """The retrieval query for the last question of a chat: a follow-up gets the earlier user turns it
    continues in front of it (back to the first one that stands alone, at most ``FOLLOW_UP_MAX_TURNS``).

    >>> standalone_query("How long are they kept?", [{"role": "user", "content": "How often are backups taken?"}])
    'How often are backups taken? How long are they kept?'
    >>> standalone_query("Who approves remote work?", [{"role": "user", "content": "How often are backups taken?"}])
    'Who approves remote work?'
    """
    earlier = [m["content"] for m in history if m["role"] == "user"]
    parts = [question]
    while earlier and len(parts) < FOLLOW_UP_MAX_TURNS and is_follow_up(parts[0]):
        parts.insert(0, earlier.pop())
    return question if len(parts) == 1 else " ".join(part.strip() for part in parts)
