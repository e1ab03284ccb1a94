"""The RAG relevance gate: keyword coverage weighted by rarity in the knowledge base."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from infuse.language import Language
from infuse.models import GenerationConfig
from infuse.models.transformers_backend import TransformersModel
from infuse.rag import NOT_FOUND, RagPipeline
from infuse.rag.relevance import RelevanceGate, keyword_coverage, plain_keyword_coverage
from infuse.retrieval.lexical import LanguageAwareTokenizer
from infuse.store.terms import TermStatistics
from infuse.workspace import Workspace

# Five people; each document says what they like to eat in its own words (好物 / 大好き), as
# Japanese documents do, while the questions ask "一番好きな食べ物".
PEOPLE = {
    "alda.txt": "アルダ・ウェクスステッドはドレヴィクで生まれた。アルダ・ウェクスステッドが一番好きな食べ物はシチューだ。",
    "korna.txt": "コルナ・ヤンドロはヴェッサンで生まれた。ブリトーはコルナ・ヤンドロの好物だ。",
    "berbek.txt": "ベルベク・グレルトンはゼンタールで生まれた。ベルベク・グレルトンはラザニアが大好きだ。",
    "gilbek.txt": "ギルベク・マールウェルはルンマルクで生まれた。ギルベク・マールウェルが一番好きな食べ物はそばだ。",
    "orlo.txt": "オルロ・ドーンデンはホリクスで生まれた。オルロ・ドーンデンが一番好きな食べ物はタコスだ。",
}


def test_term_statistics_count_each_chunk_once_and_rank_rare_words_higher() -> None:
    stats = TermStatistics.from_token_lists([["alda", "food", "food"], ["food", "brin"], ["food"]])
    assert stats.n_chunks == 3 and stats.document_frequency == {"alda": 1, "food": 3, "brin": 1}
    assert stats.idf("alda") > stats.idf("food") > 0
    # a word no chunk contains weighs like the rarest one: no passage can match it
    assert stats.idf("never-seen") == stats.idf("alda") == pytest.approx(math.log(1 + 2.5 / 1.5))


def test_rare_words_decide_coverage() -> None:
    stats = TermStatistics(50, {"alda": 1, "wexstead": 4, "favourite": 20, "food": 20, "most": 20})
    question = ["alda", "wexstead", "most", "favourite", "food"]
    # the right person's passage, phrased differently: 2 of 5 words, but the rare ones
    assert plain_keyword_coverage(question, ["alda", "wexstead", "like"]) == pytest.approx(0.4)
    assert keyword_coverage(question, ["alda", "wexstead", "like"], stats) > 0.5
    # someone else's passage with the question's common words: 3 of 5, but not who was asked about
    assert plain_keyword_coverage(question, ["brin", "most", "favourite", "food"]) == pytest.approx(0.6)
    assert keyword_coverage(question, ["brin", "most", "favourite", "food"], stats) < 0.5
    assert keyword_coverage([], ["alda"], stats) == 0.0
    # an empty knowledge base has nothing to weigh by: the plain share
    assert keyword_coverage(question, ["alda", "food"], TermStatistics(0)) == pytest.approx(0.4)


def test_japanese_question_words_are_not_keywords() -> None:
    tokens = LanguageAwareTokenizer().tokenize("ベルベク・グレルトンはどの会社で働いていますか？何年に生まれましたか？")
    assert "どの" not in tokens and "何" not in tokens
    assert {"ベルベク", "グレルトン", "会社", "働く", "年"} <= set(tokens)


def test_workspace_term_statistics_follow_the_knowledge_base(workspace: Workspace, tmp_path: Path) -> None:
    assert workspace.term_statistics().n_chunks == 0  # nothing ingested yet
    docs = tmp_path / "people"
    docs.mkdir()
    for name, text in list(PEOPLE.items())[:3]:
        (docs / name).write_text(text, encoding="utf-8")
    workspace.ingest([docs])
    stats = workspace.term_statistics()
    assert stats.n_chunks == workspace.knowledge_snapshot().count_chunks() == 3
    assert stats.document_frequency["アルダ"] == 1 and stats.document_frequency["生まれる"] == 3
    assert workspace.term_statistics() is stats  # cached for the same version
    for name, text in list(PEOPLE.items())[3:]:
        (docs / name).write_text(text, encoding="utf-8")
    workspace.ingest([docs])
    updated = workspace.term_statistics()
    assert updated.n_chunks == 5 and updated.document_frequency["生まれる"] == 5


@pytest.fixture
def people_pipeline(tmp_path: Path, tiny_chat_llama_dir: str) -> RagPipeline:
    docs = tmp_path / "people"
    docs.mkdir()
    for name, text in PEOPLE.items():
        (docs / name).write_text(text, encoding="utf-8")
    # the offline embedder is English-only: dense similarity says nothing about these Japanese
    # passages, so keywords decide (as for Japanese users without a multilingual embedder)
    workspace = Workspace.open(tmp_path / "ws", create=True, rag={"min_dense_score": 2.0})
    workspace.ingest([docs])
    return workspace.rag_pipeline(TransformersModel.load(tiny_chat_llama_dir), GenerationConfig(max_new_tokens=2))


def test_gate_lets_a_differently_phrased_right_passage_through(people_pipeline: RagPipeline) -> None:
    for question, source in (
        ("コルナ・ヤンドロが一番好きな食べ物は何ですか？", "korna.txt"),
        ("ベルベク・グレルトンが一番好きな食べ物は何ですか？", "berbek.txt"),
    ):
        answer, messages = people_pipeline.prepare(question, k=1)
        assert answer.found_relevant and messages is not None, question
        assert Path(answer.passages[0].chunk.source_path).name == source
        # the plain share would have refused it: only the name matches
        plain = RelevanceGate(people_pipeline.gate.tokenizer, 2.0, 0.5, weighted=False)
        assert not plain.passes(question, answer.passages[0], people_pipeline.retriever.term_statistics())


def test_gate_refuses_a_person_the_knowledge_base_does_not_know(people_pipeline: RagPipeline) -> None:
    question = "ペルミラ・ラスクステッドが一番好きな食べ物は何ですか？"
    hits = people_pipeline.retriever.search(question, 1)
    assert hits  # something is retrieved (it shares 一番 好き 食べ物) ...
    answer, messages = people_pipeline.prepare(question, k=1)
    assert messages is None and not answer.found_relevant  # ... but it is not about this person
    assert answer.text == NOT_FOUND[Language.JA]
