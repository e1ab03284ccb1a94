"""Token-aware chunking that keeps paragraphs and sentences whole and records exact offsets.

Sizes are counted in the embedder's own tokens, so a chunk never silently overflows the model.
Splitting prefers paragraph boundaries, then sentence boundaries (``.!?`` and Japanese
``。！？``), and only cuts inside a sentence, at token boundaries, when a sentence alone is
longer than a chunk. Chunks never cross a :class:`Section` (Markdown section, PDF page), so each
chunk carries one heading path and one page number. ``document.text[chunk.start:chunk.end]``
is always ``chunk.text``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from infuse.documents.models import Chunk, Document, Section
from infuse.language import detect_language

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class TokenCounter(Protocol):
    """What chunking needs from a tokenizer."""

    def count(self, texts: list[str]) -> list[int]: ...

    def split(self, text: str, max_tokens: int) -> list[tuple[int, int]]:
        """Character spans of consecutive windows of at most ``max_tokens`` tokens."""
        ...


class HFTokenCounter:
    """A :class:`TokenCounter` over a Hugging Face fast tokenizer (the embedder's).

    >>> from transformers import AutoTokenizer
    >>> counter = HFTokenCounter(AutoTokenizer.from_pretrained(path))  # doctest: +SKIP
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:  # a fast tokenizer: split needs offsets
        self._tokenizer = tokenizer

    def count(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        # verbose=False: counting a long paragraph is not feeding it to the model; no length warning.
        encoded = self._tokenizer(texts, add_special_tokens=False, return_attention_mask=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def split(self, text: str, max_tokens: int) -> list[tuple[int, int]]:
        offsets = self._tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)[
            "offset_mapping"
        ]
        spans = []
        for i in range(0, len(offsets), max_tokens):
            window = offsets[i : i + max_tokens]
            spans.append((window[0][0], window[-1][1]))
        return spans or [(0, len(text))]


@dataclass(frozen=True)
class _Unit:
    """A sentence (or a piece of an over-long sentence) with its place in the document."""

    start: int
    end: int
    tokens: int
    paragraph: int


_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")
# End of a sentence: Western punctuation followed by whitespace, Japanese punctuation (with any
# closing brackets) anywhere, or a line break. Linear on any input: the lookbehind starts a try
# only at the first mark of a run and the possessive runs never backtrack (a line of 60,000
# dots took 24 s without them).
_SENTENCE_END = re.compile(r"(?<![.!?])[.!?]++[\"'”’)\]]*+(?=\s)|[。！？!?]++[」』）)”’]*+|\n")


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def paragraph_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans, cursor = [], start
    for match in _PARAGRAPH_BREAK.finditer(text, start, end):
        spans.append(_strip_span(text, cursor, match.start()))
        cursor = match.end()
    spans.append(_strip_span(text, cursor, end))
    return [(a, b) for a, b in spans if b > a]


def sentence_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans, cursor = [], start
    for match in _SENTENCE_END.finditer(text, start, end):
        spans.append(_strip_span(text, cursor, match.end()))
        cursor = match.end()
    spans.append(_strip_span(text, cursor, end))
    return [(a, b) for a, b in spans if b > a]


# Memory bounds for big documents: sentences are token-counted this many at a time, and a
# "sentence" longer than _MAX_PIECE characters (a line with no punctuation) is cut at whitespace
# first, so the tokenizer never holds the offsets of a whole file at once.
_COUNT_BATCH = 1024
_MAX_PIECE = 20_000


def _bounded_pieces(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """``[start:end]`` cut into spans of at most ``_MAX_PIECE`` characters, at the last whitespace
    of each window when there is one."""
    pieces = []
    while end - start > _MAX_PIECE:
        cut = start + _MAX_PIECE
        space = max(text.rfind(" ", start + 1, cut), text.rfind("\n", start + 1, cut))
        if space > start + _MAX_PIECE // 2:
            cut = space
        pieces.append(_strip_span(text, start, cut))
        start = cut
    pieces.append(_strip_span(text, start, end))
    return [(a, b) for a, b in pieces if b > a]


class Chunker:
    """Cuts documents into chunks of at most ``size`` tokens with ``overlap`` tokens of context.

    >>> chunker = Chunker(HFTokenCounter(tokenizer), size=200, overlap=32)  # doctest: +SKIP
    >>> chunks = chunker.chunk(document)  # doctest: +SKIP
    """

    def __init__(self, counter: TokenCounter, size: int, overlap: int) -> None:
        if overlap >= size:
            raise ValueError(f"overlap ({overlap}) must be smaller than size ({size})")
        self.counter = counter
        self.size = size
        self.overlap = overlap

    def chunk(self, document: Document) -> list[Chunk]:
        chunks: list[Chunk] = []
        for section in document.section_spans():
            for start, end, tokens in self._pack(self._units(document.text, section)):
                text = document.text[start:end]
                chunks.append(
                    Chunk(
                        chunk_id=f"{document.doc_id}#c{len(chunks)}",
                        doc_id=document.doc_id,
                        source_path=document.source_path,
                        file_type=document.file_type,
                        index=len(chunks),
                        text=text,
                        start=start,
                        end=end,
                        n_tokens=tokens,
                        lang=detect_language(text),
                        heading_path=section.heading_path,
                        page=section.page,
                        metadata=document.metadata,
                        content_hash=document.content_hash,
                        access=document.access,
                    )
                )
        return chunks

    def _units(self, text: str, section: Section) -> list[_Unit]:
        sentences = [
            (paragraph, span)
            for paragraph, (p_start, p_end) in enumerate(paragraph_spans(text, section.start, section.end))
            for sentence in sentence_spans(text, p_start, p_end)
            for span in _bounded_pieces(text, *sentence)
        ]
        counts: list[int] = []
        for first in range(0, len(sentences), _COUNT_BATCH):  # the tokenizer's output for a batch at a time
            counts.extend(self.counter.count([text[a:b] for _, (a, b) in sentences[first : first + _COUNT_BATCH]]))
        units: list[_Unit] = []
        for (paragraph, (a, b)), tokens in zip(sentences, counts):
            if tokens <= self.size:
                units.append(_Unit(a, b, tokens, paragraph))
                continue
            pieces, piece_counts = self._split_long(text, a, b)
            units.extend(_Unit(s, e, n, paragraph) for (s, e), n in zip(pieces, piece_counts))
        return units

    def _split_long(self, text: str, start: int, end: int) -> tuple[list[tuple[int, int]], list[int]]:
        """Token windows of a too-long sentence, each at most ``size`` tokens when counted alone.

        A window cut inside a word re-tokenises into more pieces (WordPiece ``##`` fragments), so
        the window is shrunk until every piece fits.
        """
        limit = self.size
        while True:
            pieces = [(start + s, start + e) for s, e in self.counter.split(text[start:end], limit)]
            counts = self.counter.count([text[s:e] for s, e in pieces])
            excess = max(counts) - self.size
            if excess <= 0 or limit == 1:
                return pieces, counts
            limit = max(1, limit - excess)

    def _pack(self, units: list[_Unit]) -> list[tuple[int, int, int]]:
        """Greedy packing: whole paragraphs when they fit, else sentence by sentence."""
        paragraph_tokens: dict[int, int] = {}
        for unit in units:
            paragraph_tokens[unit.paragraph] = paragraph_tokens.get(unit.paragraph, 0) + unit.tokens
        packed: list[tuple[int, int, int]] = []
        current: list[_Unit] = []
        fresh = 0  # units in ``current`` that are not overlap carried from the previous chunk

        def close() -> None:
            nonlocal current, fresh
            if fresh == 0:
                return
            packed.append((current[0].start, current[-1].end, sum(u.tokens for u in current)))
            carried: list[_Unit] = []
            budget = self.overlap
            for unit in reversed(current[1:]):
                if unit.tokens > budget:
                    break
                carried.insert(0, unit)
                budget -= unit.tokens
            current, fresh = carried, 0

        previous_paragraph = None
        for unit in units:
            used = sum(u.tokens for u in current)
            starts_paragraph = unit.paragraph != previous_paragraph
            whole_paragraph = paragraph_tokens[unit.paragraph]
            if fresh and starts_paragraph and used + whole_paragraph > self.size and whole_paragraph <= self.size:
                close()  # keep the next paragraph whole in a chunk of its own
                used = sum(u.tokens for u in current)
                if used + whole_paragraph > self.size:
                    current, used = [], 0  # overlap would split the paragraph: drop it
            if current and used + unit.tokens > self.size:
                close()
                if sum(u.tokens for u in current) + unit.tokens > self.size:
                    current = []
            current.append(unit)
            fresh += 1
            previous_paragraph = unit.paragraph
        close()
        return packed
