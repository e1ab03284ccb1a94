"""The KnowledgeStore contract: written once, run against every store.

A new engine passes it by subclassing :class:`StoreContract` and overriding one fixture,
``make_store`` (a factory ``(dimension) -> KnowledgeStore`` giving an empty store), as
tests/test_store_contract.py does for LanceDB and the in-memory store. Each case states one promise
of :mod:`infuse.store.base`; filters are checked against :func:`infuse.store.filters.matches`, the
reference semantics, so two engines that pass agree on every filter.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

import numpy as np
import pytest

from infuse.access import DEFAULT, Caller, DefaultPolicy
from infuse.documents.models import Chunk, Document, FileType, Section
from infuse.language import Language
from infuse.store.base import DocumentRecord, IndexedChunk, KnowledgeStore
from infuse.store.filters import AllOf, AnyOf, Eq, Filter, NoneOf, access_filter, matches

DIM = 4
MakeStore = Callable[[int], KnowledgeStore]


def unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def document(
    doc_id: str,
    *,
    text: str = "text",
    metadata: dict | None = None,
    access: tuple[str, ...] = (),
    content_hash: str = "h1",
) -> Document:
    return Document(
        doc_id=doc_id,
        source_path=f"/kb/{doc_id}.md",
        file_type=FileType.MARKDOWN,
        text=text,
        content_hash=content_hash,
        title=doc_id.upper(),
        metadata=metadata or {},
        sections=(Section(0, len(text), ("Top", "Sub"), None),),
        hidden_text=("hidden",),
        access=access,
    )


def chunk(
    doc: Document,
    index: int,
    text: str,
    lang: Language = Language.EN,
    *,
    flags: tuple[str, ...] = (),
    page: int | None = None,
) -> Chunk:
    return Chunk(
        chunk_id=f"{doc.doc_id}#c{index}",
        doc_id=doc.doc_id,
        source_path=doc.source_path,
        file_type=doc.file_type,
        index=index,
        text=text,
        start=index * 10,
        end=index * 10 + len(text),
        lang=lang,
        n_tokens=len(text.split()),
        heading_path=("Top", "Sub"),
        page=page,
        metadata=doc.metadata,
        content_hash=doc.content_hash,
        flags=flags,
        access=doc.access,
    )


def write(store: KnowledgeStore, doc: Document, *chunks: tuple[Chunk, np.ndarray]) -> None:
    indexed = [IndexedChunk(c, tuple(c.text.lower().split()), v) for c, v in chunks]
    store.replace_documents([DocumentRecord(doc, "pipeline-1", len(chunks), "2026-01-01T00:00:00+00:00")], indexed)


FILTERS: list[Filter] = [
    Eq("lang", "ja"),
    Eq("doc_id", "b"),
    Eq("source_path", "/kb/a.md"),
    Eq("page", 2),
    Eq("team", "legal"),
    Eq("year", 2024),
    AnyOf("lang", ["en", "ja"]),
    AnyOf("doc_id", ["a", "c"]),
    AnyOf("team", ["legal", "sales"]),
    AnyOf("access", ["group:legal", "user:alice"]),
    AnyOf("access", ["user:nobody"]),
    Eq("access", "user:bob"),
    AnyOf("lang", []),
    AllOf([Eq("lang", "en"), AnyOf("access", ["group:legal", "user:bob"])]),
    AllOf([Eq("team", "legal"), Eq("year", 2024)]),
    AllOf([]),
    NoneOf("access", ["group:legal"]),
    NoneOf("access", ["deny:user:eve", "user:nobody"]),
    NoneOf("access", []),
    NoneOf("lang", ["ja"]),
    NoneOf("doc_id", ["a", "b"]),
    NoneOf("page", [2]),
    NoneOf("team", ["legal"]),
    NoneOf("year", [2023, 2024]),
    AllOf([AnyOf("access", ["group:sales", "user:eve"]), NoneOf("access", ["deny:user:eve"])]),
    AllOf([AnyOf("access", ["group:sales", "user:bob"]), NoneOf("access", ["deny:user:eve"])]),
]

# Principals that random access columns and random callers are drawn from (property tests).
_USERS = ("alice", "bob", "eve", "mallory")
_GROUPS = ("legal", "sales", "eng")
_PRINCIPALS = (*(f"user:{u}" for u in _USERS), *(f"group:{g}" for g in _GROUPS), "everyone")


def random_column(rng: random.Random) -> tuple[str, ...]:
    """An access column as ingest writes one (the default sentinel, or allows and ``deny:`` entries),
    or an empty one (a row from before access lists)."""
    roll = rng.random()
    if roll < 0.15:
        return (DEFAULT,)
    if roll < 0.2:
        return ()
    allow = rng.sample(_PRINCIPALS, rng.randint(0, 3))
    deny = [f"deny:{p}" for p in rng.sample(_PRINCIPALS, rng.randint(0, 2))]
    return tuple(allow + deny) or (DEFAULT,)


def random_caller(rng: random.Random) -> Caller:
    return Caller(rng.choice(_USERS), tuple(rng.sample(_GROUPS, rng.randint(0, 2))), admin=rng.random() < 0.1)


def write_many(store: KnowledgeStore, docs: list[tuple[Document, np.ndarray]], text: str = "shared words") -> None:
    """One chunk per document, all in one write."""
    records = [DocumentRecord(d, "pipeline-1", 1, "2026-01-01T00:00:00+00:00") for d, _ in docs]
    indexed = []
    for d, vector in docs:
        c = chunk(d, 0, f"{text} {d.doc_id}")
        indexed.append(IndexedChunk(c, tuple(c.text.lower().split()), vector))
    store.replace_documents(records, indexed)


class StoreContract:
    """Override ``make_store``; every test here then runs against that engine.

    ``PINNED_SNAPSHOTS``: whether :meth:`KnowledgeStore.snapshot` pins a version (LanceDB, memory).
    An engine without point-in-time reads (Qdrant) sets it False; its snapshots must then still
    refuse writes, and read the live state.
    """

    PINNED_SNAPSHOTS = True

    @pytest.fixture
    def make_store(self) -> MakeStore:
        raise NotImplementedError("a store's test class overrides the make_store fixture")

    @pytest.fixture
    def store(self, make_store: MakeStore) -> KnowledgeStore:
        return make_store(DIM)

    @pytest.fixture
    def corpus(self, store: KnowledgeStore) -> KnowledgeStore:
        """Three documents with metadata, access lists, two languages, pages and one flagged chunk."""
        a = document("a", metadata={"team": "legal", "year": 2024}, access=("group:legal",))
        b = document("b", metadata={"team": "sales", "year": 2023}, access=("user:bob", "group:sales", "deny:user:eve"))
        c = document("c", metadata={"team": "legal"})
        write(
            store,
            a,
            (chunk(a, 0, "contract renewal terms", page=1), unit(1, 0, 0, 0)),
            (chunk(a, 1, "renewal deadline is march", page=2), unit(1, 1, 0, 0)),
        )
        write(store, b, (chunk(b, 0, "sales targets for march", flags=("ignore_instructions",)), unit(0, 1, 0, 0)))
        write(
            store,
            c,
            (chunk(c, 0, "契約 更新 条件", Language.JA), unit(0, 0, 1, 0)),
            (chunk(c, 1, "renewal fees", page=2), unit(0, 0, 1, 1)),
        )
        return store

    # --- writes and reads round-trip ---------------------------------------------------------

    def test_chunks_round_trip_with_every_attribute(self, store: KnowledgeStore) -> None:
        doc = document("a", metadata={"team": "legal", "n": 3}, access=("group:legal",))
        original = chunk(doc, 0, "renewal terms", Language.JA, flags=("role_marker",), page=7)
        write(store, doc, (original, unit(1, 0, 0, 0)))
        [hit] = store.dense_search(unit(1, 0, 0, 0), 5)
        assert hit.chunk == original
        assert hit.score == pytest.approx(1.0, abs=1e-5)
        assert list(store.iter_chunks()) == [original]

    def test_documents_round_trip(self, store: KnowledgeStore) -> None:
        doc = document("a", text="hello world", metadata={"team": "legal"}, access=("user:alice",))
        write(store, doc, (chunk(doc, 0, "hello world"), unit(1, 0, 0, 0)))
        [record] = list(store.iter_documents())
        assert record.document == doc
        assert (record.pipeline, record.n_chunks, record.ingested_at) == ("pipeline-1", 1, "2026-01-01T00:00:00+00:00")
        state = store.document_states()["a"]
        assert (state.content_hash, state.pipeline, state.source_path) == ("h1", "pipeline-1", "/kb/a.md")
        assert store.count_documents() == 1

    def test_replacing_a_document_leaves_exactly_its_new_chunks(self, corpus: KnowledgeStore) -> None:
        a = document("a", content_hash="h2")
        write(corpus, a, (chunk(a, 0, "new single chunk"), unit(1, 0, 0, 0)))
        assert sorted(corpus.chunk_ids()) == ["a#c0", "b#c0", "c#c0", "c#c1"]
        assert next(c for c in corpus.iter_chunks() if c.doc_id == "a").text == "new single chunk"
        assert corpus.document_states()["a"].content_hash == "h2"
        assert corpus.count_documents() == 3

    def test_deleting_documents_removes_their_chunks(self, corpus: KnowledgeStore) -> None:
        corpus.delete_documents(["a", "c"])
        assert corpus.chunk_ids() == ["b#c0"]
        assert set(corpus.document_states()) == {"b"}
        assert corpus.dense_search(unit(1, 0, 0, 0), 10)[0].chunk.doc_id == "b"

    def test_iteration_order_and_counts(self, corpus: KnowledgeStore) -> None:
        assert [c.chunk_id for c in corpus.iter_chunks()] == ["a#c0", "a#c1", "b#c0", "c#c0", "c#c1"]
        assert corpus.count_chunks() == 5
        assert corpus.chunk_counts_by_language() == {"en": 4, "ja": 1}

    def test_indexed_chunks_come_back_with_their_tokens_and_vectors(self, corpus: KnowledgeStore) -> None:
        indexed = {c.chunk.chunk_id: c for c in corpus.iter_indexed()}
        assert sorted(indexed) == ["a#c0", "a#c1", "b#c0", "c#c0", "c#c1"]
        assert indexed["c#c1"].tokens == ("renewal", "fees")
        assert np.allclose(indexed["c#c1"].vector, unit(0, 0, 1, 1), atol=1e-6)
        assert indexed["a#c1"].chunk == next(c for c in corpus.iter_chunks() if c.chunk_id == "a#c1")
        assert {c.chunk.chunk_id for c in corpus.iter_indexed(Eq("lang", "ja"))} == {"c#c0"}

    def test_a_vector_of_the_wrong_size_is_refused(self, store: KnowledgeStore) -> None:
        doc = document("a")
        with pytest.raises(ValueError, match="shape"):
            write(store, doc, (chunk(doc, 0, "x"), np.ones(DIM + 1, dtype=np.float32)))

    # --- ranking --------------------------------------------------------------------------------

    def test_dense_search_ranks_by_cosine(self, corpus: KnowledgeStore) -> None:
        hits = corpus.dense_search(unit(1, 0.2, 0, 0), 3)
        assert [h.chunk.chunk_id for h in hits] == ["a#c0", "a#c1", "b#c0"]
        assert hits[0].score > hits[1].score > hits[2].score

    def test_lexical_search_finds_the_rarest_term_first(self, corpus: KnowledgeStore) -> None:
        hits = corpus.lexical_search(["deadline", "renewal"], 10)
        assert hits[0].chunk.chunk_id == "a#c1"
        assert {h.chunk.chunk_id for h in hits} == {"a#c0", "a#c1", "c#c1"}
        assert corpus.lexical_search([], 10) == [] and corpus.lexical_search(["absent"], 10) == []
        assert [h.chunk.chunk_id for h in corpus.lexical_search(["契約"], 10)] == ["c#c0"]

    def test_k_limits_results(self, corpus: KnowledgeStore) -> None:
        assert len(corpus.dense_search(unit(1, 1, 1, 1), 2)) == 2
        assert len(corpus.lexical_search(["renewal"], 1)) == 1

    # --- filters ----------------------------------------------------------------------------------

    @pytest.mark.parametrize("filter_", FILTERS, ids=repr)
    def test_filters_mean_what_the_reference_says(self, corpus: KnowledgeStore, filter_: Filter) -> None:
        expected = sorted(c.chunk_id for c in corpus.iter_chunks() if matches(filter_, dataclasses.asdict(c)))
        dense = sorted(h.chunk.chunk_id for h in corpus.dense_search(unit(1, 1, 1, 1), 10, filter_))
        lexical_all = [
            "renewal",
            "contract",
            "terms",
            "deadline",
            "is",
            "march",
            "sales",
            "targets",
            "for",
            "契約",
            "更新",
            "条件",
            "fees",
        ]
        lexical = sorted(h.chunk.chunk_id for h in corpus.lexical_search(lexical_all, 10, filter_))
        assert dense == lexical == expected
        assert corpus.count_chunks(filter_) == len(expected)
        assert sorted(c.chunk_id for c in corpus.iter_chunks(filter_)) == expected

    def test_metadata_keys_are_those_of_the_stored_documents(self, corpus: KnowledgeStore) -> None:
        assert corpus.metadata_keys() == {"team", "year"}
        corpus.delete_documents(["a", "b"])
        assert corpus.snapshot().metadata_keys() == {"team"}

    def test_access_lists_match_any_of_a_users_principals(self, corpus: KnowledgeStore) -> None:
        alice = AnyOf("access", ["user:alice", "group:legal"])
        assert {h.chunk.doc_id for h in corpus.dense_search(unit(1, 1, 1, 1), 10, alice)} == {"a"}
        bob = AnyOf("access", ["user:bob"])
        assert {h.chunk.doc_id for h in corpus.dense_search(unit(1, 1, 1, 1), 10, bob)} == {"b"}

    def test_access_filter_agrees_with_may_read_for_random_columns_and_callers(self, store: KnowledgeStore) -> None:
        rng = random.Random(14)
        docs = [
            (document(f"d{i:02d}", access=random_column(rng)), unit(*(rng.random() + 0.01 for _ in range(DIM))))
            for i in range(40)
        ]
        write_many(store, docs)
        for view in (store, store.snapshot()):
            for _ in range(25):
                caller, policy = random_caller(rng), rng.choice(list(DefaultPolicy))
                expected = {d.doc_id for d, _ in docs if caller.may_read(d.access, policy)}
                filter_ = access_filter(caller, policy)
                dense = {h.chunk.doc_id for h in view.dense_search(unit(1, 1, 1, 1), 100, filter_)}
                lexical = {h.chunk.doc_id for h in view.lexical_search(["shared"], 100, filter_)}
                assert dense == lexical == expected, (caller, policy)
                assert view.count_chunks(filter_) == len(expected)
                assert {c.doc_id for c in view.iter_chunks(filter_)} == expected

    def test_a_restricted_caller_gets_k_results_when_k_are_readable(self, store: KnowledgeStore) -> None:
        # 60 documents nearest the question are closed to bob; 5 further away are open to him. A
        # filter applied after ranking would give him nothing; a prefilter gives him all 5.
        closed = [(document(f"x{i:02d}", access=("group:legal",)), unit(1, 0.01 * i, 0, 0)) for i in range(60)]
        open_ = [(document(f"y{i}", access=("user:bob",)), unit(0, 0, 1, 0.1 * i)) for i in range(5)]
        write_many(store, closed, text="renewal renewal renewal terms")
        write_many(store, open_, text="renewal and other words that make it rank lower")
        bob = access_filter(Caller("bob"), DefaultPolicy.ADMINS)
        for _ in range(2):  # before and after the keyword index covers the rows
            dense = store.dense_search(unit(1, 0, 0, 0), 5, bob)
            lexical = store.lexical_search(["renewal"], 5, bob)
            assert {h.chunk.doc_id for h in dense} == {h.chunk.doc_id for h in lexical} == {d.doc_id for d, _ in open_}
            assert len(store.lexical_search(["renewal"], 3, bob)) == 3
            store.optimize()

    def test_keyword_scores_for_a_caller_do_not_reveal_chunks_they_cannot_read(self, store: KnowledgeStore) -> None:
        # Adding 30 secret chunks full of "merger" must not move Bob's scores: a term's weight in
        # his view may not reveal chunks he cannot read.
        mine = [(document(f"m{i}", access=("user:bob",)), unit(1, 0, 0, i)) for i in range(4)]
        secrets = [
            (document(f"s{i:02d}", access=("group:board", "deny:user:bob")), unit(0, 1, 0, 0)) for i in range(30)
        ]
        write_many(store, mine[:2], text="merger plans and budget for the year")
        write_many(store, mine[2:], text="budget review")
        bob = access_filter(Caller("bob"), DefaultPolicy.ADMINS)

        def scores() -> list[tuple[str, float]]:
            return [(h.chunk.chunk_id, round(h.score, 5)) for h in store.lexical_search(["merger", "budget"], 10, bob)]

        alone = scores()
        assert len(alone) == 4 and alone[0][1] > alone[-1][1] > 0
        write_many(store, secrets, text="merger merger terms")
        assert scores() == alone
        store.optimize()  # the keyword index now covers every row
        assert scores() == alone
        assert len(store.lexical_search(["merger"], 40)) == 32  # an unscoped search sees the secrets

    def test_set_access_rewrites_only_the_access_of_whole_documents(self, corpus: KnowledgeStore) -> None:
        before = {h.chunk.chunk_id: h for h in corpus.dense_search(unit(1, 1, 1, 1), 10)}
        view = corpus.snapshot()
        corpus.set_access(["a", "c", "absent"], ("user:zoe", "deny:group:legal"))
        after = {h.chunk.chunk_id: h for h in corpus.dense_search(unit(1, 1, 1, 1), 10)}
        assert after.keys() == before.keys()
        for chunk_id, hit in after.items():
            expected = (
                ("user:zoe", "deny:group:legal") if hit.chunk.doc_id in ("a", "c") else before[chunk_id].chunk.access
            )
            assert hit.chunk == dataclasses.replace(before[chunk_id].chunk, access=expected)
            assert hit.score == pytest.approx(before[chunk_id].score, abs=1e-6)  # the same vectors
        records = {r.doc_id: r.document for r in corpus.iter_documents()}
        assert records["a"].access == records["c"].access == ("user:zoe", "deny:group:legal")
        assert records["b"].access == ("user:bob", "group:sales", "deny:user:eve")
        assert corpus.document_states()["c"].access == ("user:zoe", "deny:group:legal")
        assert corpus.document_states()["a"].content_hash == "h1"
        zoe = access_filter(Caller("zoe"), DefaultPolicy.ADMINS)
        for _ in range(2):  # before and after the keyword index is brought up to date
            assert {h.chunk.doc_id for h in corpus.lexical_search(["renewal", "契約"], 10, zoe)} == {"a", "c"}
            corpus.optimize()
        assert {c.access for c in view.iter_chunks()} == (
            {("group:legal",), ("user:bob", "group:sales", "deny:user:eve"), ()}
            if self.PINNED_SNAPSHOTS
            else {("user:zoe", "deny:group:legal"), ("user:bob", "group:sales", "deny:user:eve")}
        )
        with pytest.raises(ValueError, match="access column"):
            corpus.set_access(["a"], ())

    # --- screening ----------------------------------------------------------------------------------

    def test_flagged_chunks_are_listed_and_can_be_excluded(self, corpus: KnowledgeStore) -> None:
        assert [c.chunk_id for c in corpus.flagged_chunks()] == ["b#c0"]
        assert corpus.flagged_chunks()[0].flags == ("ignore_instructions",)
        assert corpus.count_flagged_chunks() == 1 and corpus.flagged_chunks(limit=0) == []
        every = {h.chunk.chunk_id for h in corpus.dense_search(unit(0, 1, 0, 0), 10)}
        clean = {h.chunk.chunk_id for h in corpus.dense_search(unit(0, 1, 0, 0), 10, exclude_flagged=True)}
        assert every - clean == {"b#c0"}
        assert not corpus.lexical_search(["sales"], 10, exclude_flagged=True)

    # --- snapshots and statistics -------------------------------------------------------------------

    def test_snapshots_do_not_move_and_cannot_write(self, corpus: KnowledgeStore) -> None:
        view = corpus.snapshot()
        d = document("d")
        write(corpus, d, (chunk(d, 0, "renewal later"), unit(1, 0, 0, 0)))
        corpus.delete_documents(["b"])
        pinned = ["a#c0", "a#c1", "b#c0", "c#c0", "c#c1"]
        live = ["a#c0", "a#c1", "c#c0", "c#c1", "d#c0"]
        assert sorted(view.chunk_ids()) == (pinned if self.PINNED_SNAPSHOTS else live)
        found = "d#c0" in {h.chunk.chunk_id for h in view.lexical_search(["renewal", "later"], 10)}
        assert found is not self.PINNED_SNAPSHOTS
        assert corpus.snapshot().count_chunks() == 5
        with pytest.raises(RuntimeError):
            write(view, d, (chunk(d, 0, "x"), unit(1, 0, 0, 0)))

    def test_term_statistics_count_chunks_per_keyword(self, corpus: KnowledgeStore) -> None:
        stats = corpus.term_statistics()
        assert stats.n_chunks == 5
        assert stats.document_frequency["renewal"] == 3 and stats.document_frequency["契約"] == 1
        only_a = corpus.term_statistics(Eq("doc_id", "a"))  # one caller's view: a's two chunks
        assert only_a.n_chunks == 2 and only_a.document_frequency["renewal"] == 2
        assert "契約" not in only_a.document_frequency and "sales" not in only_a.document_frequency
        corpus.delete_documents(["c"])
        assert corpus.term_statistics().document_frequency["renewal"] == 2
