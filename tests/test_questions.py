"""Question sets: importers on slices of the real files in ../shared/data and on lab worlds, storage,
bad input, and the generator (parsing/selection on hand-written replies; a real tiny model for the
"no usable questions" path)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from infuse.documents.models import Chunk, FileType
from infuse.evaluation.questions import (
    ImportFormat,
    Question,
    QuestionKind,
    QuestionSet,
    QuestionSetError,
    generate_questions,
    gold_documents,
    import_questions,
    list_question_sets,
    load_question_set,
    parse_json_objects,
    realtimeqa_documents,
    save_question_set,
    specificity,
)
from infuse.language import Language
from infuse.models.base import FinishReason, Generation, GenerationConfig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SQUAD = DATA / "squad-v2-dev" / "dev-v2.0.json"
JAQUAD = DATA / "jaquad-dev"
REALTIMEQA = DATA / "realtimeqa" / "20250801_qa.jsonl"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not present")


@pytest.fixture(scope="module")
def lab_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from infuse.lab.world import generate_world

    root = tmp_path_factory.mktemp("world")
    generate_world(0, "en", n_known=10, n_new=5).write(root)
    return root


def write_lines(path: Path, lines: Sequence[object]) -> Path:
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)) + "\n" for line in lines),
        encoding="utf-8",
    )
    return path


# --- real files ------------------------------------------------------------------------------------


@needs_data
def test_squad_slice_keeps_every_distinct_answer_and_the_paragraph() -> None:
    qset = import_questions(SQUAD, ImportFormat.SQUAD, limit=40)
    raw = json.loads(SQUAD.read_text(encoding="utf-8"))["data"][0]
    first_paragraph = raw["paragraphs"][0]
    expected = [qa for qa in first_paragraph["qas"] if not qa["is_impossible"]]
    q = qset.questions[0]
    assert len(qset.questions) == 40 and qset.name == "dev-v2.0"
    assert (q.id, q.kind, q.lang, q.gold_doc) == (expected[0]["id"], QuestionKind.SHORT, "en", f"{raw['title']}#0")
    assert q.answers == tuple(dict.fromkeys(a["text"] for a in expected[0]["answers"]))
    assert q.gold_text == first_paragraph["context"]
    assert qset.manifest["counts"]["unanswerable_skipped"] > 0
    assert qset.manifest["sources"] == [str(SQUAD.resolve())] and qset.manifest["format"] == "squad"


@needs_data
def test_squad_unanswerable_questions_are_kept_only_on_request() -> None:
    qset = import_questions(SQUAD, ImportFormat.SQUAD, limit=60, include_unanswerable=True)
    unanswerable = [q for q in qset.questions if q.metadata.get("unanswerable")]
    assert unanswerable and all(q.answers == () for q in unanswerable)
    assert "unanswerable_skipped" not in qset.manifest["counts"]


@needs_data
def test_jaquad_reads_a_folder_or_a_file_as_japanese() -> None:
    folder = import_questions(JAQUAD, ImportFormat.JAQUAD, limit=15)
    single = import_questions(JAQUAD / "jaquad_dev_0001.json", ImportFormat.JAQUAD, limit=5, name="ja1")
    assert folder.name == "jaquad-dev" and single.name == "ja1"
    for q in folder.questions + single.questions:
        assert q.lang == "ja" and q.answers and q.gold_text and q.answers[0] in q.gold_text
        assert "question_type" in q.metadata
    assert single.manifest["sources"] == [str((JAQUAD / "jaquad_dev_0001.json").resolve())]


@needs_data
def test_realtimeqa_answers_are_the_indexes_in_the_file_and_evidence_is_plain_text() -> None:
    qset = import_questions(REALTIMEQA, ImportFormat.REALTIMEQA)
    rows = [json.loads(line) for line in REALTIMEQA.read_text(encoding="utf-8").splitlines()]
    assert len(qset.questions) == len(rows) == 20
    for q, row in zip(qset.questions, rows):
        assert q.id == row["question_id"] and q.kind is QuestionKind.MC and len(q.choices) == 4
        assert q.answer_index == int(row["answer"][0]) and q.answers == (row["choices"][q.answer_index],)
        assert q.gold_text and "<a" not in q.gold_text and "href" not in q.gold_text
    gcs = REALTIMEQA.with_name("20250801_gcs.jsonl")
    assert qset.manifest["documents"]["search_results"] == str(gcs.resolve())


@needs_data
def test_realtimeqa_documents_one_file_per_article_deduplicated_by_url(tmp_path: Path) -> None:
    gcs = REALTIMEQA.with_name("20250801_gcs.jsonl")
    results = [r for line in gcs.read_text(encoding="utf-8").splitlines() for r in json.loads(line)["search_result"]]
    articles = {r["url"]: r for r in results if r["text"].strip()}
    written = realtimeqa_documents(REALTIMEQA, tmp_path / "news")
    assert len(written) == len(articles) and len(set(written)) == len(written)
    titles = {p.read_text(encoding="utf-8").splitlines()[0] for p in written}
    assert titles == {r["title"] for r in articles.values()}
    with pytest.raises(QuestionSetError, match="no search results file"):
        realtimeqa_documents(tmp_path / "20990101_qa.jsonl", tmp_path / "x")


@needs_data
def test_realtimeqa_documents_of_some_questions_cut_to_their_lead(tmp_path: Path) -> None:
    gcs = REALTIMEQA.with_name("20250801_gcs.jsonl")
    rows = [json.loads(line) for line in gcs.read_text(encoding="utf-8").splitlines()]
    chosen = {rows[0]["question_id"], rows[1]["question_id"]}
    urls = {r["url"] for row in rows[:2] for r in row["search_result"] if r["text"].strip()}
    written = realtimeqa_documents(REALTIMEQA, tmp_path / "news", question_ids=chosen, max_chars=600)
    assert 0 < len(written) == len(urls) < len(realtimeqa_documents(REALTIMEQA, tmp_path / "all"))
    for path in written:
        body = path.read_text(encoding="utf-8").split("\n\n", 1)[1].strip()
        assert 0 < len(body) <= 600
        full = next(
            r["text"]
            for row in rows[:2]
            for r in row["search_result"]
            if r["title"] == path.read_text(encoding="utf-8").splitlines()[0]
        )
        assert full.strip().startswith(body[:50])


# --- lab worlds ------------------------------------------------------------------------------------


def test_lab_mc_and_short_files_keep_ids_docs_and_metadata(lab_world: Path) -> None:
    mc = import_questions(lab_world / "questions" / "new_mc.jsonl", ImportFormat.MC)
    short = import_questions(lab_world / "questions" / "new_short.jsonl", ImportFormat.QA)
    rows = [json.loads(line) for line in (lab_world / "questions" / "new_mc.jsonl").read_text().splitlines()]
    assert len(mc.questions) == len(rows) == 25 and len(short.questions) == 25
    q, row = mc.questions[0], rows[0]
    assert (q.id, q.gold_doc, q.choices, q.answer_index, q.answers) == (
        row["id"],
        row["doc"],
        tuple(row["choices"]),
        row["answer_index"],
        (row["answer"],),
    )
    assert q.metadata == {k: row[k] for k in ("person_id", "attribute", "split", "template")}
    short_rows = [json.loads(line) for line in (lab_world / "questions" / "new_short.jsonl").read_text().splitlines()]
    assert [(q.id, q.answers, q.gold_doc) for q in short.questions] == [
        (r["id"], (r["answer"],), r["doc"]) for r in short_rows
    ]
    assert mc.manifest["counts"]["skipped"] == 0


def test_lab_update_sets_carry_the_old_answers(lab_world: Path) -> None:
    mc = import_questions(lab_world / "updates" / "questions_mc.jsonl", ImportFormat.MC, name="update-mc")
    short = import_questions(lab_world / "updates" / "questions_short.jsonl", ImportFormat.QA, name="update-short")
    rows = [json.loads(line) for line in (lab_world / "updates" / "questions_mc.jsonl").read_text().splitlines()]
    for q, row in zip(mc.questions, rows):
        assert q.old_answer_index == row["old_answer_index"] and q.old_answers == (row["old_answer"],) and q.is_update
    assert all(q.old_answers and q.old_answers != q.answers for q in short.questions)
    assert mc.manifest["counts"]["updates"] == len(rows)


# --- storage --------------------------------------------------------------------------------------


def test_save_load_round_trip_and_listing(tmp_path: Path, lab_world: Path) -> None:
    root = tmp_path / "questions"
    qset = import_questions(lab_world / "updates" / "questions_mc.jsonl", ImportFormat.MC, name="upd")
    folder = save_question_set(root, qset)
    loaded = load_question_set(root, "upd")
    assert loaded.questions == qset.questions and loaded.manifest["counts"]["questions"] == len(qset.questions)
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "questions.jsonl"]
    assert list_question_sets(root) == ["upd"] and list_question_sets(tmp_path / "none") == []
    with pytest.raises(QuestionSetError, match="already exists.*--overwrite"):
        save_question_set(root, qset)
    save_question_set(root, qset, overwrite=True)
    assert [p.name for p in root.iterdir()] == ["upd"]  # no staging folder left behind
    with pytest.raises(QuestionSetError, match="no question set 'nope'.*known sets: upd"):
        load_question_set(root, "nope")
    with pytest.raises(QuestionSetError, match="there are none yet.*questions import"):
        load_question_set(tmp_path / "empty", "nope")


def test_question_to_dict_from_dict_keeps_every_field() -> None:
    q = Question(
        id="q1",
        kind=QuestionKind.MC,
        question="Which?",
        lang="ja",
        choices=("a", "b", "c"),
        answer_index=2,
        gold_doc="d.txt",
        gold_text="…",
        source_chunk="c1",
        old_answer_index=0,
        metadata={"x": [1]},
    )
    assert q.answers == ("c",) and q.old_answers == ("a",)
    assert Question.from_dict(json.loads(json.dumps(q.to_dict()))) == q
    with pytest.raises(ValueError, match="answer_index 3"):
        Question(id="q2", kind=QuestionKind.MC, question="Which?", lang="en", choices=("a", "b"), answer_index=3)


def test_gold_documents_writes_each_paragraph_once(tmp_path: Path) -> None:
    questions = [
        Question(
            id=str(i),
            kind=QuestionKind.SHORT,
            question="q?",
            lang="en",
            answers=("a",),
            gold_doc=f"T#{i % 2}",
            gold_text=f"paragraph {i % 2}",
        )
        for i in range(4)
    ]
    path = gold_documents(QuestionSet("s", questions, {}), tmp_path / "pool.jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records == [
        {"id": "T#0", "title": "T", "text": "paragraph 0"},
        {"id": "T#1", "title": "T", "text": "paragraph 1"},
    ]


# --- bad input ------------------------------------------------------------------------------------


def test_bad_rows_are_skipped_with_their_line_and_reason(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "mixed.jsonl",
        [
            {"question": "Capital of France?", "choices": ["Paris", "Rome"], "answer": "Paris"},  # 1 ok (text)
            "{not json",  # 2
            {"question": "No choices?", "answer_index": 0},  # 3
            {"question": "Out of range?", "choices": ["a", "b"], "answer_index": 5},  # 4
            "",
            {"question": "Disagree?", "choices": ["a", "b"], "answer_index": 0, "answer": "b"},  # 6
            {"question": "Letter?", "choices": ["a", "b", "c"], "answer": "C"},  # 7 ok (letter)
            {"question": "Repeat?", "choices": ["a", "A"], "answer_index": 0},  # 8
            [1, 2],  # 9
            {"id": "x", "question": "Index as text?", "choices": ["a", "b"], "answer": "1"},  # 10 ok
            {"id": "x", "question": "Same id?", "choices": ["a", "b"], "answer": 0},  # 11
            {"question": "", "choices": ["a", "b"], "answer": 0},  # 12
        ],
    )
    qset = import_questions(path, ImportFormat.MC)
    assert [(q.id, q.answer_index) for q in qset.questions] == [("line-1", 0), ("line-7", 2), ("x", 1)]
    skipped = {s["where"]: s["reason"] for s in qset.manifest["skipped"]}
    assert list(skipped) == [f"mixed.jsonl:{n}" for n in (2, 3, 4, 6, 8, 9, 11, 12)]
    assert "not valid JSON" in skipped["mixed.jsonl:2"] and "'choices'" in skipped["mixed.jsonl:3"]
    assert "from 0 to 1" in skipped["mixed.jsonl:4"] and "disagrees" in skipped["mixed.jsonl:6"]
    assert "repeat" in skipped["mixed.jsonl:8"] and "JSON object" in skipped["mixed.jsonl:9"]
    assert "duplicate id 'x'" in skipped["mixed.jsonl:11"] and "'question'" in skipped["mixed.jsonl:12"]
    assert qset.manifest["counts"]["skipped"] == 8


def test_qa_rows_accept_answer_lists_context_and_detect_language(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "qa.jsonl",
        [
            {
                "id": 7,
                "question": "How often are keys rotated?",
                "answers": ["every 90 days", "90 days", "90 days"],
                "context": "Keys are rotated every 90 days.",
                "gold_doc": "keys.md",
                "team": "sec",
            },
            {"question": "有給休暇は何日？", "answer": 10},
            {"question": "No answer?"},
        ],
    )
    qset = import_questions(path, ImportFormat.QA, limit=5)
    en, ja = qset.questions
    assert (en.id, en.answers, en.gold_text, en.gold_doc, en.metadata, en.lang) == (
        "7",
        ("every 90 days", "90 days"),
        "Keys are rotated every 90 days.",
        "keys.md",
        {"team": "sec"},
        "en",
    )
    assert (ja.lang, ja.answers) == ("ja", ("10",))
    assert qset.manifest["skipped"] == [
        {"where": "qa.jsonl:3", "reason": "missing field 'answers' (a list of accepted answers) or 'answer'"}
    ]
    assert qset.manifest["counts"]["by_lang"] == {"en": 1, "ja": 1}


@pytest.mark.parametrize(
    ("content", "fmt", "message"),
    [
        (None, ImportFormat.MC, "no such file"),
        (
            '{"question": "q?", "answer": "a"}\n',
            ImportFormat.MC,
            r"no usable mc questions \(1 rows skipped, first: bad.json:1: .*choices.*check --format",
        ),
        ("", ImportFormat.QA, "no usable qa questions; check --format"),
        ('{"data": [\n{"title": "x",,}]}', ImportFormat.SQUAD, r"bad.json:2: not valid JSON"),
        ('[{"question": "q"}]', ImportFormat.SQUAD, r"not SQuAD format"),
        (
            '{"data": [{"title": "T", "paragraphs": [{"context": "c", "qas": [{"id": "1", "question": "q", '
            '"answers": [], "is_impossible": true}]}]}]}',
            ImportFormat.SQUAD,
            "no usable squad questions",
        ),
    ],
)
def test_unusable_files_are_errors_naming_the_file(
    tmp_path: Path, content: str | None, fmt: ImportFormat, message: str
) -> None:
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(QuestionSetError, match=message) as info:
        import_questions(path, fmt)
    assert "bad.json" in str(info.value)


# --- generating -----------------------------------------------------------------------------------


class CannedReplyModel:
    """Test double for a model's *reply* only: returns hand-written texts in turn (parser/selection tests)."""

    name = "canned-replies"

    def __init__(self, replies: Sequence[str]) -> None:
        self.replies = list(replies)
        self.prompts: list[str] = []

    def generate(self, prompt: Sequence[dict[str, str]], config: GenerationConfig) -> Generation:
        self.prompts.append(prompt[-1]["content"])
        text = self.replies[(len(self.prompts) - 1) % len(self.replies)]
        return Generation(text, FinishReason.STOP, 10, 10, 0.0)


def chunk(text: str, lang: str = "en", chunk_id: str = "c1") -> Chunk:
    return Chunk(
        chunk_id=chunk_id,
        doc_id="d",
        source_path=f"/kb/{chunk_id}.md",
        file_type=FileType.MARKDOWN,
        index=0,
        text=text,
        start=0,
        end=len(text),
        lang=Language(lang),
        content_hash="h",
    )


KEYS = chunk("API keys are rotated every 90 days from the admin console by the security team.")


def mc(
    question: str, choices: Sequence[object] = ("30 days", "60 days", "90 days", "120 days"), index: object = 2
) -> str:
    return json.dumps({"question": question, "choices": list(choices), "answer_index": index})


def test_generator_keeps_the_most_specific_valid_questions() -> None:
    reply = "\n".join(
        [
            "Sure! Here are some questions:",
            mc("How often is it done?"),  # valid, vague
            mc("How often are API keys rotated from the admin console?"),  # valid, specific
            mc("How often are keys rotated?", choices=("30 days", "90 days", "1 year")),  # 3 choices
            mc("When are API keys rotated?", index=4),  # index out of range
            mc("How often are API keys rotated from the admin console?"),  # duplicate
            '```json\n{"question": "Who rotates the API keys?",\n "choices": ["the security team", "HR", "sales", "legal"],\n "answer": "A"}\n```',
        ]
    )
    model = CannedReplyModel([reply])
    qset = generate_questions([KEYS], model, per_chunk=2, seed=3, name="gen")
    assert [q.question for q in qset.questions] == [
        "How often are API keys rotated from the admin console?",
        "Who rotates the API keys?",
    ]
    first = qset.questions[0]
    assert (first.id, first.source_chunk, first.gold_doc, first.gold_text, first.answers) == (
        "c1-q0",
        "c1",
        "/kb/c1.md",
        KEYS.text,
        ("90 days",),
    )
    assert len(model.prompts) == 1 and "4 different choices" in model.prompts[0] and KEYS.text in model.prompts[0]
    counts = qset.manifest["counts"]
    assert (
        counts["dropped"] == {"invalid": 2, "duplicate": 1, "less specific": 1}
        and counts["chunks_without_questions"] == 0
    )
    assert (qset.manifest["generator"], qset.manifest["seed"], qset.manifest["format"]) == (
        "canned-replies",
        3,
        "generated",
    )


def test_short_answers_must_come_from_the_chunk_and_japanese_chunks_get_a_japanese_prompt() -> None:
    ja = chunk("リモートワークは週3日まで認められています。", lang="ja", chunk_id="c2")
    model = CannedReplyModel(
        [
            '{"question": "How often are API keys rotated?", "answer": "Every 90 Days."}\n{"question": "Who?", "answer": "the CEO"}',
            '[{"question": "リモートワークは週何日まで認められていますか？", "answer": "週3日"}]',
        ]
    )
    qset = generate_questions([KEYS, ja], model, kind=QuestionKind.SHORT)
    assert [(q.question, q.answers, q.lang, q.kind) for q in qset.questions] == [
        ("How often are API keys rotated?", ("Every 90 Days.",), "en", QuestionKind.SHORT),
        ("リモートワークは週何日まで認められていますか？", ("週3日",), "ja", QuestionKind.SHORT),
    ]
    assert "JSON形式" in model.prompts[1] and qset.manifest["counts"]["dropped"] == {"answer not in chunk": 1}


def test_a_chunk_without_usable_questions_is_asked_again_then_counted() -> None:
    model = CannedReplyModel(["I cannot do that.", "no", mc("How often are API keys rotated?")])
    qset = generate_questions([KEYS, chunk("Backups are kept for 35 days.", chunk_id="c2")], model, attempts=2)
    assert len(model.prompts) == 3 and [q.source_chunk for q in qset.questions] == ["c2"]
    assert qset.manifest["counts"]["chunks_without_questions"] == 1


def test_a_real_model_that_writes_junk_gives_a_clear_error(tiny_chat_llama_dir: str) -> None:
    from infuse.models.transformers_backend import TransformersModel

    model = TransformersModel.load(tiny_chat_llama_dir, device="cpu")
    with pytest.raises(QuestionSetError, match="wrote no usable questions for any of the 2 chunks.*instruction-tuned"):
        generate_questions(
            [KEYS, chunk("Backups are kept for 35 days.", chunk_id="c2")], model, attempts=1, max_new_tokens=16
        )


def test_parse_json_objects_finds_objects_anywhere_and_unwraps_question_lists() -> None:
    reply = 'text {"question": "a"} more {bad} [{"question": "b"}, 3]\n{"questions": [{"question": "c"}, "x"]}'
    assert [o["question"] for o in parse_json_objects(reply)] == ["a", "b", "c"]
    assert parse_json_objects("nothing here") == []


def test_specificity_counts_the_chunks_words_in_the_question() -> None:
    assert specificity("What is it?", KEYS.text) == (0, 0.0)
    assert specificity("How often are API keys rotated?", KEYS.text) == (3, 0.75)  # api, key, rotat shared; "often" not
