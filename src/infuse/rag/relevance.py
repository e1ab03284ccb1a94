"""Is a retrieved passage about the question? Keyword coverage weighted by how rare each word is.

RAG answers "not found" instead of asking the model when no passage passes this check (or the
dense similarity gate). A plain share of the question's keywords treats a person's name like the
word "favourite": in Japanese, where the question often phrases a fact differently from the
document (好き な 食べ物 / 好物), the right passage then fails, and an off-topic passage that shares
a few common words passes. Weighting each keyword by its inverse document frequency over the
knowledge base's chunks fixes both: the rare words (names, terms) decide.

A question word the knowledge base never uses weighs as much as the rarest word it does use: no
passage can contain it, and a question about something the knowledge base does not know should
not pass on its common words alone.

>>> stats = TermStatistics(n_chunks=4, document_frequency={"alda": 1, "food": 4, "favourite": 3})
>>> round(keyword_coverage(["alda", "favourite", "food"], ["alda", "food"], stats), 2)
0.79
>>> round(keyword_coverage(["brin", "favourite", "food"], ["alda", "favourite", "food"], stats), 2)
0.28
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from infuse.retrieval.lexical import Tokenizer
from infuse.retrieval.search import SearchHit
from infuse.store.terms import TermStatistics


def keyword_coverage(question_tokens: Iterable[str], passage_tokens: Iterable[str], stats: TermStatistics) -> float:
    """The IDF-weighted share of the question's distinct keywords that the passage contains (0..1)."""
    wanted = set(question_tokens)
    if not wanted:
        return 0.0
    present = set(passage_tokens)
    if stats.n_chunks == 0:  # nothing to weigh by
        return plain_keyword_coverage(wanted, present)
    weights = {term: stats.idf(term) for term in wanted}
    return sum(weight for term, weight in weights.items() if term in present) / sum(weights.values())


def plain_keyword_coverage(question_tokens: Iterable[str], passage_tokens: Iterable[str]) -> float:
    """The unweighted share (what the gate used before; kept for the benchmark's comparison)."""
    wanted = set(question_tokens)
    return len(wanted & set(passage_tokens)) / len(wanted) if wanted else 0.0


@dataclass(frozen=True)
class RelevanceGate:
    """Decides which retrieved passages RAG may use.

    >>> gate = RelevanceGate(workspace.tokenizer, min_dense_score=0.35, min_keyword_coverage=0.5)  # doctest: +SKIP
    >>> [hit for hit in hits if gate.passes(question, hit, workspace.term_statistics())]  # doctest: +SKIP
    """

    tokenizer: Tokenizer
    min_dense_score: float
    min_keyword_coverage: float
    weighted: bool = True  # False: the plain share of keywords (for comparison)

    def coverage(self, question: str, passage: str, statistics: TermStatistics) -> float:
        wanted, present = self.tokenizer.tokenize(question), self.tokenizer.tokenize(passage)
        if self.weighted:
            return keyword_coverage(wanted, present, statistics)
        return plain_keyword_coverage(wanted, present)

    def passes(self, question: str, hit: SearchHit, statistics: TermStatistics) -> bool:
        """Dense similarity high enough, or enough of the question's keywords."""
        if hit.dense_score is not None and hit.dense_score >= self.min_dense_score:
            return True
        return self.coverage(question, hit.chunk.text, statistics) >= self.min_keyword_coverage
