"""Fine-tuning datasets: each kind's shape and manifest, the writers, replay, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infuse.lab.writer import LabWorldWriter
from infuse.models.transformers_backend import TransformersModel
from infuse.tuning.builders import (
    BuildRequest,
    DistractorChoice,
    build_dataset,
    build_dataset_from,
    cpt_rows,
    raft_rows,
)
from infuse.tuning.datasets import DatasetError, DatasetKind, RowFormat, load_dataset, read_rows
from infuse.tuning.generators import ModelWriter, QAPair, parse_qa_pairs
from infuse.tuning.packing import encode_row
from infuse.workspace import Workspace


def _rows(dataset) -> list[dict]:
    return [json.loads(line) for line in dataset.rows_path.read_text(encoding="utf-8").splitlines()]


def test_cpt_pieces_cover_each_document_exactly_with_bos_and_eos_at_its_ends(
    lab_ws: Workspace, tiny_lab_model_dir: str
) -> None:
    dataset = build_dataset(lab_ws, BuildRequest(DatasetKind.CPT, tokenizer=tiny_lab_model_dir, block_tokens=16))
    rows = _rows(dataset)
    documents = {d.doc_id: d.document.text for d in lab_ws.knowledge_snapshot().iter_documents()}
    assert {r["doc_id"] for r in rows} == set(documents)
    tokenizer = TransformersModel.load(tiny_lab_model_dir, device="cpu").tokenizer
    for doc_id, text in documents.items():
        pieces = [r for r in rows if r["doc_id"] == doc_id]
        assert len(pieces) > 1  # 16-token blocks split every bio
        assert "".join(p["text"] for p in pieces) == text  # nothing lost, nothing altered
        assert [p["bos"] for p in pieces] == [True] + [False] * (len(pieces) - 1)
        assert [p["eos"] for p in pieces] == [False] * (len(pieces) - 1) + [True]
        for piece in pieces:
            assert len(encode_row(piece, tokenizer).ids) <= 16
    manifest = dataset.manifest
    assert manifest.kind is DatasetKind.CPT and manifest.format is RowFormat.TEXT
    assert manifest.rows == len(rows)
    assert manifest.tokens == sum(len(encode_row(r, tokenizer).ids) for r in rows)
    assert manifest.source["documents"] == len(documents) and len(manifest.source["kb_digest"]) == 16
    assert manifest.parameters == {"block_tokens": 16} and manifest.sha256
    assert load_dataset(lab_ws.datasets_dir, "cpt").manifest == manifest


def test_cpt_without_a_tokenizer_says_to_pass_a_model(lab_ws: Workspace) -> None:
    with pytest.raises(DatasetError, match="--model"):
        build_dataset(lab_ws, BuildRequest(DatasetKind.CPT))


def test_cpt_rows_single_short_document_is_one_piece(tiny_lab_model_dir: str) -> None:
    from infuse.documents.models import Document, FileType

    tokenizer = TransformersModel.load(tiny_lab_model_dir, device="cpu").tokenizer
    doc = Document("d", "d.txt", FileType.TEXT, "Alda was born in Gorsk.", "h")
    assert cpt_rows([doc], tokenizer, 256) == [
        {"text": "Alda was born in Gorsk.", "bos": True, "eos": True, "doc_id": "d", "source": "d.txt", "piece": 0}
    ]


def test_lab_paraphrases_are_the_worlds_templates_plus_the_original(lab_ws: Workspace) -> None:
    dataset = build_dataset(lab_ws, BuildRequest(DatasetKind.PARAPHRASE, paraphrases=4))
    rows = _rows(dataset)
    chunks = list(lab_ws.knowledge_snapshot().iter_chunks())
    writer = LabWorldWriter.detect(chunks)
    assert writer is not None and dataset.manifest.generator == "lab world templates"
    assert len(rows) == 5 * len(chunks)
    for chunk in chunks:
        texts = [r["text"] for r in rows if r["chunk_id"] == chunk.chunk_id]
        assert texts[0] == chunk.text and len(set(texts)) == 5  # original + 4 distinct rewrites
        person = writer.person(chunk)
        for text in texts:  # every rewrite keeps every fact
            assert all(term.text(writer.world.lang) in text for term in person.facts.values())
    assert dataset.manifest.tokens is None  # no tokenizer given


def test_qa_rows_are_closed_book_chat_rows_with_their_source_chunk(lab_ws: Workspace) -> None:
    dataset = build_dataset(lab_ws, BuildRequest(DatasetKind.QA, questions_per_chunk=5))
    rows = _rows(dataset)
    world = LabWorldWriter.detect(list(lab_ws.knowledge_snapshot().iter_chunks())).world
    assert dataset.manifest.format is RowFormat.CHAT and len(rows) == 5 * len(world.new)
    for row in rows:
        assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
        assert row["messages"][1]["content"] == row["question"] and row["messages"][2]["content"] == row["answer"]
        person = world.person(Path(row["source"]).stem)
        assert row["answer"] in {t.text(world.lang) for t in person.facts.values()}
        assert person.name.text(world.lang) in row["question"]


def test_raft_rows_cite_the_oracle_and_leave_it_out_at_the_configured_share(lab_ws: Workspace) -> None:
    dataset = build_dataset(
        lab_ws, BuildRequest(DatasetKind.RAFT, questions_per_chunk=5, distractors=2, no_oracle_share=0.3)
    )
    rows = _rows(dataset)
    without = [r for r in rows if not r["oracle_included"]]
    assert 0.1 < len(without) / len(rows) < 0.5
    for row in rows:
        user = row["messages"][-2]["content"]
        answer = row["messages"][-1]["content"]
        if row["oracle_included"]:
            assert len(row["passages"]) == 3
            position = row["passages"].index(row["chunk_id"]) + 1
            assert answer == f"{row['answer']} [{position}]"
            assert f'<passage id="{position}"' in user
        else:
            assert row["chunk_id"] not in row["passages"] and len(row["passages"]) == 2
            assert answer == row["answer"]
        assert user.rstrip().endswith(row["question"]) or row["question"] in user
    assert dataset.manifest.counts["rows_without_oracle"] == len(without)


def test_raft_takes_questions_from_a_qa_dataset(lab_ws: Workspace) -> None:
    build_dataset(lab_ws, BuildRequest(DatasetKind.QA, name="facts", questions_per_chunk=2))
    dataset = build_dataset(lab_ws, BuildRequest(DatasetKind.RAFT, questions_from="facts", no_oracle_share=0.0))
    assert {(r["question"], r["answer"]) for r in _rows(dataset)} == {
        (r["question"], r["answer"]) for r in read_rows(lab_ws.datasets_dir / "facts" / "train.jsonl")
    }
    with pytest.raises(DatasetError, match="needs a qa dataset"):
        build_dataset(lab_ws, BuildRequest(DatasetKind.RAFT, name="raft-2", questions_from="raft"))


def test_replay_rows_make_up_the_requested_share(lab_ws: Workspace, tmp_path: Path) -> None:
    replay = tmp_path / "general.jsonl"
    replay.write_text(
        "".join(json.dumps({"text": f"General sentence number {i}."}) + "\n" for i in range(10)), encoding="utf-8"
    )
    dataset = build_dataset(
        lab_ws, BuildRequest(DatasetKind.PARAPHRASE, paraphrases=1, replay=replay, replay_share=0.2)
    )
    rows = _rows(dataset)
    replayed = [r for r in rows if r.get("replay")]
    assert len(replayed) == dataset.manifest.counts["replay_rows"] == round(0.2 / 0.8 * (len(rows) - len(replayed)))
    assert rows[: len(replayed)] != replayed  # shuffled in, not appended
    chat = tmp_path / "chat.jsonl"
    chat.write_text(
        json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}) + "\n"
    )
    with pytest.raises(DatasetError, match="chat.jsonl:1: replay rows must be text rows"):
        build_dataset(lab_ws, BuildRequest(DatasetKind.PARAPHRASE, name="p2", replay=chat, replay_share=0.2))


def test_model_writer_with_a_real_model_dedups_and_never_repeats_the_original(
    lab_ws: Workspace, tiny_chat_llama_dir: str
) -> None:
    model = TransformersModel.load(tiny_chat_llama_dir, device="cpu")
    writer = ModelWriter(model, max_new_tokens=12)
    chunk = next(lab_ws.knowledge_snapshot().iter_chunks())
    texts = writer.paraphrases(chunk, 3, seed=0)
    assert len(texts) <= 3 and len(set(texts)) == len(texts) and chunk.text not in texts
    assert writer.paraphrases(chunk, 3, seed=0) == texts  # seeded sampling: reproducible


def test_a_model_that_writes_no_usable_pairs_gives_a_clear_error(lab_ws: Workspace, tiny_chat_llama_dir: str) -> None:
    writer = ModelWriter(TransformersModel.load(tiny_chat_llama_dir, device="cpu"), max_new_tokens=8)
    with pytest.raises(DatasetError, match="produced no rows.*wrote nothing usable"):
        build_dataset(lab_ws, BuildRequest(DatasetKind.QA), writer)


def test_plain_knowledge_base_needs_a_model_for_paraphrases(workspace: Workspace, corpus: Path) -> None:
    workspace.ingest([corpus])
    with pytest.raises(DatasetError, match="pass --model"):
        build_dataset(workspace, BuildRequest(DatasetKind.PARAPHRASE))


def test_parse_qa_pairs_accepts_json_lines_lists_and_q_a_lines() -> None:
    reply = 'Sure! Here they are:\n{"question": "Where was Alda born?", "answer": "Gorsk"},\nnot json\n{"question": "", "answer": "x"}'
    assert [(p.question, p.answer) for p in parse_qa_pairs(reply)] == [("Where was Alda born?", "Gorsk")]
    assert [(p.question, p.answer) for p in parse_qa_pairs('[{"question": "Year?", "answer": 1990}]')] == [
        ("Year?", "1990")
    ]
    assert [(p.question, p.answer) for p in parse_qa_pairs("Q: 出身地は？ A: ゴルスク")] == [("出身地は？", "ゴルスク")]
    assert parse_qa_pairs("I cannot help with that.") == []


def test_empty_knowledge_base_is_an_error(tmp_path: Path) -> None:
    from infuse.errors import InfuseError

    ws = Workspace.open(tmp_path / "empty", create=True)
    with pytest.raises(InfuseError, match="knowledge base .* is empty; add documents"):
        build_dataset(ws, BuildRequest(DatasetKind.PARAPHRASE))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "the dataset is empty"),
        ('{"text": "ok"}\n{"txt": "typo"}\n', r"rows.jsonl: 1 of 2 rows .*line 2: missing field \"text\".*found txt"),
        ('{"text": "ok"}\nnot json\n', r"rows.jsonl: 1 of 2 rows .*line 2: not valid JSON"),
        ('{"messages": [{"role": "user", "content": "q"}]}\n', r"rows.jsonl: 1 of 1 .*line 1: no assistant message"),
        ('{"messages": [{"role": "bot", "content": "q"}]}\n', r"rows.jsonl: 1 of 1 .*line 1: messages\[0\] must be"),
        ('{"text": "ok", "bos": "yes"}\n', r'rows.jsonl: 1 of 1 .*line 1: field "bos" must be true or false'),
    ],
)
def test_bad_rows_are_named_by_file_line_and_field(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        read_rows(path)


def test_unknown_dataset_lists_the_known_ones(lab_ws: Workspace) -> None:
    build_dataset(lab_ws, BuildRequest(DatasetKind.QA, questions_per_chunk=1))
    with pytest.raises(DatasetError, match=r"no dataset 'nope'.*known: qa"):
        load_dataset(lab_ws.datasets_dir, "nope")


def test_an_existing_dataset_is_not_overwritten_silently(lab_ws: Workspace) -> None:
    build_dataset(lab_ws, BuildRequest(DatasetKind.QA, name="facts", questions_per_chunk=1))
    with pytest.raises(DatasetError, match="already exists"):
        build_dataset(lab_ws, BuildRequest(DatasetKind.QA, name="facts", questions_per_chunk=1))
    again = build_dataset(lab_ws, BuildRequest(DatasetKind.QA, name="facts", questions_per_chunk=2, overwrite=True))
    assert again.manifest.rows == 2 * len(load_world_of(lab_ws).new)


def load_world_of(ws: Workspace):
    return LabWorldWriter.detect(list(ws.knowledge_snapshot().iter_chunks())).world


# --- no empty rows; every bad row named at once ---------------------------------------------------


def test_cpt_never_writes_a_whitespace_only_piece(tiny_llama_dir: str) -> None:
    """Observed on a real corpus: a Markdown file's last piece was "\n", and tune refused the set."""
    from infuse.documents.models import Document, FileType

    tokenizer = TransformersModel.load(tiny_llama_dir, device="cpu").tokenizer
    text = "# Title\n\nword \n\n\n"  # with 8-token pieces the last one was "\n"
    rows = cpt_rows([Document("d", "d.md", FileType.TEXT, text, "h")], tokenizer, 8)
    assert len(rows) > 1 and all(r["text"].strip() for r in rows)
    assert "".join(r["text"] for r in rows).split() == text.split()  # only whitespace is left out
    assert [r["bos"] for r in rows] == [True] + [False] * (len(rows) - 1)
    assert [r["eos"] for r in rows] == [False] * (len(rows) - 1) + [True]
    assert [r["piece"] for r in rows] == list(range(len(rows)))


class _SloppyWriter:
    """A writer that also returns blank rewrites and blank answers (as weak models do)."""

    name = "sloppy"

    def paraphrases(self, chunk, n: int, seed: int) -> list[str]:
        return ["   ", "\n", f"In other words: {chunk.text}"][:n]

    def qa_pairs(self, chunk, n: int, seed: int):
        from infuse.tuning.generators import QAPair

        return [QAPair("What is this about?", " "), QAPair("Who is it about?", chunk.text[:20])][:n]


@pytest.mark.parametrize("kind", [DatasetKind.PARAPHRASE, DatasetKind.QA, DatasetKind.RAFT])
def test_no_builder_writes_an_unusable_row(lab_ws: Workspace, kind: DatasetKind) -> None:
    dataset = build_dataset(
        lab_ws, BuildRequest(kind, paraphrases=3, questions_per_chunk=2, no_oracle_share=0.0), _SloppyWriter()
    )
    rows = read_rows(dataset.rows_path)  # raises on any unusable row
    assert len(rows) == dataset.manifest.rows
    for row in rows:
        if "text" in row:
            assert row["text"].strip()
        else:
            assert row["messages"][-1]["content"].strip(" []0123456789")
    assert sum(n for key, n in dataset.manifest.counts.items() if key.startswith("unusable")) > 0


def test_every_unusable_row_is_counted_and_named_with_a_way_out(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    lines = [json.dumps({"text": f"row {i}"}) for i in range(120)]
    lines[4] = json.dumps({"text": "\n"})
    lines[8] = "not json"
    lines[60] = json.dumps({"messages": [{"role": "user", "content": "q"}]})
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError) as caught:
        read_rows(path, skip_option="--skip-bad-rows")
    message = str(caught.value)
    assert message.startswith(f'{path}: 3 of 120 rows are unusable (line 5: field "text" must be a non-empty string;')
    assert "line 9: not valid JSON" in message and "line 61: no assistant message" in message
    assert message.endswith("Fix them, or pass --skip-bad-rows to train on the other 117.")
    assert len(read_rows(path, skip_bad=True)) == 117


def test_hard_raft_distractors_are_the_searchs_best_ranked_other_documents(lab_ws: Workspace) -> None:
    dataset = build_dataset(
        lab_ws,
        BuildRequest(
            DatasetKind.RAFT,
            questions_per_chunk=5,
            distractors=2,
            no_oracle_share=0.0,
            distractor_choice=DistractorChoice.HARD,
        ),
    )
    rows = _rows(dataset)
    assert dataset.manifest.parameters["distractor_choice"] == "hard"
    for row in rows:
        oracle_doc = next(c.doc_id for c in lab_ws.knowledge_snapshot().iter_chunks() if c.chunk_id == row["chunk_id"])
        expected = [h.chunk.chunk_id for h in lab_ws.search(row["question"], k=3) if h.chunk.doc_id != oracle_doc][:2]
        assert [p for p in row["passages"] if p != row["chunk_id"]] == expected
    random_rows = _rows(
        build_dataset(
            lab_ws,
            BuildRequest(DatasetKind.RAFT, name="random", questions_per_chunk=5, distractors=2, no_oracle_share=0.0),
        )
    )
    assert [r["passages"] for r in random_rows] != [r["passages"] for r in rows]  # the choice matters


def test_hard_raft_distractors_are_topped_up_at_random_and_need_a_search(lab_ws: Workspace) -> None:
    chunks = sorted(lab_ws.knowledge_snapshot().iter_chunks(), key=lambda c: c.chunk_id)
    pair = QAPair("Where was Alda born?", "Gorsk")
    # the search found only the oracle and one other document: the second distractor is drawn at random
    rows = raft_rows([(pair, chunks[0])], chunks, 2, 0.0, 0, ranked=[[chunks[0], chunks[1]]])
    shown = rows[0]["passages"]
    assert len(shown) == 3 and chunks[1].chunk_id in shown and len(set(shown)) == 3
    with pytest.raises(DatasetError, match="ranked hits for 2 questions"):
        raft_rows([(pair, chunks[0])], chunks, 2, 0.0, 0, ranked=[[], []])
    with pytest.raises(DatasetError, match="need the knowledge base's search"):
        build_dataset_from(
            lab_ws.knowledge_snapshot(),
            lab_ws.settings.model,
            lab_ws.datasets_dir,
            BuildRequest(DatasetKind.RAFT, distractor_choice=DistractorChoice.HARD),
        )
